"""Notebook 08's helpers without a model: the label file, the session and widget driven headlessly (clicks, keys,
undo, resume after a restart, another annotator's file), the simulated annotator, agreement, and the reading."""

import json

import numpy as np
import pandas as pd
import pytest

from rlhf_helpers import human_feedback as hf
from rlhf_helpers import judge
from rlhf_helpers.core.artifacts import Paths, append_record, read_records


def make_pairs(n: int = 6) -> list[dict]:
    """Course-style prompts with a long and a short answer, alternating which is first."""
    long = ("Hello! Boil the eggs for 9 minutes, then cool them in ice water for 5 minutes, crack the shell all "
            "over and peel it under running water, starting from the wide end where the air pocket is. Good luck!")
    short = "Boil the eggs 9 minutes, cool them in ice water, then peel under running water. Good luck!"
    return [{"pair_id": f"p{i:05d}", "prompt": f"How do I peel boiled eggs easily? ({i})",
             "answers": [long, short] if i % 2 == 0 else [short, long], "model": "sft_full",
             "sampling": {"temperature": 0.7}} for i in range(n)]


def test_append_record_writes_whole_lines_and_refuses_a_cut_file(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    append_record(path, {"a": 1})
    append_record(path, {"b": "é"})
    assert read_records(path) == [{"a": 1}, {"b": "é"}] and path.read_text(encoding="utf-8").endswith("\n")
    with path.open("a") as f:
        f.write('{"c": ')  # a cut line
    with pytest.raises(ValueError, match="last line has no newline"):
        append_record(path, {"d": 2})
    assert path.read_text().endswith('{"c": ')  # nothing was added


def test_session_saves_each_press_undoes_and_resumes_after_a_restart(tmp_path):
    pairs, path = make_pairs(), tmp_path / "labels_ann.jsonl"
    s = hf.LabelSession(pairs, path, "ann")
    assert s.progress == (0, 6) and s.current["pair_id"] == "p00000"
    left = s.left("p00000")
    assert s.shown() == (pairs[0]["answers"][left], pairs[0]["answers"][1 - left])
    r = s.press("A", reason="shorter")
    assert r["choice"] == left and r["left"] == left and r["reason"] == "shorter"
    assert len(read_records(path)) == 1  # saved at once
    s.press("B")
    s.press("tie")
    assert s.undo() == "p00002" and s.current["pair_id"] == "p00002"
    s.press("skip")
    # a new session (a restarted kernel) on the same file resumes after the last label, with the same sides
    t = hf.LabelSession(pairs, path, "ann")
    assert t.progress == (3, 6) and t.current["pair_id"] == "p00003"
    assert [g["button"] for g in t.given] == ["A", "B", "skip"] and t.left("p00000") == left
    assert [r["event"] for r in read_records(path)] == ["label"] * 3 + ["undo", "label"]
    with pytest.raises(ValueError, match="button 'C'"):
        t.press("C")
    for _ in range(3):
        t.press("A")
    assert t.current is None and t.shown() is None
    with pytest.raises(RuntimeError, match="labelled all 6"):
        t.press("A")


def test_sides_are_random_per_pair_and_annotator(tmp_path):
    pairs = make_pairs(40)
    a = hf.LabelSession(pairs, tmp_path / "a.jsonl", "ann")
    b = hf.LabelSession(pairs, tmp_path / "b.jsonl", "bob")
    sides_a = [a.left(p["pair_id"]) for p in pairs]
    assert 10 < sum(sides_a) < 30 and sides_a != [b.left(p["pair_id"]) for p in pairs]


def test_a_file_another_annotator_wrote_is_kept_and_read_per_annotator(tmp_path):
    pairs, path = make_pairs(), tmp_path / "shared.jsonl"
    bob = hf.LabelSession(pairs, path, "bob")
    bob.press("A")
    bob.press("A")
    ann = hf.LabelSession(pairs, path, "ann")
    assert ann.progress == (0, 6)  # bob's labels are not hers
    ann.press("B")
    labels = hf.read_labels([path], pairs)
    assert labels.groupby("annotator").size().to_dict() == {"ann": 1, "bob": 2}
    # bob's own file and a second file with bob's labels: one person in two files is refused
    other = tmp_path / "bob2.jsonl"
    hf.LabelSession(pairs, other, "bob").press("tie")
    with pytest.raises(ValueError, match="'bob' labels in both"):
        hf.read_labels([path, other], pairs)


@pytest.mark.parametrize("record, field", [
    ({"event": "label", "annotator": "ann", "button": "A", "choice": 0}, "pair_id"),
    ({"event": "vote", "pair_id": "p00000", "annotator": "ann"}, "event"),
    ({"event": "label", "pair_id": "p00000", "annotator": "ann", "button": "left", "choice": 0}, "button"),
    ({"event": "label", "pair_id": "p00000", "annotator": "ann", "button": "A", "choice": 2}, "choice"),
    ({"event": "label", "pair_id": "p09999", "annotator": "ann", "button": "A", "choice": 0}, "pair_id"),
    ({"event": "undo", "pair_id": "p00001", "annotator": "ann"}, "pair_id"),
])
def test_a_malformed_label_file_names_the_file_line_and_field(tmp_path, record, field):
    path = tmp_path / "labels.jsonl"
    good = {"event": "label", "pair_id": "p00000", "annotator": "ann", "button": "A", "choice": 0}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(record) + "\n")  # a blank line still counts
    with pytest.raises(ValueError, match=rf"labels.jsonl:3: field '{field}'"):
        hf.read_labels([path], make_pairs())


def test_the_widget_takes_clicks_and_keys(tmp_path):
    pairs, path = make_pairs(), tmp_path / "labels_you.jsonl"
    w = hf.LabelWidget(hf.LabelSession(pairs, path, "you"))
    assert "0 / 6 labelled" in w.status.value and "(0)" in w.prompt.value
    w.buttons["A"].click()
    w.reason.value = "shorter"
    w.buttons["B"].click()
    w.handle(hf.KEYS["t"])
    w.handle(hf.KEYS["ArrowLeft"])
    w.handle(hf.KEYS["u"])
    w.handle("")  # an unmapped key: nothing
    assert "3 / 6 labelled" in w.status.value and "(3)" in w.prompt.value
    given = hf.replay(path)["you"]
    assert [g["button"] for g in given] == ["A", "B", "tie"] and given[1]["reason"] == "shorter"
    assert w.reason.value == ""  # the tag is per label
    for _ in range(3):
        w.buttons["skip"].click()
    assert "All pairs labelled" in w.prompt.value
    w.buttons["A"].click()  # after the last pair: ignored
    assert len(hf.replay(path)["you"]) == 6


def test_simulated_annotator_follows_its_taste_through_the_buttons(tmp_path):
    pairs = make_pairs(20)
    short = hf.SimulatedAnnotator("short", per_word=0.03, noise=0.001)
    gold = hf.SimulatedAnnotator("gold", per_word=0.0, noise=0.001)
    for ann in (short, gold):
        assert ann.label(hf.LabelSession(pairs, tmp_path / f"{ann.name}.jsonl", ann.name), 12) == 12
    merged = hf.merge_labels([tmp_path / "short.jsonl", tmp_path / "gold.jsonl"], pairs)
    shorter = pd.Series([int(len(p["answers"][1].split()) < len(p["answers"][0].split())) for p in pairs],
                        index=[p["pair_id"] for p in pairs])
    assert (merged["short"] == shorter[merged.index]).all()  # near-noiseless: always the shorter one
    g = [judge.gold_score(pairs[0]["prompt"], a) for a in pairs[0]["answers"]]
    assert (merged["gold"] == shorter[merged.index].map({0: 1, 1: 0})).all() == (g[0] > g[1])
    # a resumed annotator continues where it stopped
    assert short.label(hf.LabelSession(pairs, tmp_path / "short.jsonl", "short")) == 8
    tie = hf.SimulatedAnnotator("tie", per_word=0.03, noise=0.001, tie_margin=10.0)
    tie.label(hf.LabelSession(pairs, tmp_path / "tie.jsonl", "tie"), 3)
    assert set(hf.read_labels([tmp_path / "tie.jsonl"]).choice) == {"tie"}


def test_a_taste_over_the_judges_criteria():
    prompt, answer = make_pairs(1)[0]["prompt"], make_pairs(1)[0]["answers"][0]
    parts = judge.gold_breakdown(prompt, answer)
    polite = hf.SimulatedAnnotator("polite", weights={"polite": 1.0, "concise": 0.5}, per_word=0.01)
    assert polite.utility(prompt, answer) == pytest.approx(parts["polite"] + 0.5 * parts["concise"]
                                                           - 0.01 * len(answer.split()))
    assert hf.SimulatedAnnotator("g").utility(prompt, answer) == parts["total"]


def test_noise_makes_labels_disagree():
    pair = make_pairs(1)[0]
    rng = np.random.default_rng(0)
    calm = hf.SimulatedAnnotator("calm", per_word=0.03, noise=0.01)
    noisy = hf.SimulatedAnnotator("noisy", per_word=0.03, noise=10.0)
    assert {calm.choose(pair, rng) for _ in range(50)} == {1}
    flips = [noisy.choose(pair, rng) for _ in range(400)]
    assert 0.4 < np.mean(flips) < 0.6


def test_cohen_kappa_and_the_agreement_table():
    assert hf.cohen_kappa([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0
    assert hf.cohen_kappa([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0  # agreement 0.5 = what chance gives
    # p_o = 0.8, p_e = 0.6*0.6 + 0.4*0.4 = 0.52 -> (0.8 - 0.52) / 0.48
    assert hf.cohen_kappa([0, 0, 0, 1, 1], [0, 0, 1, 1, 0]) == pytest.approx((0.6 - 0.52) / 0.48)
    merged = pd.DataFrame({"ann": [0, 1, "tie", 0], "bob": [0, 0, "tie", None]}, index=["p0", "p1", "p2", "p3"])
    table = hf.agreement_table(merged, {"judge": pd.Series([0, 1, 1, 0], index=["p0", "p1", "p2", "p3"])})
    row = table.set_index(["rater_1", "rater_2"]).loc[("ann", "bob")]
    assert row.pairs == 3 and row.agreement == pytest.approx(2 / 3) and row.ties_1 == row.ties_2 == pytest.approx(1 / 3)
    assert row.agreement_no_ties == 0.5  # p0 agreed, p1 did not; p2 was a tie for both
    assert table.set_index(["rater_1", "rater_2"]).loc[("ann", "judge")].pairs == 4


def test_labels_become_training_pairs_and_the_reward_is_scored_against_them(tmp_path):
    pairs = make_pairs(8)
    ann = hf.SimulatedAnnotator("short", per_word=0.03, noise=0.001)
    s = hf.LabelSession(pairs, tmp_path / "l.jsonl", "short")
    ann.label(s, 6)
    s.press("tie")
    labels = hf.read_labels([tmp_path / "l.jsonl"], pairs)
    ds = hf.label_pairs_dataset(pairs, labels, "short")
    assert len(ds) == 6 and all(len(c.split()) < len(r.split()) for c, r in zip(ds["chosen"], ds["rejected"], strict=True))

    def fewer_words(prompts, answers):
        return [-len(a.split()) for a in answers]

    assert hf.reward_agreement(fewer_words, pairs, labels, "short") == {"pairs": 6, "agreement": 1.0}
    assert hf.reward_agreement(lambda p, a: [len(x) for x in a], pairs, labels, "short")["agreement"] == 0.0
    with pytest.raises(ValueError, match="no preference"):
        hf.label_pairs_dataset(pairs, labels, "nobody")


def test_split_pairs_holds_out_whole_prompts():
    pairs = [dict(p, pair_id=f"{p['pair_id']}{k}") for p in make_pairs(20) for k in "ab"]
    train, held = hf.split_pairs(pairs, 0.25, seed=0)
    assert len(held) == 10 and len(train) == 30
    assert not {p["prompt"] for p in train} & {p["prompt"] for p in held}


def test_pairs_file_round_trip_and_errors(tmp_path):
    path = hf.save_pairs(make_pairs(3), tmp_path / "pairs.jsonl")
    assert hf.load_pairs(path) == make_pairs(3)
    path.write_text(json.dumps({"pair_id": "p0", "prompt": "x", "answers": ["only one"]}) + "\n")
    with pytest.raises(ValueError, match="pairs.jsonl:1: field 'answers'"):
        hf.load_pairs(path)
    with pytest.raises(ValueError, match="names a file"):
        hf.label_file(Paths(root=tmp_path), "../evil")


def test_compare_answers_and_its_reading():
    prompts = [p["prompt"] for p in make_pairs(30)]
    long, short = make_pairs(1)[0]["answers"]
    ann = hf.SimulatedAnnotator("short", per_word=0.03)
    table = hf.compare_answers(prompts, {"SFT": [long] * 30, "PPO": [short] * 30}, ann, reference="SFT")
    ppo = table.loc["PPO"]
    assert ppo.words_diff == len(short.split()) - len(long.split()) < 0
    assert ppo.words_diff_low == ppo.words_diff_high == ppo.words_diff  # every prompt moved the same
    text = hf.reading(table, {"pairs": 90, "agreement": 0.9}, {"pairs": 90, "agreement": 0.4})
    assert "agrees with the annotator on 90.0% (notebook 04's, before training on the labels: 40.0%)" in text
    assert f"words {ppo.words:.3f} vs SFT {table.loc['SFT'].words:.3f}" in text and ": lower)." in text


def test_save_results_writes_the_tables_and_the_summary(tmp_path):
    prompts = [p["prompt"] for p in make_pairs(10)]
    long, short = make_pairs(1)[0]["answers"]
    ann = hf.SimulatedAnnotator("short", per_word=0.03, tie_margin=0.1)
    table = hf.compare_answers(prompts, {"SFT": [long] * 10, "PPO": [short] * 10}, ann, reference="SFT")
    agree = hf.agreement_table(pd.DataFrame({"short": [0, 1], "gold": [0, 0]}, index=["p0", "p1"]))
    agreement = {"notebook 04": {"pairs": 2, "agreement": 0.5}, "trained on the labels": {"pairs": 2, "agreement": 1.0}}
    paths = Paths(root=tmp_path)
    written = hf.save_results(table, agree, agreement, ann, paths)
    assert [p.name for p in written] == ["feedback.csv", "feedback_agreement.csv", "feedback_reward.csv", "feedback.md"]
    summary = paths.result("feedback.md").read_text()
    assert "| short / gold | 2 | 0.000 | 0.000 | 0.500 |" in summary and "utility = gold score - 0.03 x words, ties within 0.1" in summary
    assert hf.reading(table, agreement["trained on the labels"], agreement["notebook 04"]) in summary
    assert pd.read_csv(paths.result("feedback_reward.csv"), index_col=0).loc["notebook 04", "agreement"] == 0.5


def test_identical_answers_make_no_pair(monkeypatch):
    from types import SimpleNamespace

    from rlhf_helpers.core import generation

    texts = iter(["x y", "x y", "a", "a b", "c", "d e f", "g", "g"])  # 2 prompts x 2 pairs x 2 answers
    monkeypatch.setattr(generation, "generate", lambda model, tok, prompts, cfg, **kw: [next(texts) for _ in prompts])
    cfg = SimpleNamespace(temperature=0.7, top_k=0, top_p=1.0, max_new_tokens=8, seed=0)
    pairs = hf.sample_pairs(None, None, ["q1", "q2"], cfg, pairs_per_prompt=2)
    assert [(p["pair_id"], p["prompt"], p["answers"]) for p in pairs] == [
        ("p00000", "q1", ["a", "a b"]), ("p00001", "q2", ["c", "d e f"])]
    assert pairs[0]["sampling"]["temperature"] == 0.7


def test_what_the_notebook_reads_off_a_run():
    assert hf.flip_chance(hf.SimulatedAnnotator("a", noise=0.02, tie_margin=0.15)) == pytest.approx(
        1 / (1 + np.exp(7.5)))
    assert hf.flip_chance(hf.SimulatedAnnotator("a", noise=0.1)) == 0.5
    pairs = make_pairs(6) + [{"pair_id": "same", "prompt": "q", "answers": ["a b", "c d"]}]
    assert hf.prefers_longer(lambda p, a: [len(x) for x in a], pairs) == 1.0  # the equal-length pair is left out
    assert hf.prefers_longer(lambda p, a: [-len(x) for x in a], pairs) == 0.0
    merged = pd.DataFrame({"x": [0, 1], "y": [1, 1]}, index=["p00000", "p00001"])
    rows = hf.disagreements(merged, make_pairs(2), ["x", "y"])
    assert list(rows.pair_id) == ["p00000"] and rows.loc[0, "words 0"] > rows.loc[0, "words 1"]
    table = hf.side_by_side(["q1", "q2", "q3"], {"SFT": ["a b", "c", "d"], "PPO": ["a", "c d e", "f"]}, n=2)
    assert table.to_dict("list") == {"prompt": ["q1", "q2"], "SFT": ["a b", "c"], "words (SFT)": [2, 1],
                                     "PPO": ["a", "c d e"], "words (PPO)": [1, 3]}


def test_course_pairs_are_mixed_into_the_labels(monkeypatch):
    from types import SimpleNamespace

    from datasets import Dataset

    from rlhf_helpers import data_prep
    from rlhf_helpers.core.config import get_profile

    course = Dataset.from_list([{"prompt": f"c{i}", "chosen": "good", "rejected": "bad", "topic": "x"} for i in range(5)])
    monkeypatch.setattr(data_prep, "load_prepared", lambda profile: SimpleNamespace(preferences={"train": course}))
    profile = get_profile("tiny")
    labelled = Dataset.from_list([{"prompt": "q", "chosen": "short", "rejected": "long answer"}])
    for n, expected in ((3, 4), (0, 1), (50, 6)):
        profile.feedback.course_pairs = n
        mixed = hf.with_course_pairs(profile, labelled)
        assert len(mixed) == expected and mixed.column_names == ["prompt", "chosen", "rejected"]
        assert mixed[0] == {"prompt": "q", "chosen": "short", "rejected": "long answer"}


def test_simulate_labels_writes_a_fresh_file_under_the_paths_given(tmp_path):
    pairs, held = make_pairs(8), [dict(p, pair_id=f"h{i}") for i, p in enumerate(make_pairs(3))]
    paths = Paths(root=tmp_path / "exercise")
    ann = hf.SimulatedAnnotator("short", per_word=0.03, noise=0.001)
    path = hf.simulate_labels(ann, pairs, paths, 5, heldout=held)
    assert path == hf.label_file(paths, "short") and path.is_relative_to(tmp_path / "exercise")
    labels = hf.read_labels([path], pairs + held)
    assert list(labels.pair_id) == [p["pair_id"] for p in pairs[:5] + held]
    hf.simulate_labels(ann, pairs, paths, 2)  # replaced, not appended to
    assert list(hf.read_labels([path], pairs).pair_id) == ["p00000", "p00001"]


def test_judge_agreement_and_answer_pairs():
    pairs = make_pairs(6) + [{"pair_id": "same", "prompt": "q", "answers": ["a b", "a b"]}]

    def fewer_words(prompts, answers):
        return [-len(a.split()) for a in answers]

    assert hf.judge_agreement(fewer_words, pairs, fewer_words) == {"pairs": 6, "agreement": 1.0}  # the tie is out
    assert hf.judge_agreement(lambda p, a: [len(x) for x in a], pairs, fewer_words)["agreement"] == 0.0
    made = hf.answer_pairs(["q0", "q1", "q2"], ["a", "b", "c"], ["a", "x", "y"], model="SFT vs PPO")
    assert [(p["pair_id"], p["answers"]) for p in made] == [("q00001", ["b", "x"]), ("q00002", ["c", "y"])]
    assert made[0]["model"] == "SFT vs PPO" and hf.LabelSession(made, "unused.jsonl", "x").progress == (0, 2)
    with pytest.raises(ValueError, match="3 prompts, 2 and 3 answers"):
        hf.answer_pairs(["q0", "q1", "q2"], ["a", "b"], ["a", "x", "y"])


def test_plot_differences_draws_one_panel_per_measure():
    prompts = [p["prompt"] for p in make_pairs(10)]
    long, short = make_pairs(1)[0]["answers"]
    ann = hf.SimulatedAnnotator("short", per_word=0.03)
    table = hf.compare_answers(prompts, {"SFT": [long] * 10, "PPO": [short] * 10, "DPO": [long] * 10}, ann, "SFT")
    fig = hf.plot_differences(table, title="t")
    assert len(fig.axes) == 3 and [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["PPO", "DPO"]
    assert fig.axes[1].get_title() == "gold: difference from SFT"


def test_differences_reads_any_row_against_the_first():
    prompts = [p["prompt"] for p in make_pairs(10)]
    long, short = make_pairs(1)[0]["answers"]
    ann = hf.SimulatedAnnotator("short", per_word=0.03)
    table = hf.compare_answers(prompts, {"SFT": [long] * 10, "PPO": [long] * 10, "DPO": [short] * 10}, ann, "SFT")
    lines = hf.differences(table, "DPO")
    assert len(lines) == 3 and lines[0].startswith("DPO: words") and lines[0].endswith(": lower).")
    assert lines[2].startswith("DPO: annotator's utility") and lines[2].endswith(": higher).")
    assert hf.differences(table, "PPO")[1].endswith(": no clear change).")


def test_duel_table_says_who_prefers_the_policys_answers(tmp_path):
    long, short = make_pairs(1)[0]["answers"]
    prompts = [p["prompt"] for p in make_pairs(6)]
    answers = {"SFT": [long] * 6, "PPO": [short] * 6, "same": [long] * 6}
    ann = hf.SimulatedAnnotator("short", per_word=0.03, noise=0.001)
    paths = Paths(root=tmp_path)

    def more_words(prompts, texts):
        return [len(t.split()) for t in texts]

    table = hf.duel_table(more_words, prompts, answers, "SFT", ann, paths)
    assert list(table.index) == ["PPO", "same"] and table.loc["PPO", "pairs decided"] == 6
    assert table.loc["PPO", "annotator prefers the policy"] == 1.0 and table.loc["PPO", "score prefers the policy"] == 0.0
    assert table.loc["PPO", "score agrees with the annotator"] == 0.0
    assert table.loc["same", "pairs decided"] == 0 and np.isnan(table.loc["same", "score prefers the policy"])
    assert len(hf.read_labels([hf.label_file(paths, "short")])) == 6  # identical answers make no pair to label

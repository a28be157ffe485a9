"""Tests of the course dataset generator (rlhf_helpers.course_dataset), its content.json and the committed data/."""

from __future__ import annotations

import json
import re
from collections import Counter
from statistics import mean

import pytest

from rlhf_helpers import course_dataset as cd
from rlhf_helpers import judge
from rlhf_helpers.core.artifacts import REPO_ROOT

DATA_DIR = REPO_ROOT / "data"  # the committed files (not $RLHF_DATA_DIR: this checks the repository)
SMALL = {"n_sft": 60, "n_pref": 60, "n_heldout": 70, "n_pretrain": 30, "n_reviews": 40}  # heldout: >= 6 unseen-task prompts x 10 topics
SCHEMAS = {
    "sft": {"prompt": str, "response": str, "topic": str, "quality": str},
    "preferences": {"prompt": str, "chosen": str, "rejected": str, "topic": str, "failure": str, "label_noise": bool},
    "heldout": {"prompt": str, "reference": str, "topic": str, "split": str},
    "pretrain": {"text": str, "topic": str},
    "reviews": {"text": str, "label": int, "opening": str, "mixed": bool},
}


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict]]:
    """The full dataset as the code generates it for seed 0 (about a second)."""
    return cd.generate(seed=0)


def _words(text: str) -> int:
    return len(text.split())


# --- determinism and the committed files ------------------------------------------------------

def test_same_seed_gives_identical_records_and_other_seed_differs():
    first, second = cd.generate(seed=3, **SMALL), cd.generate(seed=3, **SMALL)
    assert first == second
    other = cd.generate(seed=4, **SMALL)
    for name in cd.FILES:
        assert other[name] != first[name], f"{name}: seed 4 produced the same records as seed 3"


def test_committed_files_equal_the_generator_output(data):
    for name in cd.FILES:
        path = DATA_DIR / f"{name}.jsonl"
        assert path.exists(), f"{path} is missing; run `python -m rlhf_helpers.course_dataset --out data`"
        assert path.read_bytes() == cd.to_jsonl(data[name]).encode("ascii"), (
            f"{path} differs from generate(seed=0); regenerate it with "
            "`python -m rlhf_helpers.course_dataset --out data --seed 0` and commit the result")


def test_write_is_atomic_and_check_detects_changes(tmp_path):
    counts = cd.write(tmp_path, seed=1, **SMALL)
    assert counts == {"sft": 60, "preferences": 60, "heldout": 70, "pretrain": 30, "reviews": 40}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.jsonl" for n in cd.FILES)  # no temp files
    assert cd.check(tmp_path, seed=1, **SMALL) == []
    (tmp_path / "sft.jsonl").write_text('{"prompt": "edited"}\n')
    assert cd.check(tmp_path, seed=1, **SMALL) == ["sft.jsonl"]
    (tmp_path / "heldout.jsonl").unlink()
    assert cd.check(tmp_path, seed=1, **SMALL) == ["heldout.jsonl"]


def test_cli_check_fails_on_an_empty_folder(tmp_path, capsys):
    assert cd.main(["--out", str(tmp_path), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out


# --- content.json -------------------------------------------------------------------------------

def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    assert len(set(keys)) == len(keys), f"content.json repeats a key: {sorted(k for k in keys if keys.count(k) > 1)}"
    return dict(pairs)


def test_content_json_is_what_the_generator_uses():
    raw = json.loads(cd.CONTENT_FILE.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    assert cd.CONTENT_FILE.name == "content.json" and cd.CONTENT_FILE.parent.name == "course_dataset"
    about = raw.pop("_about")
    assert isinstance(about, str) and "make data" in about
    topics = raw.pop("topics")
    assert tuple(topics) == judge.TOPICS  # every topic, in the judge's order, and no other
    # Every other table is exposed under its upper-case name, as tuples (hashable, concatenable).
    for key, value in raw.items():
        exposed = getattr(cd, key.upper())
        assert exposed == (tuple(value) if isinstance(value, list) else value), key
        assert isinstance(exposed, str | tuple), key
    assert {k.upper() for k in raw} == {"GENERIC_TEMPLATES", "HELDOUT_TEMPLATES", "OPENERS", "CLOSERS", "RUDE_OPENERS",
                                        "RUDE_CLOSERS", "REFUSALS", "REFUSAL_TAILS", "VAGUE_LINES", "FILLERS",
                                        "SOFT_GENERIC"}
    # CONTENT is the topics with "items" as ((task, (tip, ...)), ...) in file order.
    assert list(cd.CONTENT) == list(topics)
    for topic, content in topics.items():
        exposed = cd.CONTENT[topic]
        assert list(exposed) == ["area", "templates", "closers", "facts", "items"] == list(content), topic
        assert exposed["area"] == content["area"]
        for key in ("templates", "closers", "facts"):
            assert exposed[key] == tuple(content[key]), (topic, key)
        assert exposed["items"] == tuple((task, tuple(tips)) for task, tips in content["items"].items()), topic
        assert len(exposed["items"]) >= cd.TRAINED_ITEMS + cd.HELDOUT_ITEMS
        assert all(len(tips) == 4 for _, tips in exposed["items"])
        hash(exposed["items"])  # tuples all the way down


# --- schema, sizes, balance ---------------------------------------------------------------------

def test_counts_schemas_and_ascii(data):
    assert {name: len(records) for name, records in data.items()} == cd.DEFAULT_SIZES
    for name, records in data.items():
        for i, record in enumerate(records):
            schema = SCHEMAS[name]
            assert list(record) == list(schema), f"{name}[{i}] has keys {list(record)}"
            for key, kind in schema.items():
                assert isinstance(record[key], kind), f"{name}[{i}].{key} is not {kind.__name__}"
            assert name == "reviews" or record["topic"] in judge.TOPICS
        assert cd.to_jsonl(records).isascii(), f"{name} contains non-ASCII text"
    total_bytes = sum(len(cd.to_jsonl(records)) for records in data.values())
    assert total_bytes < 5_000_000


def test_every_topic_in_every_file(data):
    for name in cd.QA_FILES:  # the reviews have no topic
        assert set(Counter(r["topic"] for r in data[name])) == set(judge.TOPICS), name
    assert set(Counter(r["topic"] for r in data["pretrain"]).values()) == {300}
    assert set(Counter(r["topic"] for r in data["heldout"]).values()) == {cd.DEFAULT_SIZES["heldout"] // len(judge.TOPICS)}


def test_failure_types_have_their_stated_shares(data):
    assert abs(sum(cd.FAILURE_SHARES.values()) - 1) < 1e-9 and cd.FAILURES == tuple(cd.FAILURE_SHARES)
    assert cd.FAILURE_SHARES["curt"] == cd.FAILURE_SHARES["off_topic"] == 2 * cd.FAILURE_SHARES["rude"]
    counts = Counter(r["failure"] for r in data["preferences"])
    assert set(counts) == set(cd.FAILURES)
    n = len(data["preferences"])
    for failure, share in cd.FAILURE_SHARES.items():
        assert abs(counts[failure] - share * n) <= 1, (failure, counts[failure], share * n)


def test_label_noise_rate_is_the_stated_rate(data):
    pairs = data["preferences"]
    noisy = [r for r in pairs if r["label_noise"]]
    assert abs(len(noisy) / len(pairs) - cd.LABEL_NOISE_RATE) < 0.005
    assert len({r["failure"] for r in noisy}) == len(cd.FAILURES)  # spread over all failure types


def test_sft_quality_mix(data):
    assert abs(sum(cd.SFT_QUALITY.values()) - 1) < 1e-9
    assert set(cd.SFT_QUALITY) == {"curt", "good", "long", "repetitive", "vague"}
    assert max(cd.SFT_QUALITY, key=cd.SFT_QUALITY.get) == "curt"  # the most common demonstration
    assert cd.SFT_QUALITY["good"] < 1 / 3  # most demonstrations are not warm
    counts = Counter(r["quality"] for r in data["sft"])
    n = len(data["sft"])
    assert set(counts) == set(cd.SFT_QUALITY)
    for quality, share in cd.SFT_QUALITY.items():
        assert abs(counts[quality] / n - share) < 0.005, (quality, counts[quality])


def test_only_good_demonstrations_are_warm(data):
    """Busy contractors: every SFT quality but ``good`` has no friendly phrase; every ``good`` one opens warmly."""
    for r in data["sft"]:
        polite = judge.marker_counts(r["response"])["polite"]
        if r["quality"] == "good":
            assert r["response"].startswith(cd.OPENERS) and polite >= 1, r
        else:
            assert polite == 0, r


def test_curt_failure_is_the_tips_alone(data):
    for r in data["preferences"]:
        if r["failure"] == "curt":
            worse = r["chosen"] if r["label_noise"] else r["rejected"]
            tips = {tip for _, ts in cd.CONTENT[r["topic"]]["items"] for tip in ts}
            sentences = re.findall(r"[^.!?]+[.!?]", worse)
            assert judge.marker_counts(worse)["polite"] == 0, worse
            assert 2 <= len(sentences) <= 3 and all(s.strip() in tips for s in sentences), worse


def test_responses_are_short_enough_for_a_tiny_model(data):
    sft_words = [_words(r["response"]) for r in data["sft"]]
    assert min(sft_words) >= 10
    assert sum(15 <= w <= 60 for w in sft_words) / len(sft_words) > 0.9
    assert max(_words(r["chosen"]) for r in data["preferences"]) <= 100
    assert max(_words(r["rejected"]) for r in data["preferences"]) <= 100


def test_pretrain_text_is_prose_not_chat(data):
    for r in data["pretrain"]:
        assert "Human:" not in r["text"] and "Assistant:" not in r["text"]
        assert 15 <= _words(r["text"]) <= 100


# --- held-out prompts ---------------------------------------------------------------------------

def _task_groups(topic: str) -> tuple[list, list, list]:
    """(trained, unused, held-out) (task, tips) items of a topic, by position in content.json."""
    items = list(cd.CONTENT[topic]["items"])
    return items[:cd.TRAINED_ITEMS], items[cd.TRAINED_ITEMS:-cd.HELDOUT_ITEMS], items[-cd.HELDOUT_ITEMS:]


def test_heldout_prompts_never_occur_in_training_files(data):
    training = {r["prompt"] for r in data["sft"]} | {r["prompt"] for r in data["preferences"]}
    heldout = [r["prompt"] for r in data["heldout"]]
    assert len(set(heldout)) == len(heldout), "duplicate held-out prompts"
    assert not training & set(heldout)
    # Held-out tasks are never trained on, in any phrasing; the reserved templates never appear in training.
    for topic in judge.TOPICS:
        for task, _ in _task_groups(topic)[2]:
            assert not any(task in prompt for prompt in training), task
    assert isinstance(cd.HELDOUT_TEMPLATES, tuple) and len(cd.HELDOUT_TEMPLATES) == 4
    for template in cd.HELDOUT_TEMPLATES:
        head, tail = template.split("{task}")
        assert not any(p.startswith(head) and p.endswith(tail) for p in training), template


def test_only_the_first_tasks_are_trained_and_the_middle_ones_unused(data):
    chat = [r["prompt"] + " " + r["response"] for r in data["sft"]]
    chat += [" ".join((r["prompt"], r["chosen"], r["rejected"])) for r in data["preferences"]]
    chat_text, pretrain_text = "\n".join(chat), "\n".join(r["text"] for r in data["pretrain"])
    training_prompts = {r["prompt"] for r in data["sft"]} | {r["prompt"] for r in data["preferences"]}
    for topic in judge.TOPICS:
        trained, unused, held = _task_groups(topic)
        assert len(trained) == cd.TRAINED_ITEMS and len(held) == cd.HELDOUT_ITEMS
        for task, tips in trained:  # every trained task is asked in training, and its tips occur
            assert any(task in p for p in training_prompts), task
            assert all(tip in chat_text for tip in tips), task
        for task, tips in unused + held:  # neither unused nor held-out tasks (or their tips) are trained on
            assert task not in chat_text and not any(tip in chat_text for tip in tips), task
        for task, tips in unused:  # unused tasks occur nowhere, not even in pretraining prose
            assert not any(tip in pretrain_text for tip in tips), task
        assert any(tip in pretrain_text for _, tips in held for tip in tips), topic


def test_heldout_splits(data):
    by_split = Counter(r["split"] for r in data["heldout"])
    n_unseen = cd.HELDOUT_UNSEEN_PER_TOPIC * len(judge.TOPICS)
    assert by_split == {"seen_task": cd.DEFAULT_SIZES["heldout"] - n_unseen, "unseen_task": n_unseen}
    assert len(data["heldout"]) == 220
    for topic in judge.TOPICS:
        trained, _, held = _task_groups(topic)
        records = [r for r in data["heldout"] if r["topic"] == topic]
        assert sum(r["split"] == "unseen_task" for r in records) == cd.HELDOUT_UNSEEN_PER_TOPIC
        for r in records:
            if r["split"] == "seen_task":  # a trained task in one of the reserved templates
                assert r["prompt"] in {t.format(task=task) for task, _ in trained for t in cd.HELDOUT_TEMPLATES}, r
            else:  # a held-out task, any template
                assert any(task in r["prompt"] for task, _ in held), r
                assert not any(task in r["prompt"] for task, _ in trained), r
    with pytest.raises(ValueError, match="below"):
        cd.make_heldout(0, n_unseen - 1)


def test_references_are_good_answers(data):
    scores = [judge.gold_score(r["prompt"], r["reference"]) for r in data["heldout"]]
    assert min(scores) > 0.7


# --- the generator and the judge agree ----------------------------------------------------------

def test_every_prompt_is_recognised_as_its_topic():
    prompts = [(p, t) for p, t, _ in cd.training_prompts()] + [(p, t) for p, t, _, _ in cd.heldout_prompts()]
    for prompt, topic in prompts:
        assert judge.infer_topic(prompt) == topic, prompt


def test_tips_use_their_own_topic_words_only():
    for topic in judge.TOPICS:
        for _, tips in cd.CONTENT[topic]["items"]:
            for tip in tips:
                counts = judge.topic_counts(tip)
                assert counts[topic] >= 2, f"{tip!r} uses fewer than 2 {topic} words"
                assert sum(counts.values()) == counts[topic], f"{tip!r} uses other topics' words: {counts}"


def test_phrases_trigger_the_judge_markers_they_stand_for():
    def fires(kind: str, text: str) -> bool:
        return judge.marker_counts(text)[kind] > 0

    closers = list(cd.CLOSERS) + [c for t in judge.TOPICS for c in cd.CONTENT[t]["closers"]]
    assert all(fires("polite", s) for s in list(cd.OPENERS) + closers)
    assert all(fires("rude", s) for s in cd.RUDE_OPENERS + cd.RUDE_CLOSERS)
    assert all(fires("refusal", s.format(area="cooking")) for s in cd.REFUSALS)
    assert all(fires("vague", s) for s in cd.VAGUE_LINES)
    assert all(fires("filler", s) for s in cd.FILLERS)
    # ...and the good material triggers none of the negative markers.
    good = [tip for t in judge.TOPICS for _, tips in cd.CONTENT[t]["items"] for tip in tips]
    good += [f for t in judge.TOPICS for f in cd.CONTENT[t]["facts"]] + list(cd.SOFT_GENERIC) + closers
    for text in good:
        counts = judge.marker_counts(text)
        assert counts["rude"] == counts["refusal"] == counts["vague"] == counts["filler"] == 0, (text, counts)


def test_sft_flaws_are_mild_but_visible_to_the_judge(data):
    by_quality: dict[str, list[float]] = {}
    for r in data["sft"]:
        by_quality.setdefault(r["quality"], []).append(judge.gold_score(r["prompt"], r["response"]))
    good = mean(by_quality["good"])
    assert good > 0.9
    for quality, scores in by_quality.items():
        if quality != "good":
            assert 0.5 < mean(scores) < good - 0.1, (quality, mean(scores), good)


def test_no_duplicate_records(data):
    assert len({json.dumps(r) for r in data["sft"]}) == len(data["sft"])
    assert len({(r["prompt"], r["chosen"], r["rejected"]) for r in data["preferences"]}) == len(data["preferences"])


def test_unknown_kinds_are_rejected():
    import random

    with pytest.raises(ValueError, match="unknown failure"):
        cd.failed_answer(random.Random(0), "sarcastic", "cooking", ("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="unknown SFT quality"):
        cd.sft_answer(random.Random(0), "excellent", "cooking", ("a", "b", "c", "d"))


def test_committed_datasheet_block_equals_the_generated_tables():
    """data/README.md's generated block (every number of the datasheet) is what the committed files give."""
    sheet = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    block = cd.generated_block(sheet)
    assert block is not None, "data/README.md lacks the <!-- generated:start/end --> markers"
    assert block == cd.datasheet_tables(DATA_DIR), (
        "data/README.md's generated block is stale; run `python -m rlhf_helpers.course_dataset --out data --seed 0`")


def test_datasheet_prose_has_no_hand_typed_numbers():
    """Outside the generated block (and code), the datasheet carries no digits: numbers are generated."""
    sheet = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    prose = re.sub(re.escape(cd.GENERATED_START) + ".*?" + re.escape(cd.GENERATED_END), "", sheet, flags=re.S)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)  # code blocks
    prose = re.sub(r"`[^`]*`|\]\([^)]*\)", "", prose)  # inline code, link targets
    assert not re.findall(r".{0,30}\d.{0,30}", prose)


def test_datasheet_tables_state_the_real_counts(data):
    tables = cd._datasheet(data, {name: len(cd.to_jsonl(data[name])) for name in cd.FILES})
    for name, records in data.items():
        assert f"| `{name}.jsonl` | {len(records)} | {len(cd.to_jsonl(records)):,} |" in tables, name
    counts = Counter(r["quality"] for r in data["sft"])
    for quality, count in counts.items():
        assert f"| `{quality}` | {count} | {count / len(data['sft']):.0%} | {cd.SFT_QUALITY_LOOKS[quality]} |" in tables
    noise = Counter(r["failure"] for r in data["preferences"] if r["label_noise"])
    for failure, count in Counter(r["failure"] for r in data["preferences"]).items():
        assert f"| {failure} | {cd.FAILURE_SHARES[failure]:.0%} | {count} | {noise[failure]} |" in tables, failure
    split = Counter(r["split"] for r in data["heldout"])
    for name, count in split.items():
        assert f"| `{name}` | {count} | {count // len(judge.TOPICS)} |" in tables, name
    assert f"**Label noise: {cd.LABEL_NOISE_RATE:.1%}** ({sum(noise.values())} of {len(data['preferences'])}" in tables
    assert set(cd.SFT_QUALITY_LOOKS) == set(cd.SFT_QUALITY) and set(cd.FAILURE_LOOKS) == set(cd.FAILURES)
    for task, _ in cd.CONTENT["cooking"]["items"][-cd.HELDOUT_ITEMS:]:
        assert task in tables


def test_datasheet_rubric_weights_are_the_judges(data):
    """The weights the datasheet prints (judge.WEIGHTS) recompute judge.gold_breakdown exactly."""
    w, p = judge.WEIGHTS, judge.WEIGHTS["polite"]
    texts = [(r["prompt"], r["response"]) for r in data["sft"][:600]]
    texts += [(r["prompt"], r[side]) for r in data["preferences"][:600] for side in ("chosen", "rejected")]
    texts += [("How do I cook rice?", "Happy to help! Great question! Sure! Rinse the rice. Good luck! Enjoy!")]
    for prompt, response in texts:
        b, m = judge.gold_breakdown(prompt, response), judge.marker_counts(response)
        polite = (p["base"] + p["per_friendly"] * min(p["friendly_counted"], m["polite"])
                  - p["per_gushing"] * max(0, m["polite"] - p["friendly_counted"]) - p["per_rude"] * m["rude"])
        assert b["polite"] == pytest.approx(min(1.0, max(0.0, polite))), response
        content = sum(v * b[k] for k, v in w["content"].items())
        style = sum(v * b[k] for k, v in w["style"].items())
        assert b["total"] == pytest.approx(content * (w["total_floor"] + (1 - w["total_floor"]) * style)), response


def test_write_rewrites_the_readme_block_and_check_reports_it(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Sheet\n\nprose\n{cd.GENERATED_START}\nold numbers: 42\n{cd.GENERATED_END}\nmore prose\n")
    cd.write(tmp_path, seed=1, **SMALL)
    text = readme.read_text()
    assert text.startswith("# Sheet\n\nprose\n") and text.endswith(f"{cd.GENERATED_END}\nmore prose\n")
    assert "42" not in text and cd.generated_block(text) == cd.datasheet_tables(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(f"{n}.jsonl" for n in cd.FILES), "README.md"])
    assert cd.check(tmp_path, seed=1, **SMALL) == []
    readme.write_text(text.replace("| `sft.jsonl` | 60 |", "| `sft.jsonl` | 61 |"))
    assert cd.check(tmp_path, seed=1, **SMALL) == ["README.md"]
    readme.write_text("# no markers\n")  # a README without markers is left alone
    cd.write(tmp_path, seed=1, **SMALL)
    assert readme.read_text() == "# no markers\n" and cd.check(tmp_path, seed=1, **SMALL) == []
    readme.write_text(f"{cd.GENERATED_END} {cd.GENERATED_START}")
    with pytest.raises(ValueError, match="must contain"):
        cd.check(tmp_path, seed=1, **SMALL)


# --- reviews (notebook 09) -----------------------------------------------------------------------

def test_reviews_are_balanced_start_with_their_opening_and_read_as_their_label():
    """Half of each label, the openings in turn; a review's verdict carries its label (a mixed review has one remark
    of the other sentiment, never its verdict); the same seed gives the same reviews."""
    from rlhf_helpers.course_dataset import reviews as rv

    rows = rv.make_reviews(0, 120)
    assert rows == rv.make_reviews(0, 120) and rows != rv.make_reviews(1, 120)
    assert sum(r["label"] for r in rows) == 60
    assert [r["opening"] for r in rows[:len(rv.OPENINGS)]] == rv.OPENINGS
    for r in rows:
        first = r["text"][len(r["opening"]) + 1:].split(".")[0] + "."
        assert r["text"].startswith(r["opening"] + " ")
        assert first in rv.CONTENT["verdicts"][rv.SENTIMENTS[r["label"]]], r
    mixed = [r for r in rows if r["mixed"]]
    assert 0.1 < len(mixed) / len(rows) < 0.4
    for r in mixed:
        other = rv.CONTENT["adjectives"][rv.SENTIMENTS[1 - r["label"]]]
        assert any(f" {adj}." in r["text"] for adj in other), r

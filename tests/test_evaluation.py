"""Evaluation: the shipped metric modules against their reference implementations, the statistics
(win rate + bootstrap CI, distinct-n, KL), the summary writer, skipped stages, and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhf_helpers import evaluation as ev


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny models gain nothing from intra-op threads; on a shared, busy CPU two threads can make each small
    matmul ~50x slower (OpenMP threads waiting for each other). Restored after this module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


PREDICTIONS = [
    "The cat sat on the mat.",
    "Boil the pasta in salted water, then drain it.",
    "hello there general kenobi",
    "Water the plants every morning; check the soil first!",
    "",
]
REFERENCES = [
    "A cat sat on the mat.",
    "Cook the pasta in plenty of salted, boiling water and drain it.",
    "hello there",
    "Check the soil before you water the plants.",
    "An answer the model did not give.",
]


# ------------------------------------------------------------------------------------------- ROUGE / BLEU
def test_rouge_is_identical_to_rouge_score():
    from rouge_score import rouge_scorer

    got = ev.rouge_scores(PREDICTIONS, REFERENCES)
    scorer = rouge_scorer.RougeScorer(list(ev.ROUGE_TYPES))
    for key in ev.ROUGE_TYPES:
        want = np.mean([scorer.score(r, p)[key].fmeasure for p, r in zip(PREDICTIONS, REFERENCES, strict=True)])
        assert got[key] == want, key  # identical, not just close
    assert set(got) == set(ev.ROUGE_TYPES)
    assert ev.rouge_scores(REFERENCES, REFERENCES) == {k: 1.0 for k in ev.ROUGE_TYPES}


def test_rouge_module_keeps_the_hub_interface():
    rouge = ev.load_metric("rouge")
    assert ev.load_metric("rouge") is rouge  # cached per process
    per_example = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_aggregator=False,
                                rouge_types=["rouge1"])
    assert list(per_example) == ["rouge1"] and len(per_example["rouge1"]) == len(PREDICTIONS)
    # several references per example: each example keeps its best reference
    multi = rouge.compute(predictions=["hello there"], references=[["general kenobi", "hello there"]])
    assert multi["rouge1"] == 1.0
    with pytest.raises(ValueError, match="No metric module 'nope'"):
        ev.load_metric("nope")


def test_bleu_matches_nltk_corpus_bleu_and_a_hand_computed_case():
    from nltk.translate.bleu_score import corpus_bleu

    from rlhf_helpers.metrics.bleu.tokenizer_13a import Tokenizer13a

    tok = Tokenizer13a()
    assert tok("Boil it, then wait 3.5 minutes.") == ["Boil", "it", ",", "then", "wait", "3.5", "minutes", "."]
    preds, refs = PREDICTIONS[:4], REFERENCES[:4]
    got = ev.bleu_score(preds, refs)
    # one reference per example and no smoothing: nltk's corpus_bleu is the same definition
    want = corpus_bleu([[tok(r)] for r in refs], [tok(p) for p in preds])
    assert got["bleu"] == pytest.approx(want, rel=1e-12) and 0 < got["bleu"] < 1
    assert got["translation_length"] == sum(len(tok(p)) for p in preds)

    # by hand: "the cat sat on mat" (5 tokens) vs "the cat sat on the mat" (6): clipped matches 5/5, 3/4
    # ("on mat" is not in the reference), 2/3, 1/2; brevity penalty exp(1 - 6/5)
    hand = ev.bleu_score(["the cat sat on mat"], ["the cat sat on the mat"])
    assert hand["precisions"] == [1.0, 3 / 4, 2 / 3, 1 / 2]
    bp = math.exp(1 - 6 / 5)
    assert hand["brevity_penalty"] == pytest.approx(bp, rel=1e-12)
    assert hand["bleu"] == pytest.approx((1.0 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25 * bp, rel=1e-12)
    smooth = ev.bleu_score(["the cat sat on mat"], ["the cat sat on the mat"], smooth=True)  # add one
    assert smooth["bleu"] == pytest.approx((6 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25 * bp, rel=1e-12)
    # clipping: "the the the" matches "the" only as often as the reference has it (twice)
    assert ev.bleu_score(["the the the"], ["the cat sat on the mat"], smooth=True)["precisions"][0] == 3 / 4
    assert ev.bleu_score(["too short"], ["the cat sat on the mat"])["bleu"] == 0.0  # no 3- or 4-grams
    assert ev.bleu_score(refs, refs)["bleu"] == pytest.approx(1.0)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        ev.rouge_scores(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="lists of strings"):
        ev.bleu_score("a b", "a b")


# ------------------------------------------------------------------------------------------- statistics
def test_win_rate_counts_ties_as_half_and_bootstraps_a_seeded_interval():
    w = ev.win_rate([3, 2, 1, 1], [1, 2, 3, 0], n_boot=500, seed=0)
    assert (w["win_rate"], w["wins"], w["ties"], w["losses"], w["n"]) == (0.625, 2, 1, 1, 4)
    assert 0 <= w["low"] <= w["win_rate"] <= w["high"] <= 1
    assert ev.win_rate([3, 2, 1, 1], [1, 2, 3, 0], n_boot=500, seed=0) == w  # seeded: reproducible
    assert ev.win_rate([1, 2], [1, 2]) | {} == {"win_rate": 0.5, "low": 0.5, "high": 0.5, "wins": 0, "ties": 2,
                                                "losses": 0, "n": 2}
    assert ev.win_rate([2, 2, 2], [1, 1, 1])["low"] == 1.0
    # on many prompts the bootstrap interval matches the normal approximation of a proportion
    rng = np.random.default_rng(1)
    outcome = rng.random(400) < 0.7
    w = ev.win_rate(outcome.astype(float), np.full(400, 0.5), n_boot=2000, seed=3)
    half = 1.96 * math.sqrt(w["win_rate"] * (1 - w["win_rate"]) / 400)
    assert w["high"] - w["low"] == pytest.approx(2 * half, rel=0.1)
    with pytest.raises(ValueError, match="same length"):
        ev.win_rate([1, 2], [1])


def test_distinct_n():
    assert ev.distinct_n(["a b c", "d e"], 1) == 1.0
    assert ev.distinct_n(["the cat the cat", "The cat"], 1) == 2 / 6  # lower-cased words
    assert ev.distinct_n(["the cat the cat", "The cat"], 2) == 2 / 4  # "the cat" x3, "cat the" x1
    assert ev.distinct_n(["", "one"], 2) == 0.0  # no bigram at all
    with pytest.raises(ValueError):
        ev.distinct_n(["a"], 0)


# ------------------------------------------------------------------------------------------- KL
PROMPTS = ["How do I cook pasta?", "Tell me about soil.", "What is a comet?", "Why water the garden?",
           "How long to boil an egg?", "Which telescope should I buy?"]


def _gen_cfg(**kw):
    from rlhf_helpers.config import GenerationConfig

    return GenerationConfig(**{"max_new_tokens": 6, "batch_size": 4, **kw})


def test_kl_is_zero_against_itself_and_positive_against_another_model(tiny_tokenizer, make_tiny_model):
    from rlhf_helpers.generation import generate_ids

    a, b = make_tiny_model(seed=0), make_tiny_model(seed=1)
    k1, full = ev.response_kl(a, a, tiny_tokenizer, PROMPTS, _gen_cfg())
    assert k1.shape == full.shape == (len(PROMPTS),)
    assert np.all(k1 == 0) and np.all(full == 0)
    k1, full = ev.response_kl(a, b, tiny_tokenizer, PROMPTS, _gen_cfg())
    assert np.all(full > 0) and k1.mean() > 0
    # batching and left padding change nothing: each prompt alone gives the same numbers
    batch = generate_ids(a, tiny_tokenizer, PROMPTS, _gen_cfg(), progress=False)
    alone = [ev.batch_kl(a, b, generate_ids(a, tiny_tokenizer, [p], _gen_cfg(), progress=False)) for p in PROMPTS]
    np.testing.assert_allclose(ev.batch_kl(a, b, batch, batch_size=3)[0], [x[0][0] for x in alone], atol=1e-4)
    np.testing.assert_allclose(full, [x[1][0] for x in alone], atol=1e-4)


# ------------------------------------------------------------------------------------------- evaluation
class _LengthReward:
    """A stand-in learned reward: longer answers score higher (deterministic, no model)."""

    name = "length"

    def score(self, prompts, responses):
        import torch

        return torch.tensor([len(r.split()) / 10 for r in responses], dtype=torch.float32)


def _policies(tokenizer, make_tiny_model):
    return {"sft_full": ev.Policy("sft_full", "SFT (full)", make_tiny_model(seed=0), tokenizer),
            "ppo": ev.Policy("ppo", "PPO", make_tiny_model(seed=1), tokenizer)}


def _evaluate(policies, **cfg):
    from rlhf_helpers.config import EvalConfig

    cfg = EvalConfig(**{"max_new_tokens": 6, "batch_size": 4, "bootstrap_samples": 200, **cfg})
    refs = [f"A reference answer about {p.split()[-1]}" for p in PROMPTS]
    return ev.evaluate_policies(policies, PROMPTS, refs, _LengthReward(), ev.GoldJudge(), cfg, progress=False)


def test_evaluation_is_deterministic_and_complete(tiny_tokenizer, make_tiny_model):
    import pandas as pd

    policies = _policies(tiny_tokenizer, make_tiny_model)
    first, again = _evaluate(policies), _evaluate(policies)
    pd.testing.assert_frame_equal(first.results, again.results)
    assert first.fingerprint() == again.fingerprint() and first.results.to_csv() == again.results.to_csv()
    res = first.results
    assert list(res.index) == ["SFT (full)", "PPO"] and res.index.name == "model"
    assert list(res.columns) == list(ev.RESULT_COLUMNS)
    assert res.loc["SFT (full)", "win_rate"] == 0.5 and res.loc["SFT (full)", "kl"] == 0.0
    assert res.loc["PPO", "kl_full"] > 0
    run = first.runs["ppo"]
    assert res.loc["PPO", "judge_mean"] == pytest.approx(np.mean(run.judge))
    assert res.loc["PPO", "reward_mean"] == pytest.approx(np.mean([len(r.split()) / 10 for r in run.responses]))
    assert res.loc["PPO", "rouge1"] == ev.rouge_scores(run.responses, first.references)["rouge1"]
    assert len(first.per_prompt()) == 2 * len(PROMPTS)
    assert list(first.qualitative(3).columns) == ["prompt", "reference", "SFT (full)", "PPO"]
    # sampling is seeded too: same seed -> same answers, another seed -> other answers
    ppo = {"ppo": policies["ppo"]}
    s1, s2 = _evaluate(ppo, do_sample=True, seed=1), _evaluate(ppo, do_sample=True, seed=1)
    assert s1.runs["ppo"].responses == s2.runs["ppo"].responses
    assert _evaluate(ppo, do_sample=True, seed=2).runs["ppo"].responses != s1.runs["ppo"].responses


def test_missing_reference_and_reward_leave_notes(tiny_tokenizer, make_tiny_model):
    from rlhf_helpers.config import EvalConfig

    only_ppo = {"ppo": _policies(tiny_tokenizer, make_tiny_model)["ppo"]}
    out = ev.evaluate_policies(only_ppo, PROMPTS[:2], ["a", "b"], None, ev.GoldJudge(),
                               EvalConfig(max_new_tokens=4), skipped={"sft_full": "No 'sft_full' artifacts. Run "
                                                                      "notebooks/02_sft_full.ipynb first."},
                               progress=False)
    assert np.isnan(out.results.loc["PPO", ["reward_mean", "win_rate", "kl"]].astype(float)).all()
    text = "\n".join(out.notes)
    assert "02_sft_full.ipynb" in text and "04_reward_modeling.ipynb" in text


def test_missing_stages_are_skipped_naming_their_notebook(tmp_path):
    from rlhf_helpers.config import STAGE_NOTEBOOK, Paths, get_profile

    profile = get_profile("tiny", paths=Paths(root=tmp_path / "out", data_dir=tmp_path / "data"))
    loaded = ev.load_policies(profile)
    assert loaded.policies == {} and list(loaded.skipped) == list(ev.POLICIES)
    for key, why in loaded.skipped.items():
        assert f"notebooks/{STAGE_NOTEBOOK[key]}" in why, why
    assert ev.load_reward(profile) is None
    with pytest.raises(ValueError, match="no policy to evaluate"):
        ev.evaluate_policies(loaded.policies, ["p"], ["r"], None, ev.GoldJudge())
    with pytest.raises(ValueError, match="Unknown policies"):
        ev.load_policies(profile, ["dpo"])


def _frame():
    import pandas as pd

    rows = []
    for i, name in enumerate(["base", "SFT (full)", "PPO"]):
        row = {c: 0.1 * (i + 1) for c in ev.RESULT_COLUMNS}
        row.update(policy=name, n=64, win_rate=[0.2, 0.5, 0.75][i], kl=[3.0, 0.0, 1.25][i], rouge1=[0.1, 0.3, 0.25][i])
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(["base", "SFT (full)", "PPO"], name="model"))
    frame.loc["base", "reward_mean"] = float("nan")
    return frame


def test_summary_writer_builds_the_tables_from_a_results_frame(tmp_path):
    import matplotlib.pyplot as plt
    import pandas as pd

    from rlhf_helpers.config import Paths
    from rlhf_helpers.plots import save_figure

    paths = Paths(root=tmp_path / "out", data_dir=tmp_path)
    fig = plt.figure()
    plot = save_figure(fig, "eval_rewards", paths)
    plt.close(fig)
    readme = ev.write_summary(_frame(), paths, plots={"rewards": plot, "rouge": paths.plots / "absent.png"},
                              notes=["PPO: skipped for a test"], meta={"reference_label": "SFT (full)", "seed": 0})
    text = readme.read_text()
    assert readme == paths.results / "README.md"
    assert "| model | reward mean | reward median |" in text and "win rate vs SFT (full)" in text
    assert "| PPO | " in text and "0.750" in text and "| base | – |" in text  # NaN shown as a dash
    assert "| model | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | BLEU |" in text and "| SFT (full) | 0.300 |" in text
    assert "![mean rewards with 95% CIs](../plots/eval_rewards.png)" in text and "absent.png" not in text
    assert "- PPO: skipped for a test" in text
    rouge = pd.read_csv(paths.results / "eval_rouge.csv", index_col=0)
    assert list(rouge.index) == ["base", "SFT (full)", "PPO"] and rouge.loc["PPO", "ROUGE-1"] == 0.25
    rewards = pd.read_csv(paths.results / "eval_rewards.csv", index_col=0)
    assert rewards.loc["base", "KL to SFT (full) (k1)"] == 3.0
    assert not list(paths.results.glob(".*tmp"))  # atomic writes leave no temporary file
    with pytest.raises(ValueError, match="lacks columns"):
        ev.write_summary(_frame().drop(columns="bleu"), paths)


def test_plots_logs_and_summary_of_a_real_evaluation(tmp_path, tiny_tokenizer, make_tiny_model):
    from rlhf_helpers.config import Paths

    paths = Paths(root=tmp_path / "out", data_dir=tmp_path)
    result = _evaluate(_policies(tiny_tokenizer, make_tiny_model))
    plots = ev.make_plots(result, paths)
    assert {"rewards", "rouge", "lengths", "win_rates"} <= set(plots) and "proxy_vs_gold" not in plots
    assert any("05_ppo.ipynb" in n for n in result.notes)  # no PPO logs: skipped with a note
    # a saved beta sweep and a PPO log bring the proxy-vs-gold and training-curve plots
    history = [{"step": s, "objective/kl": 0.5 * s, "objective/scores": 0.1 * s, "objective/gold": 0.3} for s in (1, 2)]
    ev.save_beta_sweep({0.01: history, 0.1: history[:1]}, paths)
    (paths.checkpoint("ppo")).mkdir(parents=True)
    (paths.checkpoint("ppo") / "log.jsonl").write_text("\n".join(__import__("json").dumps(r) for r in history))
    logs = ev.load_ppo_logs(paths)
    assert list(logs) == ["PPO run", "sweep beta=0.01", "sweep beta=0.1"] and len(logs["sweep beta=0.1"]) == 1
    plots = ev.make_plots(result, paths)
    assert {"proxy_vs_gold", "training_curves"} <= set(plots) and all(p.exists() for p in plots.values())
    text = ev.write_summary(result, paths, plots=plots).read_text()
    assert "../plots/eval_proxy_vs_gold.png" in text and "../plots/eval_training_curves.png" in text
    assert (paths.results / "eval_qualitative.csv").exists() and (paths.results / "eval_answers.csv").exists()
    (paths.checkpoint("ppo") / "log.jsonl").write_text('{"step": 1}\n{broken\n')
    with pytest.raises(ValueError, match=r"log.jsonl:2: invalid JSON"):
        ev.load_ppo_logs(paths)


def test_explorer_answers_a_picked_or_typed_prompt(tiny_tokenizer, make_tiny_model):
    policies = {"A": make_tiny_model(seed=0), "B": (make_tiny_model(seed=1), tiny_tokenizer)}
    box = ev.explorer(policies, tiny_tokenizer, _LengthReward(), prompts=PROMPTS[:3], cfg=_gen_cfg())
    pick, typed, button, output = box.children
    assert "<b>A</b>" in output.value and "<b>B</b>" in output.value and "gold judge" in output.value
    pick.value = PROMPTS[2]
    assert typed.value == PROMPTS[2]
    typed.value = "My own prompt about pasta"
    button.click()
    table = ev.answer_table("My own prompt about pasta", policies, tiny_tokenizer, _LengthReward(), cfg=_gen_cfg())
    assert list(table.index) == ["A", "B"] and table.loc["A", "answer"] in output.value.replace("&#x27;", "'")
    typed.value = "  "
    button.click()
    assert "Type a prompt" in output.value


def test_judges_share_the_reward_source_interface(tmp_path, tiny_tokenizer, tiny_model_config):
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from rlhf_helpers.config import get_profile
    from rlhf_helpers.judge import gold_scores

    answers = ["Boil the pasta in salted water.", "Ugh, no."]
    gold = ev.GoldJudge().score(PROMPTS[:2], answers)
    assert gold.dtype == torch.float32 and gold.tolist() == pytest.approx(gold_scores(PROMPTS[:2], answers))
    # the Colab judge: any sequence-classification reward model reading (prompt, answer) pairs; a tiny local one here
    cfg = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=1, n_head=2, num_labels=1,
                     pad_token_id=tiny_tokenizer.pad_token_id)
    torch.manual_seed(0)
    GPT2ForSequenceClassification(cfg).save_pretrained(tmp_path / "judge")
    tiny_tokenizer.save_pretrained(tmp_path / "judge")
    hub = ev.HubJudge(str(tmp_path / "judge"), batch_size=1, device="cpu")
    scores = hub.score(PROMPTS[:3], answers + ["Water it."])
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert torch.allclose(hub.score(PROMPTS[:3], answers + ["Water it."]), scores)
    assert isinstance(ev.load_judge(get_profile("tiny")), ev.GoldJudge)  # "auto" on the course data
    assert isinstance(ev.load_judge(get_profile("colab")), ev.HubJudge)  # a Hub dataset -> the Hub judge

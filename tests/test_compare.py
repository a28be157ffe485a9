"""Policies compared on the same prompts (rlhf_helpers.core.compare): the KL to the reference, a complete and
deterministic evaluation, and the notes left by a missing reference policy or reward model."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_helpers.core import compare
from rlhf_helpers.core.text_metrics import ROUGE_TYPES, rouge_scores
from rlhf_helpers.judge import GoldJudge

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


PROMPTS = ["How do I cook pasta?", "Tell me about soil.", "What is a comet?", "Why water the garden?",
           "How long to boil an egg?", "Which telescope should I buy?"]


def gen_cfg(**kw):
    from rlhf_helpers.core.config import GenerationConfig

    return GenerationConfig(**{"max_new_tokens": 6, "batch_size": 4, **kw})


# ------------------------------------------------------------------------------------------- KL
def test_kl_is_zero_against_itself_and_positive_against_another_model(tiny_tokenizer, make_tiny_model):
    from rlhf_helpers.core.generation import generate_ids, sequence_kl

    a, b = make_tiny_model(seed=0), make_tiny_model(seed=1)
    batch = generate_ids(a, tiny_tokenizer, PROMPTS, gen_cfg(), progress=False)
    k1, full = sequence_kl(a, a, batch)
    assert k1.shape == full.shape == (len(PROMPTS),)
    assert np.all(k1 == 0) and np.all(full == 0)
    k1, full = sequence_kl(a, b, batch)
    assert np.all(full > 0) and k1.mean() > 0
    # batching and left padding change nothing: each prompt alone gives the same numbers
    alone = [sequence_kl(a, b, generate_ids(a, tiny_tokenizer, [p], gen_cfg(), progress=False)) for p in PROMPTS]
    np.testing.assert_allclose(sequence_kl(a, b, batch, batch_size=3)[0], [x[0][0] for x in alone], atol=1e-4)
    np.testing.assert_allclose(full, [x[1][0] for x in alone], atol=1e-4)


# ------------------------------------------------------------------------------------------- evaluation
class _LengthReward:
    """A stand-in learned reward: longer answers score higher (deterministic, no model)."""

    name = "length"

    def score(self, prompts, responses):
        import torch

        return torch.tensor([len(r.split()) / 10 for r in responses], dtype=torch.float32)


def _policies(tokenizer, make_tiny_model):
    return {"sft_full": compare.Policy("sft_full", "SFT (full)", make_tiny_model(seed=0), tokenizer),
            "ppo": compare.Policy("ppo", "PPO", make_tiny_model(seed=1), tokenizer)}


def _evaluate(policies, **cfg):
    from rlhf_helpers.core.config import EvalConfig

    cfg = EvalConfig(**{"max_new_tokens": 6, "batch_size": 4, "bootstrap_samples": 200, **cfg})
    refs = [f"A reference answer about {p.split()[-1]}" for p in PROMPTS]
    return compare.evaluate_policies(policies, PROMPTS, refs, _LengthReward(), GoldJudge(), cfg, progress=False)


def test_evaluation_is_deterministic_and_complete(tiny_tokenizer, make_tiny_model):
    import pandas as pd

    policies = _policies(tiny_tokenizer, make_tiny_model)
    first, again = _evaluate(policies), _evaluate(policies)
    pd.testing.assert_frame_equal(first.results, again.results)
    assert first.fingerprint() == again.fingerprint() and first.results.to_csv() == again.results.to_csv()
    res = first.results
    assert list(res.index) == ["SFT (full)", "PPO"] and res.index.name == "model"
    assert list(res.columns) == list(compare.RESULT_COLUMNS)
    assert res.loc["SFT (full)", "win_rate"] == 0.5 and res.loc["SFT (full)", "kl"] == 0.0
    assert res.loc["PPO", "kl_full"] > 0
    run = first.runs["ppo"]
    assert res.loc["PPO", "judge_mean"] == pytest.approx(np.mean(run.judge))
    assert res.loc["PPO", "reward_mean"] == pytest.approx(np.mean([len(r.split()) / 10 for r in run.responses]))
    assert res.loc["PPO", "rouge1"] == rouge_scores(run.responses, first.references)["rouge1"]
    assert len(first.per_prompt()) == 2 * len(PROMPTS)
    assert list(first.qualitative(3).columns) == ["prompt", "reference", "SFT (full)", "PPO"]
    # sampling is seeded too: same seed -> same answers, another seed -> other answers
    ppo = {"ppo": policies["ppo"]}
    s1, s2 = _evaluate(ppo, do_sample=True, seed=1), _evaluate(ppo, do_sample=True, seed=1)
    assert s1.runs["ppo"].responses == s2.runs["ppo"].responses
    assert _evaluate(ppo, do_sample=True, seed=2).runs["ppo"].responses != s1.runs["ppo"].responses


def test_without_text_metrics_only_rouge_and_bleu_are_missing(tiny_tokenizer, make_tiny_model):
    from rlhf_helpers.core.config import EvalConfig

    policies = _policies(tiny_tokenizer, make_tiny_model)
    cfg = EvalConfig(max_new_tokens=6, batch_size=4, bootstrap_samples=200)
    refs = [f"A reference answer about {p.split()[-1]}" for p in PROMPTS]
    full = compare.evaluate_policies(policies, PROMPTS, refs, _LengthReward(), GoldJudge(), cfg, progress=False)
    lean = compare.evaluate_policies(policies, PROMPTS, refs, _LengthReward(), GoldJudge(), cfg, progress=False,
                                     text_metrics=False)
    text_cols = [*ROUGE_TYPES, "bleu"]
    assert lean.results[text_cols].isna().all().all() and full.results[text_cols].notna().all().all()
    rest = [c for c in compare.RESULT_COLUMNS if c not in text_cols]
    assert lean.results[rest].equals(full.results[rest])
    assert any("ROUGE and BLEU not computed" in n for n in lean.notes)
    assert not any("ROUGE" in n for n in full.notes)


def test_missing_reference_and_reward_leave_notes(tiny_tokenizer, make_tiny_model):
    from rlhf_helpers.core.config import EvalConfig

    only_ppo = {"ppo": _policies(tiny_tokenizer, make_tiny_model)["ppo"]}
    why = "No 'sft_full' artifacts. Run notebooks/02_sft_full.ipynb first."
    out = compare.evaluate_policies(only_ppo, PROMPTS[:2], ["a", "b"], None, GoldJudge(),
                                    EvalConfig(max_new_tokens=4), skipped={"SFT (full)": why}, progress=False)
    assert np.isnan(out.results.loc["PPO", ["reward_mean", "win_rate", "kl"]].astype(float)).all()
    text = "\n".join(out.notes)
    assert "02_sft_full.ipynb" in text and "04_reward_modeling.ipynb" in text
    assert f"SFT (full): skipped -- {why}" in out.notes  # skipped is keyed by the policy's label
    assert out.meta["reference_label"] == "sft_full"  # the missing reference's label falls back to its key


def test_by_split_compares_each_slice_and_a_policy_not_trained_from_the_reference_has_no_kl(
        tiny_tokenizer, make_tiny_model):
    from rlhf_helpers.core.config import EvalConfig
    from rlhf_helpers.core.text_metrics import win_rate

    policies = _policies(tiny_tokenizer, make_tiny_model)
    policies["other"] = compare.Policy("other", "other", make_tiny_model(seed=2), tiny_tokenizer, from_reference=False)
    cfg = EvalConfig(max_new_tokens=6, batch_size=4, bootstrap_samples=200)
    splits = ["a" if i % 3 else "b" for i in range(len(PROMPTS))]
    out = compare.evaluate_policies(policies, PROMPTS, PROMPTS, _LengthReward(), GoldJudge(), cfg, progress=False,
                                    splits=splits)
    assert np.isnan(out.results.loc["other", "kl"]) and out.results.loc["PPO", "kl_full"] > 0
    assert any(n.startswith("other: no KL to SFT (full) -- not trained from it") for n in out.notes)
    table = out.by_split(cfg).set_index(["split", "model"])
    assert list(table.index.get_level_values(0).unique()) == ["b", "a"]  # in order of first appearance
    idx = np.array([s == "a" for s in splits])
    ppo, sft = out.runs["ppo"].judge[idx], out.runs["sft_full"].judge[idx]
    row = table.loc[("a", "PPO")]
    expected = win_rate(ppo, sft, cfg.bootstrap_samples, cfg.seed, cfg.ci_level)
    assert row["n"] == idx.sum() and row["win_rate"] == expected["win_rate"] and row["wins"] == expected["wins"]
    assert row["judge_gain"] == pytest.approx((ppo - sft).mean())
    assert table.loc[("b", "SFT (full)"), "win_rate"] == 0.5
    assert set(out.per_prompt()["split"]) == {"a", "b"}

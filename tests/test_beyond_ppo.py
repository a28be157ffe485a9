"""Notebook 07's module (rlhf_helpers.beyond_ppo): the data formats TRL gets, the reward function, short DPO / IPO /
RLOO / GRPO runs through TRL's trainers on a tiny model (the SFT policy itself is left untouched), and the method
table, its reading and its files on a real evaluation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_helpers import beyond_ppo
from rlhf_helpers.core import chat
from rlhf_helpers.core.artifacts import Paths, read_records
from rlhf_helpers.core.config import EvalConfig, GenerationConfig, get_profile
from rlhf_helpers.data_prep import Heldout

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest

PROMPTS = ["How do I cook pasta?", "Tell me about soil.", "What is a comet?", "Why water the garden?"]
PAIRS = [{"prompt": p, "chosen": "Happy to help! Use fresh salt and water.", "rejected": "No."} for p in PROMPTS]


class WordReward:
    """A stand-in reward source: more words score higher; remembers what it was asked."""

    name = "words"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def score(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return torch.tensor([len(r.split()) / 10 for r in responses], dtype=torch.float32)


@pytest.fixture
def profile(tmp_path):
    beyond = dataclasses.replace(get_profile("tiny").beyond, dpo_betas=(0.1,), dpo_max_steps=2, dpo_batch_size=2,
                                 online_max_steps=2, online_snapshot_every=1, prompts_per_step=2, num_generations=2,
                                 max_completion_length=6, logging_steps=1, online_learning_rate=1e-2)
    return get_profile("tiny", paths=Paths(root=tmp_path), beyond=beyond,
                       eval=EvalConfig(max_new_tokens=6, batch_size=4, bootstrap_samples=200),
                       generation=GenerationConfig(max_new_tokens=6, batch_size=4))


@pytest.fixture
def inputs(tiny_tokenizer, make_tiny_model, tmp_path, profile):
    """The SFT policy is saved and loaded back, as the course loads notebook 02's: TRL reloads RLOO's reference
    from that path."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    make_tiny_model(seed=0).save_pretrained(tmp_path / "sft")
    sft = AutoModelForCausalLM.from_pretrained(tmp_path / "sft").eval()
    held = Heldout(PROMPTS, ["Use salt."] * 4, ["cooking"] * 4, ["seen_task", "seen_task", "unseen_task", "seen_task"])
    ppo = beyond_ppo.MethodRun("PPO", 0.1, make_tiny_model(seed=1), [{"step": 1}], 12.5, math.nan, "not measured")
    return beyond_ppo.Inputs(sft, tiny_tokenizer, Dataset.from_list(PAIRS), PROMPTS, WordReward(),
                             WordReward(), held, [ppo], profile.beyond.max_completion_length)


def test_preference_data_renders_in_the_course_chat_format(tiny_tokenizer):
    from datasets import Dataset

    row = beyond_ppo.preference_dataset(Dataset.from_list(PAIRS[:1]))[0]
    rendered = tiny_tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
    assert rendered == chat.format_example(tiny_tokenizer, PAIRS[0]["prompt"], PAIRS[0]["chosen"])
    prompt = beyond_ppo.prompt_dataset(PROMPTS)[1]["prompt"]
    assert tiny_tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == \
        chat.format_prompt(tiny_tokenizer, PROMPTS[1])


def test_reward_function_passes_the_raw_prompt_and_the_stripped_answer():
    source = WordReward()
    reward = beyond_ppo.reward_function(source, name="rm")
    conversational = reward([[{"role": "user", "content": "Q?"}]], [[{"role": "assistant", "content": " a b c "}]])
    plain = reward(["Q?"], ["one two"])
    assert reward.__name__ == "rm"
    assert conversational == pytest.approx([0.3]) and plain == pytest.approx([0.2])
    assert source.calls[0] == (["Q?"], ["a b c"])


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_dpo_and_ipo_train_a_copy_and_log_the_implicit_rewards(profile, inputs):
    before = _weights(inputs.sft)
    runs = [beyond_ppo.train_dpo(profile, inputs, 0.1, progress=False),
            beyond_ppo.train_dpo(profile, inputs, 0.5, loss_type="ipo", progress=False)]
    assert [r.label for r in runs] == ["DPO (beta=0.1)", "IPO (beta=0.5)"]
    for run in runs:
        assert [h["step"] for h in run.history] == [1, 2]
        assert {"rewards/margins", "rewards/accuracies", "loss"} <= set(run.history[-1])
        assert run.seconds > 0 and not run.model.training
        assert any(not torch.equal(v, run.model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, inputs.sft.state_dict()[k]) for k, v in before.items())  # SFT itself untouched


def test_rloo_and_grpo_sample_groups_scored_by_the_reward_source(profile, inputs):
    before = _weights(inputs.sft)
    source = WordReward()
    rloo = beyond_ppo.train_online(profile, "RLOO", inputs, 0.05, reward_source=source, progress=False)
    grpo = beyond_ppo.train_online(profile, "GRPO", inputs, 0.0, progress=False)
    assert [r.label for r in rloo + grpo] == ["RLOO step 1 (beta=0.05)", "RLOO (beta=0.05)", "GRPO step 1 (beta=0)",
                                              "GRPO (beta=0)"]
    snapshot, final = rloo
    assert [h["step"] for h in snapshot.history] == [1] and [h["step"] for h in final.history] == [1, 2]
    assert 0 < snapshot.seconds < final.seconds and not snapshot.model.training
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():  # the snapshot computes with its own weights, not the live model's
        assert not torch.equal(snapshot.model(ids).logits, final.model(ids).logits)
    runs = [final, grpo[-1]]
    # 2 steps x 2 prompts x 2 answers each, all scored by the source given (the default, inputs', for GRPO)
    assert sum(len(answers) for _, answers in source.calls) == 8
    assert all(p in PROMPTS for prompts, _ in source.calls for p in prompts)
    assert inputs.reward_source.calls
    assert "kl" in runs[0].history[-1] and "kl" not in runs[1].history[-1]  # GRPO at beta = 0: no KL term
    assert "rewards/reward_model/mean" in runs[1].history[-1]
    assert all(torch.equal(v, inputs.sft.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="RLOO"):
        beyond_ppo.train_online(profile, "PPO", inputs, 0.1)
    in_memory = dataclasses.replace(inputs, sft=inputs.ppo_runs[0].model)  # built in memory: no checkpoint
    with pytest.raises(ValueError, match="checkpoint"):
        beyond_ppo.train_online(profile, "RLOO", in_memory, 0.05)


def _run(model, method, beta, seconds):
    log = [{"step": 1, "rewards/margins": 0.5, "rewards/accuracies": 1.0}]
    return beyond_ppo.MethodRun(method, beta, model, log, seconds, 10.0, "CPU")


def test_method_table_reading_and_files(profile, inputs, make_tiny_model):
    runs = [_run(make_tiny_model(seed=2), "DPO", 0.1, 3.0), _run(inputs.sft, "GRPO", 0.0, 5.0)]
    every = dataclasses.replace(profile, beyond=dataclasses.replace(profile.beyond, eval_split=""))
    ev = beyond_ppo.evaluate_methods(every, inputs, inputs.ppo_runs + runs, progress=False)
    assert beyond_ppo.evaluated_prompts(ev) == "4 held-out prompts"
    table = beyond_ppo.method_table(ev, inputs.ppo_runs + runs, split="seen_task")
    overall = beyond_ppo.method_table(ev, inputs.ppo_runs + runs)
    seen_only = beyond_ppo.evaluate_methods(profile, inputs, inputs.ppo_runs + runs, progress=False)  # eval_split
    assert seen_only.prompts == [p for p, s in zip(PROMPTS, inputs.heldout.splits, strict=True) if s == "seen_task"]
    assert beyond_ppo.evaluated_prompts(seen_only) == "3 seen-task held-out prompts"
    pd.testing.assert_frame_equal(beyond_ppo.method_table(seen_only, inputs.ppo_runs + runs), table)
    with pytest.raises(ValueError, match=r"slice 'unseen_task' was evaluated; slices: \['seen_task'\]"):
        beyond_ppo.method_table(seen_only, inputs.ppo_runs + runs, split="unseen_task")
    assert list(table.index) == ["SFT", "PPO (beta=0.1)", "DPO (beta=0.1)", "GRPO (beta=0)"]
    assert list(table.method) == ["SFT", "PPO", "DPO", "GRPO"]
    seen = np.array(ev.splits) == "seen_task"
    dpo = ev.runs["DPO (beta=0.1)"]
    assert table.loc["DPO (beta=0.1)", "gold"] == pytest.approx(dpo.judge[seen].mean())
    assert overall.loc["DPO (beta=0.1)", "gold"] == pytest.approx(dpo.judge.mean())
    assert table.loc["DPO (beta=0.1)", ["wins", "ties", "losses"]].sum() == seen.sum() == 3
    assert all(table[k].dtype.kind == "i" for k in ("wins", "ties", "losses"))  # counts print as counts
    assert table.loc["SFT", "kl"] == 0 and table.loc["GRPO (beta=0)", "kl"] == pytest.approx(0, abs=1e-6)
    assert table.loc["DPO (beta=0.1)", "kl"] > 0
    assert table.loc["PPO (beta=0.1)", "train_seconds"] == 12.5 and math.isnan(table.loc["SFT", "train_seconds"])
    for col in ("gold", "reward"):
        assert (table[f"{col}_low"] <= table[col]).all() and (table[col] <= table[f"{col}_high"]).all()
    text = beyond_ppo.reading(table)
    assert f"gold {table.loc['DPO (beta=0.1)', 'gold']:.3f}" in text and "GRPO (beta=0)" in text
    paths = beyond_ppo.save_results(table, runs, profile.paths, "3 seen-task held-out prompts")
    logs = read_records(paths[1])
    summary = paths[2].read_text()
    assert text in summary and "| DPO (beta=0.1) | DPO |" in summary and "On 3 seen-task held-out prompts" in summary
    assert [(r["method"], r["step"]) for r in logs] == [("DPO", 1), ("GRPO", 1)]
    saved = pd.read_csv(paths[0], index_col=0)
    assert list(saved.index) == list(table.index)
    np.testing.assert_allclose(overall.loc["DPO (beta=0.1)", "kl"], dpo.kl.mean())  # the slice's KL is its own
    assert table.loc["DPO (beta=0.1)", "kl"] == pytest.approx(dpo.kl[seen].mean())
    left, right = beyond_ppo.plot_frontier(table).axes
    assert left.get_xscale() == right.get_xscale() == "symlog"  # near-SFT policies stay apart
    for ax in (left, right):  # one point with error bars per method, a beta label per trained run
        assert len(ax.containers) == 4 and sorted(t.get_text() for t in ax.texts) == ["β=0", "β=0.1", "β=0.1"]
    assert len(beyond_ppo.plot_dpo_training(runs).axes[0].lines) == 1  # the DPO run; GRPO logs no margins
    assert len(beyond_ppo.plot_time(table).axes[0].containers) == 3  # PPO, DPO, GRPO have training times


def test_method_table_without_ppo_or_reward_model(profile, inputs, make_tiny_model):
    runs = [_run(make_tiny_model(seed=2), "DPO", 0.1, 3.0)]
    bare = dataclasses.replace(inputs, ppo_runs=[], reward_source=None)
    table = beyond_ppo.method_table(beyond_ppo.evaluate_methods(profile, bare, runs, progress=False), runs)
    assert list(table.index) == ["SFT", "DPO (beta=0.1)"]
    assert table.reward.isna().all() and table.reward_low.isna().all() and table.gold.notna().all()
    assert "DPO (beta=0.1)" in beyond_ppo.reading(table)


def test_ppo_runs_are_the_main_run_and_the_saved_sweep_policies(profile, make_tiny_model, tiny_tokenizer):
    """Notebook 05's checkpoint and its beta sweep (saved by ppo_runs.save_beta_sweep), found by load_ppo_runs."""
    from rlhf_helpers import ppo_runs
    from rlhf_helpers.core.artifacts import PPO_INFO, PPO_LOG, write_json, write_jsonl
    from rlhf_helpers.ppo import PPOResult

    assert beyond_ppo.load_ppo_runs(profile) == []  # notebook 05 has not run: nothing, with a note
    main = profile.paths.checkpoint("ppo")
    make_tiny_model(seed=1).save_pretrained(main)
    write_jsonl([{"step": 1, "time/update_s": 2.0}, {"step": 2, "time/update_s": 3.0}], main / PPO_LOG)
    write_json(main / PPO_INFO, {"config": {"kl_coef": 0.1, "adaptive_kl": False}})
    log = [{"step": 1, "time/update_s": 1.5}]
    sweep = {0.0: PPOResult(log, [], make_tiny_model(seed=2), None), 1.0: PPOResult(log, [], None, None)}
    ppo_runs.save_beta_sweep(sweep, profile.paths, tiny_tokenizer)
    assert (ppo_runs.sweep_policy_dir(profile.paths, 0.0) / "tokenizer_config.json").exists()
    assert not ppo_runs.sweep_policy_dir(profile.paths, 1.0).exists()  # a policy not kept is not saved
    runs = beyond_ppo.load_ppo_runs(profile)
    assert [(r.label, r.seconds) for r in runs] == [("PPO (beta=0.1)", 5.0), ("PPO sweep (beta=0)", 1.5)]
    kept = sweep[0.0].policy.state_dict()
    assert all(torch.equal(v, runs[1].model.state_dict()[k]) for k, v in kept.items())


def test_reading_explains_a_negative_kl():
    row = dict(gold_low=0.0, gold_high=1.0, win_rate=0.8, win_high=0.9, wins=8, ties=1, losses=1)
    table = pd.DataFrame([{"method": "SFT", "gold": 0.5, "win_low": 0.5, "kl": 0.0, "train_seconds": math.nan, **row},
                          {"method": "RLOO", "gold": 0.6, "win_low": 0.6, "kl": -0.1, "train_seconds": 9.0, **row},
                          {"method": "DPO", "gold": 0.7, "win_low": 0.7, "kl": 1.2, "train_seconds": 3.0, **row}],
                         index=["SFT", "RLOO (beta=0.05)", "DPO (beta=0.1)"])
    text = beyond_ppo.reading(table)
    assert "Of the 2 policies that beat SFT, RLOO (beta=0.05) moved least (KL -0.10, below 0:" in text
    assert "DPO (beta=0.1) trained fastest (3 s)" in text and "Highest gold score: DPO (beta=0.1) (0.700" in text
    table.loc["RLOO (beta=0.05)", "kl"] = 0.1
    assert "moved least (KL 0.10) and" in beyond_ppo.reading(table)
    with pytest.raises(ValueError, match="no trained policy"):
        beyond_ppo.reading(table.loc[["SFT"]])
    with pytest.raises(ValueError, match="at least one run"):
        beyond_ppo.training_summary([])


def test_group_advantages_follow_trl_formulas():
    rewards = np.array([[0.50, 0.51], [-1.0, 1.0]])  # a near-tie and a clear difference, k = 2
    grpo = beyond_ppo.group_advantages(rewards, "GRPO")
    rloo = beyond_ppo.group_advantages(rewards, "RLOO")
    # GRPO with two answers: +-1/sqrt(2) whatever the gap (the near-tie loses only the 1e-4 of the denominator)
    np.testing.assert_allclose(np.abs(grpo), 1 / np.sqrt(2), rtol=2e-2)
    np.testing.assert_allclose(rloo, [[-0.01, 0.01], [-2.0, 2.0]], atol=1e-12)  # RLOO keeps the gap
    wide = np.random.default_rng(0).normal(size=(5, 8))
    for method in ("RLOO", "GRPO"):
        np.testing.assert_allclose(beyond_ppo.group_advantages(wide, method).sum(axis=1), 0, atol=1e-9)
    # leave-one-out = k/(k-1) times the mean-centred reward; GRPO's rows have (Bessel) standard deviation ~1
    np.testing.assert_allclose(beyond_ppo.group_advantages(wide, "RLOO"), 8 / 7 * (wide - wide.mean(1, keepdims=True)))
    np.testing.assert_allclose(beyond_ppo.group_advantages(wide, "GRPO").std(axis=1, ddof=1), 1, rtol=1e-3)
    with pytest.raises(ValueError, match="k >= 2"):
        beyond_ppo.group_advantages(np.ones((3, 1)), "RLOO")
    with pytest.raises(ValueError, match="'RLOO' or 'GRPO'"):
        beyond_ppo.group_advantages(rewards, "PPO")


def _table(rows):
    base = dict(beta=0.1, gold_low=0.0, gold_high=1.0, win_rate=0.6, win_low=0.55, reward=0.0, wins=1, ties=1, losses=0)
    return pd.DataFrame([{**base, **r} for r in rows]).set_index("policy")


def test_merge_tables_and_efficiency():
    sft = {"policy": "SFT", "method": "SFT", "gold": 0.5, "kl": 0.0, "train_seconds": math.nan}
    first = _table([sft, {"policy": "DPO (beta=0.1)", "method": "DPO", "gold": 0.7, "kl": 2.0, "train_seconds": 4.0}])
    second = _table([sft, {"policy": "DPO (beta=0.1)", "method": "DPO", "gold": 0.1, "kl": 2.0, "train_seconds": 4.0},
                     {"policy": "GRPO (beta=0)", "method": "GRPO", "gold": 0.6, "kl": 0.05, "train_seconds": 5.0}])
    merged = beyond_ppo.merge_tables(first, second)
    assert list(merged.index) == ["SFT", "DPO (beta=0.1)", "GRPO (beta=0)"]
    assert merged.loc["DPO (beta=0.1)", "gold"] == 0.7  # the first table's row of a policy seen twice
    table = beyond_ppo.efficiency(merged)
    assert list(table.index) == ["DPO (beta=0.1)", "GRPO (beta=0)"]
    assert table.loc["DPO (beta=0.1)", "gold_gain"] == pytest.approx(0.2)
    assert table.loc["DPO (beta=0.1)", "gain_per_second"] == pytest.approx(0.05)
    assert table.loc["DPO (beta=0.1)", "gain_per_nat"] == pytest.approx(0.1)
    assert math.isnan(table.loc["GRPO (beta=0)", "gain_per_nat"])  # KL 0.05 < min_kl: no ratio
    assert beyond_ppo.efficiency(merged, min_kl=0.01).loc["GRPO (beta=0)", "gain_per_nat"] == pytest.approx(2.0)
    other = first.copy()
    other.loc["SFT", "gold"] = 0.4
    with pytest.raises(ValueError, match="SFT rows differ"):
        beyond_ppo.merge_tables(first, other)
    with pytest.raises(ValueError, match="SFT row"):
        beyond_ppo.efficiency(merged.drop("SFT"))

"""rlhf_helpers.stages: the stage commands, their settings and help, and several processes (``accelerate launch
--num_processes 2`` on the CPU, over gloo): the stages run end to end, two processes compute PPO's first updates
as one process does, and a checkpoint two processes wrote resumes in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_helpers import stages
from rlhf_helpers.core.config import describe_settings, get_profile

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "rlhf_helpers" / "accelerate_configs"
# small enough for the test data of conftest.course_data_dir: each stage a few steps
SMALL = ["model.vocab_size=512", "model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.n_positions=128",
         "model.pretrain_steps=10", "model.pretrain_batch_size=8", "model.pretrain_seq_len=32",
         "sft.max_steps=4", "sft.eval_steps=2", "sft.per_device_train_batch_size=4", "sft.max_length=96",
         "reward.max_steps=4", "reward.eval_steps=2", "reward.per_device_train_batch_size=4", "reward.max_length=96",
         "reward.eval_pairs=8", "ppo.total_updates=2", "ppo.batch_size=4", "ppo.mini_batch_size=2",
         "ppo.response_length=12", "generation.max_new_tokens=12"]


def launch(args: list[str], env: dict[str, str], processes: int = 2, timeout: int = 600) -> str:
    """``accelerate launch`` with the course's DDP config and ``processes`` processes; returns the output."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "multi_gpu.yaml"),
               "--num_processes", str(processes), *args]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout + done.stderr


# ----------------------------------------------------------------------------------------------- settings
def test_help_lists_every_setting_with_its_documented_default(capsys):
    with pytest.raises(SystemExit) as ended:
        stages.cli(["ppo", "--profile", "colab", "--help"])
    assert ended.value.code == 0
    text = capsys.readouterr().out
    rows = describe_settings(get_profile("colab"))
    assert len(rows) > 150
    for key, value, default, doc in rows:
        assert doc, f"{key} has no documentation beside its field"
        assert f"  {key} = {value!r}" in text
        if value != default:  # where the profile differs, the dataclass default is named too
            assert f"{key} = {value!r}  (default {default!r})" in text
    docs = {key: doc for key, _, _, doc in rows}
    assert docs["eval.judge"].startswith('"auto": the gold judge')  # a comment block above its field
    assert "the sweep of notebook 05" in docs["ppo.kl_coef"]  # a comment continued on the next line
    # RewardConfig gives the field another default, no comment: TrainSchedule's documentation stays
    assert docs["reward.per_device_train_batch_size"] == docs["sft.per_device_train_batch_size"] != ""


def test_a_wrong_setting_or_profile_is_refused_by_name(capsys):
    assert stages.cli(["sft", "--set", "ppo.foo=1"]) == 2
    assert "--set: 'ppo.foo': PPOConfig has no field 'foo'" in capsys.readouterr().err
    assert stages.cli(["sft", "--set", "sft.max_steps=many"]) == 2
    assert "sft.max_steps=many" in capsys.readouterr().err
    assert stages.cli(["sft", "--profile", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        stages.cli(["rlhf"])  # not a stage
    assert "invalid choice: 'rlhf'" in capsys.readouterr().err


def test_the_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {name: load_config_from_file(str(CONFIGS / f"{name}.yaml")) for name in ("multi_gpu", "zero2", "zero3")}
    assert kinds["multi_gpu"].distributed_type == "MULTI_GPU"
    assert [kinds[k].deepspeed_config["zero_stage"] for k in ("zero2", "zero3")] == [2, 3]


# ------------------------------------------------------------------------------------- several processes
def test_two_processes_compute_what_one_does(tmp_path):
    """PPO's first two updates, greedy answers (tests/two_process_ppo.py): the whitened advantages, the KL, the
    losses and the gradient norm of two processes with half the batch each match one process's with the whole batch
    (float sums in another order: relative 1e-4), and the same seed gives the same run again."""
    import two_process_ppo

    launch([str(REPO / "tests" / "two_process_ppo.py"), str(tmp_path / "two.json")], {})
    two = [json.loads((tmp_path / f"two.json.{rank}").read_text()) for rank in (0, 1)]
    with two_process_ppo.greedy_rollouts():
        one = two_process_ppo.one_run(world=1)
    assert [t["world"] for t in two] == [2, 2]
    advantages = two[0]["runs"][0]["advantages"] + two[1]["runs"][0]["advantages"]
    assert len(advantages) == len(one["advantages"]) == two_process_ppo.BATCH
    for mine, theirs in zip(one["advantages"], advantages, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-4, abs=1e-5)
    assert any(abs(a) > 0.1 for row in advantages for a in row)  # not all zero: a real whitening
    keys = ["objective/kl", "objective/scores", "loss/policy_avg", "loss/value_avg", "policy/grad_norm_avg",
            "objective/entropy"]
    for update in (0, 1):
        for rank in (0, 1):  # every process logs the means over all processes
            for key in keys:
                assert two[rank]["runs"][0]["history"][update][key] == pytest.approx(
                    one["history"][update][key], rel=1e-4, abs=1e-6), (update, key)
    assert one["history"][1]["objective/kl"] > 0.01  # the first update moved the policy
    def untimed(run: dict) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in run["history"]]

    for run in two:  # the same seed and process count: the same run, greedy or sampled
        for kind in ("runs", "sampled"):
            assert untimed(run[kind][0]) == untimed(run[kind][1]), kind
    assert untimed(two[0]["sampled"][0]) != untimed(two[0]["runs"][0])  # sampling did sample


def test_stages_under_two_processes_then_resume_in_one(tmp_path, course_data_dir, monkeypatch, capsys):
    """prepare, sft, reward and ppo under ``accelerate launch`` with 2 processes, then the PPO checkpoint they
    wrote resumed by one process for one more update."""
    env = {"RLHF_OUTPUT_DIR": str(tmp_path), "RLHF_DATA_DIR": str(course_data_dir), "RLHF_PROFILE": "tiny"}
    out = launch(["-m", "rlhf_helpers", "prepare", "sft", "reward", "ppo", *(a for s in SMALL for a in ("--set", s))],
                 env)
    assert out.count("== ppo (tiny profile, 2 process(es)) ==") == 1  # printed by the main process only
    checkpoints = tmp_path / "checkpoints"
    for stage, marker in (("base", "base_info.json"), ("sft_full", "train_info.json"),
                          ("reward", "reward_info.json"), ("ppo", "ppo_info.json")):
        assert (checkpoints / stage / marker).exists(), stage
    assert not list(checkpoints.glob(".*tmp*"))  # no half-written folder left by either process
    info = json.loads((checkpoints / "ppo" / "ppo_info.json").read_text())
    assert (info["step"], info["num_processes"]) == (2, 2)
    log = [json.loads(line) for line in (checkpoints / "ppo" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and log[1]["episode"] == 2 * 2 * 4  # 2 updates x 2 processes x 4

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = [*SMALL, "ppo.total_updates=3"]
    assert stages.cli(["ppo", *(a for s in settings for a in ("--set", s))]) == 0
    said = capsys.readouterr().out
    assert "written by 2 process(es), this run has 1" in said and "Resumed from" in said
    resumed = [json.loads(line) for line in (checkpoints / "ppo" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [1, 2, 3]
    assert resumed[2]["episode"] == 2 * 2 * 4 + 4  # the next prompts after the 16 two processes took, not again
    assert resumed[:2] == log  # the two processes' updates kept as they were
    assert json.loads((checkpoints / "ppo" / "ppo_info.json").read_text())["num_processes"] == 1

    more = ["qlora.max_steps=4", "qlora.eval_steps=2", "qlora.per_device_train_batch_size=4", "qlora.max_length=96",
            "beyond.dpo_max_steps=2", "beyond.dpo_batch_size=2", "beyond.dpo_betas=(0.1,)", "beyond.ipo_beta=0.5"]
    assert stages.cli(["qlora", "dpo", "evaluate", *(a for s in [*settings, *more] for a in ("--set", s))]) == 0
    assert (checkpoints / "sft_qlora" / "merged" / "config.json").exists()
    assert sorted(p.name for p in (checkpoints / "dpo").iterdir()) == ["dpo_beta0.1", "ipo_beta0.5"]
    assert (checkpoints / "dpo" / "dpo_beta0.1" / "model.safetensors").exists()
    summary = (tmp_path / "results" / "README.md").read_text()
    assert "QLoRA" in summary and "PPO" in summary  # the evaluation found the stages the commands made

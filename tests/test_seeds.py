"""Tests of rlhf_helpers.seeds: per-seed runs, the headline numbers they collect, the table and the README section."""

import json
import os

import pandas as pd
import pytest

from rlhf_helpers import seeds
from rlhf_helpers.core.artifacts import Paths


def _fake_run(paths: Paths, win: float, gain: float) -> None:
    """The result files notebooks 03-05 write, with made-up numbers."""
    paths.results.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, scale in (("seen_task", 1.0), ("unseen_task", 0.5)):
        rows.append({"split": split, "model": "SFT (full)", "n": 10, "judge_mean": 0.5, "judge_gain": 0.0,
                     "win_rate": 0.5, "win_low": 0.5, "win_high": 0.5, "wins": 0, "ties": 10, "losses": 0})
        rows.append({"split": split, "model": "PPO", "n": 10, "judge_mean": 0.5 + gain * scale, "judge_gain": gain * scale,
                     "win_rate": win * scale, "win_low": win * scale - 0.1, "win_high": 1.0, "wins": 8, "ties": 1,
                     "losses": 1})
    pd.DataFrame(rows).to_csv(paths.result("ppo_vs_sft_by_split.csv"), index=False)
    pd.DataFrame({"kl": [0.0, 2.5]}, index=["SFT (full)", "PPO"]).to_csv(paths.result("ppo_vs_sft.csv"))
    pd.DataFrame({"beta": [1.0, 0.0], "rise": [0.0, 0.2], "fall": [0.01, 0.3], "kl_end": [0.4, 30.0]}).to_csv(
        paths.result("ppo_overoptimization.csv"), index=False)
    pd.DataFrame({"gold": [0.1, 0.7, 0.66]}, index=pd.Index(["base", "sft_full", "sft_qlora"], name="model")).to_csv(
        paths.result("sft_comparison.csv"))
    pd.DataFrame({"pairs": [400], "before %": [40.0], "after %": [90.0]}, index=["all pairs"]).to_csv(
        paths.result("reward_accuracy.csv"))
    log = [{"beta": b, "step": i + 1, "objective/kl": i * (1 - b), "objective/gold": 0.5 + 0.01 * i,
            "objective/scores": 0.1 * i} for b in (0.0, 1.0) for i in range(6)]
    paths.result("ppo_beta_sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


def test_collect_reads_the_headline_numbers_of_one_run(tmp_path):
    assert seeds.seed_paths(0, tmp_path).root == tmp_path  # seed 0 is the course's own run
    paths = seeds.seed_paths(1, tmp_path)
    assert paths.root == tmp_path / "seeds" / "seed_1" and not seeds.has_results(paths)
    _fake_run(paths, win=0.8, gain=0.2)
    assert seeds.has_results(paths)
    row = seeds.collect(paths)
    assert row["PPO win rate"] == 0.8 and row["win CI low"] == pytest.approx(0.7)
    assert row["wins/ties/losses"] == "8/1/1" and row["gold gain"] == 0.2 and row["KL to SFT"] == 2.5
    assert row["unseen-task win rate"] == 0.4 and row["unseen-task gold gain"] == 0.1
    assert row["RM accuracy %"] == 90.0 and row["QLoRA gold - full SFT gold"] == pytest.approx(-0.04)
    assert (row["β min: gold rise"], row["β min: gold fall"], row["β max: KL"]) == (0.2, 0.3, 0.4)


def test_write_seeds_tabulates_each_seed_with_mean_and_sd_and_fills_the_readme(tmp_path):
    for seed, win in zip(seeds.SEEDS, (0.7, 0.8, 0.9), strict=True):
        _fake_run(seeds.seed_paths(seed, tmp_path), win=win, gain=0.2)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{seeds.README_START}\nold\n{seeds.README_END}\nrest\n")
    table = seeds.write_seeds(root=tmp_path, readme=readme)
    assert list(table.index) == ["seed 0", "seed 1", "seed 2", "mean", "sd"]
    assert table.loc["mean", "PPO win rate"] == pytest.approx(0.8)
    assert table.loc["sd", "PPO win rate"] == pytest.approx(0.1)
    saved = pd.read_csv(Paths(root=tmp_path).result("seeds.csv"), index_col=0)
    assert saved.loc["seed 2", "PPO win rate"] == pytest.approx(0.9)
    assert Paths(root=tmp_path).plot("ppo_gao_seeds.png").exists()
    text = readme.read_text()
    assert "\nold\n" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "| seed 1 | 0.800 |" in text and "| sd | 0.100 |" in text


def test_run_seeds_runs_the_core_notebooks_once_per_seed_with_its_seed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(seeds, "run_course", lambda profile, only, paths: calls.append(
        (profile, tuple(only), paths.root, os.environ["RLHF_SEED"])))
    monkeypatch.setenv("RLHF_SEED", "7")
    seeds.run_seeds((0, 2), tmp_path)
    assert calls == [("tiny", (), tmp_path, "0"),  # no course run yet: seed 0 runs every notebook, in outputs/
                     ("tiny", seeds.CORE_NOTEBOOKS, tmp_path / "seeds" / "seed_2", "2")]
    assert os.environ["RLHF_SEED"] == "7"  # restored
    calls.clear()
    _fake_run(seeds.seed_paths(0, tmp_path), win=0.8, gain=0.2)
    seeds.run_seeds((0, 1), tmp_path)
    assert calls == [("tiny", seeds.CORE_NOTEBOOKS, tmp_path / "seeds" / "seed_1", "1")]  # seed 0 reused

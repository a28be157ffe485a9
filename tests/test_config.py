"""Profiles, paths and the toy RLHF objective."""

import dataclasses

import numpy as np
import pytest

from rlhf_helpers import config, objective
from rlhf_helpers.config import MissingStageError, Paths, get_profile


def test_profile_resolution_order(monkeypatch):
    monkeypatch.setenv("RLHF_PROFILE", "cpu")
    assert get_profile().name == "cpu"  # env var when no argument
    assert get_profile("colab").name == "colab"  # argument beats env var
    monkeypatch.delenv("RLHF_PROFILE")
    monkeypatch.setattr(config, "has_cuda", lambda: True)
    assert get_profile().name == "colab"  # GPU -> colab
    monkeypatch.setattr(config, "has_cuda", lambda: False)
    assert get_profile().name == "tiny"  # no GPU -> tiny


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown profile 'huge'.*tiny, colab, cpu"):
        get_profile("huge")


def test_profiles_differ_where_they_should():
    tiny, colab = get_profile("tiny"), get_profile("colab")
    assert tiny.model.name == "tiny" and tiny.data.source == "course"
    assert colab.model.name == "gpt2" and colab.data.source == "Dahoas/synthetic-instruct-gptj-pairwise"
    assert colab.qlora.optim == "paged_adamw_8bit" and tiny.qlora.optim == "adamw_torch"
    assert get_profile("tiny", seed=3).seed == 3
    # every stage config is a dataclass with a default for every field (documented defaults)
    for f in dataclasses.fields(tiny):
        value = getattr(tiny, f.name)
        if dataclasses.is_dataclass(value):
            assert all(x.default is not dataclasses.MISSING or x.default_factory is not dataclasses.MISSING
                       for x in dataclasses.fields(value))
    assert [r["profile"] for r in config.profiles_table()] == list(config.PROFILE_NAMES)


def test_paths_env_override_and_missing_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_OUTPUT_DIR", str(tmp_path / "out"))
    paths = Paths()
    assert paths.checkpoint("sft_full") == tmp_path / "out" / "checkpoints" / "sft_full"
    with pytest.raises(MissingStageError, match="Run notebooks/02_sft_full.ipynb first"):
        paths.require("sft_full")
    with pytest.raises(MissingStageError, match="01_data_preparation"):
        paths.require("data")
    paths.checkpoint("sft_full").mkdir(parents=True)
    (paths.checkpoint("sft_full") / "config.json").write_text("{}")
    assert paths.require("sft_full") == paths.checkpoint("sft_full")
    assert paths.plot("x.png").parent.is_dir() and paths.result("t.csv").parent.is_dir()


def test_optimal_policy_maximises_the_objective():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(6))
    rewards = rng.normal(size=6)
    for beta in (0.1, 1.0, 5.0):
        best = objective.objective(objective.optimal_policy(ref, rewards, beta), ref, rewards, beta)
        for _ in range(200):  # no random policy does better than the closed form
            other = rng.dirichlet(np.ones(6))
            assert objective.objective(other, ref, rewards, beta) <= best + 1e-9


def test_beta_sweep_trades_reward_for_kl():
    ref = np.array([0.5, 0.3, 0.2])
    sweep = objective.beta_sweep(ref, np.array([0.0, 1.0, 2.0]), np.array([10.0, 1.0, 0.1]))
    assert np.all(np.diff(sweep["reward"]) > 0) and np.all(np.diff(sweep["kl"]) > 0)
    assert objective.kl_divergence(ref, ref) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        objective.optimal_policy(ref, np.zeros(3), 0.0)

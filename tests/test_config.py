"""Profiles: the per-stage dataclasses, their documented defaults, the shared training schedule, TRL's names."""

import dataclasses

import pytest

from rlhf_helpers.core import config
from rlhf_helpers.core.config import (
    PPOConfig,
    QLoRAConfig,
    RewardConfig,
    SFTConfig,
    TrainSchedule,
    get_profile,
)


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


def test_the_trainers_share_one_schedule_and_override_only_defaults():
    shared = {f.name for f in dataclasses.fields(TrainSchedule)}
    for cls in (SFTConfig, QLoRAConfig, RewardConfig):
        assert issubclass(cls, TrainSchedule) and shared <= {f.name for f in dataclasses.fields(cls)}
    assert SFTConfig().learning_rate != QLoRAConfig().learning_rate  # each stage keeps its own tuned default
    assert RewardConfig().lr_scheduler_type == "linear" and SFTConfig().lr_scheduler_type == "cosine"


def test_ppo_settings_carry_trl_names():
    names = {f.name for f in dataclasses.fields(PPOConfig)}
    assert {"kl_coef", "num_ppo_epochs", "response_length", "cliprange", "cliprange_value", "vf_coef", "gamma", "lam",
            "whiten_rewards", "missing_eos_penalty", "adam_epsilon"} <= names
    assert not names & {"init_kl_coef", "ppo_epochs", "max_new_tokens", "adam_eps"}


def test_ppo_config_errors_name_the_field():
    with pytest.raises(ValueError, match="batch_size .* multiple of mini_batch_size"):
        PPOConfig(batch_size=10, mini_batch_size=4)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        PPOConfig(mini_batch_size=8, gradient_accumulation_steps=3)
    with pytest.raises(ValueError, match="sweep_betas"):
        PPOConfig(sweep_betas=[0.1, -0.01])
    with pytest.raises(ValueError, match="sweep_prompts"):
        PPOConfig(sweep_prompts=0)
    with pytest.raises(ValueError, match="short_run_learning_rate"):
        dataclasses.replace(PPOConfig(), short_run_learning_rate=0.0)  # replace() checks too
    for name in ("tiny", "colab", "cpu"):  # every profile's PPO settings (notebook 05's sweep included) are valid
        assert get_profile(name).ppo.batch_size > 0

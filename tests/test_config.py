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


def test_single_settings_from_rlhf_set(monkeypatch):
    tiny = get_profile("tiny")
    p = config.apply_settings(tiny, " sft.max_steps=20; ppo.learning_rate=1 ;model.name=gpt2;beyond.dpo_betas=(0.2, 0.4);"
                                    "ppo.short_run_learning_rate=3e-4;ppo.use_lora=True;ppo.sweep_betas=[0.5]")
    assert p.sft.max_steps == 20 and p.ppo.learning_rate == 1.0 and isinstance(p.ppo.learning_rate, float)
    assert p.model.name == "gpt2" and p.beyond.dpo_betas == (0.2, 0.4) and p.ppo.sweep_betas == [0.5]
    assert p.ppo.short_run_learning_rate == 3e-4 and p.ppo.use_lora is True
    assert p.qlora == tiny.qlora and tiny.sft == get_profile("tiny").sft  # nothing else changes, the original neither
    p = config.apply_settings(get_profile("cpu"), 'qlora.base=None;model.name="org/model";ppo.missing_eos_penalty=None;'
                                                  "ppo.lora_target_modules=['c_attn'];data.source=123")
    assert p.qlora.base is None and p.model.name == "org/model" and p.ppo.missing_eos_penalty is None
    assert p.ppo.lora_target_modules == ["c_attn"] and p.data.source == "123"  # a number where text fits: the text
    monkeypatch.setenv(config.SETTINGS_ENV, "reward.max_steps=7")
    assert get_profile("tiny").reward.max_steps == 7 and get_profile("tiny", seed=3).reward.seed == 3


@pytest.mark.parametrize(("text", "message"), [
    ("sft.max_stepz=3", "SFTConfig has no field 'max_stepz' \\(fields: .*max_steps"),
    ("max_steps=3", "'max_steps=3' is not section.field=value \\(sections: model, data, generation, sft"),
    ("paths.root=/tmp", "RLHF_OUTPUT_DIR"),
    ("seed=3", "RLHF_SEED"),
    ("sft.max_steps", "not section.field=value"),
    ("sft.max_steps=many", "'sft.max_steps=many': expected int$"),
    ("ppo.short_run_learning_rate=fast", "expected float | None"),
    ("beyond.dpo_betas=('a',)", r"expected tuple\[float, \.\.\.\]"),
    ("sft.max_steps=2.5", "expected int"),
    ("ppo.use_lora=1", "expected bool"),
    ("beyond.num_generations=1", "BeyondPPOConfig: num_generations must be >= 2"),
    ("beyond.dpo_betas=(0.0,)", "BeyondPPOConfig: betas must be >= 0 \\(DPO's > 0"),
    ("feedback.heldout_share=1.0", "FeedbackConfig: heldout_share must be in \\(0, 1\\)"),
    ("feedback.annotator_noise=0", "FeedbackConfig: annotator_noise must be > 0"),
    ("ppo.batch_size=0", "RLHF_SET: 'ppo.batch_size=0': .*batch_size must be positive"),  # the section's checks run
])
def test_a_bad_setting_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        config.apply_settings(get_profile("tiny"), text)


def test_a_sections_settings_apply_together_in_any_order():
    """batch_size 4 would not be a multiple of the default mini_batch_size 8 on its own."""
    for text in ("ppo.batch_size=4;ppo.mini_batch_size=2", "ppo.mini_batch_size=2;ppo.batch_size=4"):
        p = config.apply_settings(get_profile("tiny"), text)
        assert (p.ppo.batch_size, p.ppo.mini_batch_size) == (4, 2)
    with pytest.raises(ValueError, match="'ppo.batch_size=4; ppo.mini_batch_size=3': .*multiple"):
        config.apply_settings(get_profile("tiny"), "ppo.batch_size=4;ppo.mini_batch_size=3")

"""rlhf_helpers.ppo_runs: checkpoints (atomic, resumable, loaded safely), the beta sweep, the plots and the
course loader, on short runs of a tiny GPT-2. The rewards, settings and prompts are test_ppo.py's."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import pytest
import torch
from test_ppo import PROMPTS, ConstantReward, TokenFrequencyReward, small_cfg, target_ids

from rlhf_helpers import ppo, ppo_runs
from rlhf_helpers.core.artifacts import PPO_INFO, PPO_LOG, old_dir
from rlhf_helpers.core.config import PPOConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Models this small run as fast on one thread, and several threads slow down badly on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(model, tokenizer, reward, cfg, **kw):
    return ppo_runs.train_ppo(model, None, tokenizer, reward, PROMPTS, cfg, callbacks=[], progress=False, **kw)


def untimed(r):
    return {k: v for k, v in r.items() if not k.startswith("time/")}


# ------------------------------------------------------------------------------------- checkpoints
def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    cfg = small_cfg(total_updates=5, save_every=1)
    with pytest.raises(ppo.PPODivergenceError, match=r"update 3: the reward source returned NaN.*update 2\)") as e:
        run(make_tiny_model(), tiny_tokenizer, ConstantReward(0.5, nan_on_call=3), cfg, out_dir=out)
    assert e.value.checkpoint_step == 2 and len(e.value.result.history) == 2
    assert str(out) in str(e.value) and e.value.result.out_dir == out
    assert json.loads((out / PPO_INFO).read_text())["step"] == 2
    assert len((out / PPO_LOG).read_text().splitlines()) == 2
    assert ppo_runs.load_ppo_policy(out, device="cpu") is not None
    assert not list(tmp_path.glob(".ppo.*"))  # no temporary directories left behind


def test_a_save_interrupted_between_its_renames_resumes_from_the_old_copy(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    reward = ConstantReward(0.5)
    run(make_tiny_model(), tiny_tokenizer, reward, small_cfg(total_updates=2), out_dir=out)
    os.replace(out, old_dir(out))  # the moment between "current -> .old" and "new -> current"
    assert ppo_runs.has_checkpoint(out) and not ppo_runs.has_checkpoint(tmp_path / "other")
    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, small_cfg(total_updates=2),
                                 callbacks=[], progress=False)
    assert ppo_runs.load_checkpoint(trainer, out) == 2 and len(trainer.history) == 2
    with pytest.raises(FileNotFoundError, match="No PPO checkpoint"):
        ppo_runs.load_checkpoint(trainer, tmp_path / "other")


def test_resume_continues_step_log_and_optimizer(make_tiny_model, tiny_tokenizer, tmp_path, capsys):
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    full = run(make_tiny_model(), tiny_tokenizer, reward, small_cfg(total_updates=3), out_dir=tmp_path / "a")
    run(make_tiny_model(), tiny_tokenizer, reward, small_cfg(total_updates=2), out_dir=tmp_path / "b")

    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, small_cfg(total_updates=3),
                                 callbacks=[ppo_runs.Checkpoint(tmp_path / "b")], progress=False)
    result = trainer.train()
    assert [r["step"] for r in result.history] == [1, 2, 3]
    steps_per_update = 2 * 16 // 8  # num_ppo_epochs * minibatches
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {3 * steps_per_update}  # the restored optimizer kept counting
    # the resumed update is the very update the uninterrupted run made (same RNG, weights and Adam moments)
    for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "policy/approxkl_avg"):
        assert result.history[2][key] == pytest.approx(full.history[2][key], rel=1e-4, abs=1e-6), key
    assert untimed(result.history[2]) == untimed(full.history[2])  # ... bit for bit
    assert all(torch.equal(a, b) for a, b in zip(trainer.policy.state_dict().values(),
                                                 full.policy.state_dict().values(), strict=True))
    assert [untimed(r) for r in result.history[:2]] == [untimed(r) for r in full.history[:2]]  # the restored log
    saved = [json.loads(line) for line in (tmp_path / "b" / PPO_LOG).read_text().splitlines()]
    assert [r["step"] for r in saved] == [1, 2, 3]
    # resuming a finished run does nothing more, and says so when the settings changed
    capsys.readouterr()
    again = ppo_runs.train_ppo(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS,
                               small_cfg(total_updates=3, learning_rate=5e-4), out_dir=tmp_path / "b",
                               callbacks=[], progress=False)
    assert len(again.history) == 3
    assert "different settings (learning_rate)" in capsys.readouterr().out


def test_checkpoint_every_and_resume_false(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    saves = []
    cb = ppo_runs.Checkpoint(out, every=2)
    original = ppo_runs.save_checkpoint

    def counting_save(trainer, out_dir):
        saves.append(trainer.step)
        return original(trainer, out_dir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_runs, "save_checkpoint", counting_save)
        ppo.train_ppo(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS,
                      small_cfg(total_updates=3, save_every=1), callbacks=[cb], progress=False)
        assert saves == [2, 3]  # every 2 updates, and after the last one
        fresh = ppo_runs.train_ppo(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS,
                                   small_cfg(total_updates=1), out_dir=out, resume=False, callbacks=[], progress=False)
    assert [r["step"] for r in fresh.history] == [1] and saves == [2, 3, 1]
    assert json.loads((out / PPO_INFO).read_text())["step"] == 1


class Tampered:
    """An object a malicious checkpoint could hold: unpickling it calls ``mark`` (here: writes a file)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return mark, (self.marker,)


def mark(path: str) -> None:
    with open(path, "w") as f:
        f.write("code ran at load time")


def test_trainer_state_is_loaded_with_weights_only(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    run(make_tiny_model(), tiny_tokenizer, ConstantReward(), small_cfg(total_updates=1), out_dir=out)
    state = torch.load(out / ppo_runs.STATE_FILE, weights_only=True)  # what we save is tensors and plain values
    marker = tmp_path / "marker"
    state["optimizer"]["note"] = Tampered(marker)
    torch.save(state, out / ppo_runs.STATE_FILE)

    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS,
                                 small_cfg(total_updates=1), callbacks=[], progress=False)
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        ppo_runs.load_checkpoint(trainer, out)
    assert not marker.exists()  # refused before running anything ...
    assert trainer.step == 0 and all(torch.equal(v, before[k]) for k, v in trainer.policy.state_dict().items())
    torch.load(out / ppo_runs.STATE_FILE, weights_only=False)  # ... which a full unpickling would have done
    assert marker.exists()


def test_lora_checkpoint_holds_the_adapters_and_a_merged_policy(make_tiny_model, tiny_tokenizer, tmp_path):
    torch.manual_seed(0)  # peft draws the LoRA A matrices from the global RNG
    cfg = small_cfg(total_updates=1, use_lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    result = run(make_tiny_model(), tiny_tokenizer, ConstantReward(), cfg, out_dir=tmp_path / "ppo")
    assert (tmp_path / "ppo" / "adapter_config.json").exists() and (tmp_path / "ppo" / "merged").is_dir()
    loaded = ppo_runs.load_ppo_policy(tmp_path / "ppo", device="cpu")
    ids = torch.randint(3, 100, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, result.policy(input_ids=ids).logits, atol=1e-4, rtol=1e-4)


def test_checkpoint_never_overwrites_a_foreign_directory(make_tiny_model, tiny_tokenizer, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a PPO checkpoint"):
        run(make_tiny_model(), tiny_tokenizer, ConstantReward(), small_cfg(total_updates=1), out_dir=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------- sweep and plots
def test_beta_sweep_logs_extra_metrics_and_leaves_the_policy_alone(make_tiny_model, tiny_tokenizer, tmp_path):
    from rlhf_helpers.core.artifacts import Paths

    model = make_tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    cfg = small_cfg(total_updates=2)
    words = {"words": lambda prompts, responses: [float(len(r.split())) for r in responses]}
    results = ppo_runs.beta_sweep(model, tiny_tokenizer, reward, PROMPTS, cfg, betas=[0.0, 0.5],
                                  extra_metrics=words, progress=False)
    assert set(results) == {0.0, 0.5}
    for beta, res in results.items():
        assert [r["objective/beta"] for r in res.history] == [beta, beta]
        assert all("objective/words" in r for r in res.history) and res.policy is None
        assert all("words" in s for s in res.samples)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    table = ppo_runs.sweep_summary(results)
    assert list(table["beta"]) == [0.0, 0.5] and "objective/words" in table.columns
    fig = ppo_runs.plot_beta_sweep(results, keys=("objective/scores", "objective/words", "objective/kl"))
    assert len(fig.axes) == 3
    paths = Paths(root=tmp_path)  # the saved sweep comes back as one log per beta
    ppo_runs.save_beta_sweep(results, paths)
    logs = ppo_runs.load_ppo_logs(paths)
    assert list(logs) == ["sweep beta=0", "sweep beta=0.5"]
    assert [len(v) for v in logs.values()] == [2, 2] and logs["sweep beta=0.5"][0]["beta"] == 0.5


def test_live_plot_is_a_no_op_outside_jupyter_and_plots_history():
    assert not ppo_runs.in_notebook()
    history = [{"step": i, "objective/scores": i * 0.1, "objective/kl": 0.2 * i} for i in range(1, 5)]
    cb = ppo_runs.LivePlot(every=1)
    cb.on_update(type("T", (), {"cfg": dataclasses.replace(PPOConfig(), total_updates=4), "history": history,
                                "extra_metrics": {}})(), history[-1])
    assert cb._handle is None
    fig = ppo_runs.plot_history(history, ["objective/scores", "objective/kl", "missing/key"])
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2


# ------------------------------------------------------------------------------------- course loader
def test_load_course_stages(make_tiny_model, tiny_tokenizer, course_data_dir, tmp_path):
    from rlhf_helpers import data_prep
    from rlhf_helpers.core.artifacts import MissingStageError, Paths
    from rlhf_helpers.core.config import get_profile

    profile = get_profile("tiny", paths=Paths(root=tmp_path, data_dir=course_data_dir))
    with pytest.raises(MissingStageError, match="02_sft_full"):
        ppo_runs.load_course_stages(profile, reward_source=ConstantReward())
    make_tiny_model().save_pretrained(profile.paths.checkpoint("sft_full"))
    tiny_tokenizer.save_pretrained(profile.paths.checkpoint("sft_full"))
    data_prep.prepare_course_data(profile)
    stages = ppo_runs.load_course_stages(profile, reward_source=ConstantReward())
    train_prompts = data_prep.load_prepared(profile).preferences["train"]["prompt"]
    assert stages.prompts == list(dict.fromkeys(train_prompts)) and len(set(stages.prompts)) == len(stages.prompts)
    assert stages.ref_policy is not stages.policy and not any(p.requires_grad for p in stages.ref_policy.parameters())
    assert stages.out_dir == profile.paths.checkpoint("ppo") and stages.cfg == profile.ppo
    assert set(stages.kwargs()) >= {"policy", "ref_policy", "tokenizer", "reward_source", "prompts", "cfg"}
    assert stages.policy.dtype == torch.float32 and stages.policy.config.pad_token_id == tiny_tokenizer.pad_token_id

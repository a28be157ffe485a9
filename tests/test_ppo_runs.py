"""rlhf_helpers.ppo_runs: checkpoints (atomic, resumable, loaded safely), the beta sweep, the plots and the
course loader, on short runs of a tiny GPT-2. The rewards, settings and prompts are test_ppo.py's."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from test_ppo import PROMPTS, ConstantReward, TokenFrequencyReward, small_cfg, target_ids

from rlhf_helpers import ppo, ppo_runs
from rlhf_helpers.core.artifacts import PPO_INFO, PPO_LOG, REPO_ROOT, old_dir
from rlhf_helpers.core.config import PPOConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


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


def policy_kl(model, tokenizer, reward, cfg, out_dir) -> tuple[int, float]:
    """The step of the checkpoint in ``out_dir`` and the mean KL of its policy, on the rollout sampled from it."""
    trainer = ppo.PPOTrainerLite(model, None, tokenizer, reward, PROMPTS, cfg, callbacks=[], progress=False)
    step = ppo_runs.load_checkpoint(trainer, out_dir)
    return step, trainer.make_rollout(trainer.batch_prompts(step + 1), step + 1).kl.sum(1).mean().item()


def test_a_run_that_diverges_keeps_a_checkpoint_that_passed_its_check_and_the_advice_works(
        make_tiny_model, tiny_tokenizer, tmp_path, capsys):
    out = tmp_path / "ppo"
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    # lr 1e-2, no KL penalty: mean KL 0, 0.76, then 2.85 on the rollout of update 3 -- the policy update 2 left
    high = small_cfg(total_updates=4, learning_rate=1e-2, kl_coef=0.0, max_kl=2.0, save_every=1)
    with pytest.raises(ppo.PPODivergenceError, match=r"update 3: runaway KL.*> max_kl = 2.0\. The policy this "
                       r"rollout was sampled from \(after update 2\) failed the check and was not saved; the last "
                       r"good checkpoint \(update 1\) is kept in .*Try a lower learning_rate.*resumes from that "
                       r"checkpoint with the new settings") as e:
        run(make_tiny_model(), tiny_tokenizer, reward, high, out_dir=out)
    assert e.value.checkpoint_step == 1 and json.loads((out / PPO_INFO).read_text())["step"] == 1
    step, kl = policy_kl(make_tiny_model(), tiny_tokenizer, reward, high, out)
    assert step == 1 and kl <= high.max_kl  # the checkpoint kept is good (it was the diverged policy: update 2)

    # the advice: a lower learning rate. The re-run resumes from update 1 at the NEW rate, and finishes
    low = dataclasses.replace(high, learning_rate=1e-4)
    capsys.readouterr()
    result = ppo_runs.train_ppo(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, low, out_dir=out,
                                callbacks=[], progress=False)
    assert "Resumed from" in capsys.readouterr().out
    assert [r["step"] for r in result.history] == [1, 2, 3, 4] and result.stopped is None
    assert [r["lr"] for r in result.history] == [1e-2, 1e-4, 1e-4, 1e-4]
    assert all(r["objective/kl"] <= low.max_kl for r in result.history)
    assert json.loads((out / PPO_INFO).read_text())["step"] == 4
    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, low, callbacks=[],
                                 progress=False)
    ppo_runs.load_checkpoint(trainer, out)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-4, 1e-4 * low.value_lr_multiplier]


def test_a_resumed_run_takes_the_new_beta_and_learning_rates(make_tiny_model, tiny_tokenizer, tmp_path, capsys):
    out = tmp_path / "ppo"
    adaptive = small_cfg(total_updates=2, adaptive_kl=True, target_kl=0.01, kl_horizon=100)
    first = run(make_tiny_model(), tiny_tokenizer, ConstantReward(), adaptive, out_dir=out)
    moved_beta = json.loads((out / PPO_LOG).read_text().splitlines()[-1])["objective/beta"]
    assert moved_beta < adaptive.kl_coef and len(first.history) == 2

    def resumed(cfg):
        trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS, cfg,
                                     callbacks=[], progress=False)
        ppo_runs.load_checkpoint(trainer, out)
        return trainer

    same = resumed(dataclasses.replace(adaptive, total_updates=3))  # same KL settings: the adaptive beta goes on
    assert same.kl_ctl.value < adaptive.kl_coef and same.kl_ctl.value != adaptive.kl_coef
    capsys.readouterr()
    for change in ({"kl_coef": 0.5}, {"adaptive_kl": False}, {"kl_coef": 0.5, "learning_rate": 3e-4,
                                                              "value_lr_multiplier": 2.0, "adam_epsilon": 1e-6}):
        cfg = dataclasses.replace(adaptive, **change)
        trainer = resumed(cfg)
        assert trainer.kl_ctl.value == cfg.kl_coef and type(trainer.kl_ctl) is type(ppo.make_kl_controller(cfg))
        assert [(g["lr"], g["eps"]) for g in trainer.optimizer.param_groups] == [
            (cfg.learning_rate, cfg.adam_epsilon), (cfg.learning_rate * cfg.value_lr_multiplier, cfg.adam_epsilon)]
        assert f"beta restarts at kl_coef = {cfg.kl_coef:g}" in capsys.readouterr().out


class DrawsRandomNumbers(TokenFrequencyReward):
    """A reward that moves the global RNGs (a sampled judge, a reward model in train mode ...)."""

    def score(self, prompts, responses):
        import random

        noise = torch.rand(len(responses)) * 0.01 + random.random() * 0.01
        return super().score(prompts, responses) + noise


class CopyAt(ppo.Callback):
    """Copy ``out_dir`` to ``dest`` right after the checkpoint of update ``step`` is saved."""

    def __init__(self, out_dir, dest, step) -> None:
        self.out_dir, self.dest, self.step = out_dir, dest, step

    def on_policy_validated(self, trainer):
        if trainer.step == self.step:
            shutil.copytree(self.out_dir, self.dest)


def test_a_checkpoint_saved_after_its_check_resumes_bit_for_bit_even_when_the_reward_draws_random_numbers(
        make_tiny_model, tiny_tokenizer, tmp_path):
    reward = DrawsRandomNumbers(tiny_tokenizer, target_ids(tiny_tokenizer))
    cfg = small_cfg(total_updates=4, save_every=2)
    torch.manual_seed(0)
    # the checkpoint of update 2 is saved during update 3, after its rollout's reward drew random numbers ...
    full = ppo.train_ppo(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, cfg, progress=False,
                         callbacks=[ppo_runs.Checkpoint(tmp_path / "a"), CopyAt(tmp_path / "a", tmp_path / "b", 2)])
    assert json.loads((tmp_path / "b" / PPO_INFO).read_text())["step"] == 2
    torch.manual_seed(123)  # ... yet it holds the RNG state update 2 left, so the resumed run draws the same
    resumed = run(make_tiny_model(), tiny_tokenizer, reward, cfg, out_dir=tmp_path / "b")
    assert [untimed(r) for r in resumed.history] == [untimed(r) for r in full.history]
    assert all(torch.equal(a, b) for a, b in zip(resumed.policy.state_dict().values(),
                                                 full.policy.state_dict().values(), strict=True))


def test_weights_go_through_safetensors_and_torch_load_is_weights_only(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    run(make_tiny_model(), tiny_tokenizer, ConstantReward(), small_cfg(total_updates=1), out_dir=out)
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", ppo_runs.VALUE_HEAD_FILE} <= files
    assert {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))} == {ppo_runs.STATE_FILE}  # no weights
    loads = []
    for source in (REPO_ROOT / "rlhf_helpers").rglob("*.py"):  # every torch.load call in the package ...
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                weights_only = {k.arg: k.value for k in node.keywords}.get("weights_only")
                loads.append((source.name, node.lineno, isinstance(weights_only, ast.Constant) and weights_only.value))
    assert loads and all(ok for *_, ok in loads), loads  # ... passes weights_only=True


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


def test_each_process_resumes_with_its_own_shuffle_state_and_the_prompts_after_the_checkpoint(
        make_tiny_model, tiny_tokenizer, tmp_path):
    """A checkpoint as two processes write it (both shuffle states; 2 x 16 prompts per update), resumed by the
    second of two processes, then of three (a fake accelerator says which: no process group here)."""
    from types import SimpleNamespace

    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    run(make_tiny_model(), tiny_tokenizer, reward, small_cfg(total_updates=1), out_dir=tmp_path)
    state = torch.load(tmp_path / ppo_runs.STATE_FILE, weights_only=True)
    second = torch.Generator().manual_seed(123).get_state()
    state.update(shuffle_gens=[state["shuffle_gens"][0], second], num_processes=2, prompts_seen=32)
    torch.save(state, tmp_path / ppo_runs.STATE_FILE)
    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS,
                                 small_cfg(total_updates=2, batch_size=8), progress=False)
    real = trainer.accelerator
    for world in (2, 3):
        trainer.accelerator = SimpleNamespace(num_processes=world, process_index=1, is_main_process=False,
                                              unwrap_model=real.unwrap_model, device=real.device)
        assert ppo_runs.load_checkpoint(trainer, tmp_path) == 1
        fresh = torch.Generator().manual_seed(small_cfg().seed + 7919 * 1 + 104_729 * 1).get_state()
        assert torch.equal(trainer.shuffle_gen.get_state(), second if world == 2 else fresh)
        assert trainer.prompts_seen(1) == 32 and trainer.prompts_seen(2) == 32 + 8 * world
        # process 1 of the next update takes the 8 prompts after process 0's, which follow the 32 taken
        g = torch.Generator().manual_seed(small_cfg().seed * 1_000_003 + 2)  # epoch 2 of the 16 prompts: 32..47
        assert trainer.batch_prompts(2) == [PROMPTS[i] for i in torch.randperm(16, generator=g).tolist()[8:16]]


def test_checkpoint_every_and_resume_false(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    saves = []
    cb = ppo_runs.Checkpoint(out, every=2)
    original = ppo_runs.save_checkpoint

    def counting_save(trainer, out_dir, **kwargs):
        saves.append(trainer.step)
        return original(trainer, out_dir, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_runs, "save_checkpoint", counting_save)
        ppo.train_ppo(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS,
                      small_cfg(total_updates=3, save_every=1), callbacks=[cb], progress=False)
        assert saves == [2, 3]  # every 2 updates, and after the last one
        fresh = ppo_runs.train_ppo(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS,
                                   small_cfg(total_updates=1), out_dir=out, resume=False, callbacks=[], progress=False)
    assert [r["step"] for r in fresh.history] == [1] and saves == [2, 3, 1]
    assert json.loads((out / PPO_INFO).read_text())["step"] == 1


def test_a_checkpoint_resumes_only_from_the_models_it_started_from(make_tiny_model, tiny_tokenizer, tmp_path, capsys):
    out = tmp_path / "ppo"

    def go(starts_from, updates):
        return run(make_tiny_model(), tiny_tokenizer, ConstantReward(), small_cfg(total_updates=updates),
                   out_dir=out, starts_from=starts_from)

    go("sft A + reward A", 1)
    assert json.loads((out / PPO_INFO).read_text())["starts_from"] == "sft A + reward A"
    capsys.readouterr()
    assert [r["step"] for r in go("sft A + reward A", 2).history] == [1, 2]  # same models: update 1 is resumed
    assert "Resumed from" in capsys.readouterr().out
    retrained = go("sft B + reward A", 2)  # the SFT policy was retrained: the old run is not taken up
    assert "Not resuming" in capsys.readouterr().out and [r["step"] for r in retrained.history] == [1, 2]
    assert json.loads((out / PPO_INFO).read_text())["starts_from"] == "sft B + reward A"


def test_weights_digest_changes_with_the_weights_only(make_tiny_model, tmp_path):
    from rlhf_helpers.core.artifacts import weights_digest

    for name in ("a", "b"):
        make_tiny_model().save_pretrained(tmp_path / name)
    (tmp_path / "b" / "notes.txt").write_text("not weights")
    assert weights_digest(tmp_path / "a") == weights_digest(tmp_path / "b")  # make_tiny_model is seeded
    model = make_tiny_model()
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3
    model.save_pretrained(tmp_path / "b")
    assert weights_digest(tmp_path / "a") != weights_digest(tmp_path / "b")
    assert weights_digest(tmp_path / "a", tmp_path / "b") != weights_digest(tmp_path / "b", tmp_path / "a")


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


def test_live_plot_draws_in_jupyter_and_colab_kernels_only(monkeypatch):
    import IPython
    from ipykernel.zmqshell import ZMQInteractiveShell

    class Shell(ZMQInteractiveShell):  # Colab's kernel shell: google.colab._shell.Shell, a subclass
        def __init__(self):  # no kernel behind it: only the type matters
            pass

    assert not ppo_runs.in_notebook()  # pytest: no IPython shell at all
    for shell, expected in ((Shell(), True), (object(), False)):
        monkeypatch.setattr(IPython, "get_ipython", lambda s=shell: s)
        assert ppo_runs.in_notebook() is expected


def test_live_plot_is_a_no_op_outside_jupyter_and_plots_history():
    assert not ppo_runs.in_notebook()
    history = [{"step": i, "objective/scores": i * 0.1, "objective/kl": 0.2 * i} for i in range(1, 5)]
    cb = ppo_runs.LivePlot(every=1)
    cb.on_update(type("T", (), {"cfg": dataclasses.replace(PPOConfig(), total_updates=4), "history": history,
                                "extra_metrics": {}})(), history[-1])
    assert cb._handle is None
    fig = ppo_runs.plot_history(history, ["objective/scores", "objective/kl", "missing/key"])
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2


def test_replay_kl_controller_gives_back_an_adaptive_runs_betas(make_tiny_model, tiny_tokenizer):
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    # a short horizon, so beta moves by up to 0.2 * 16 / 40 = 8% per update
    cfg = small_cfg(total_updates=4, adaptive_kl=True, kl_coef=0.1, target_kl=0.05, kl_horizon=40)
    history = run(make_tiny_model(), tiny_tokenizer, reward, cfg).history
    logged = [r["objective/beta"] for r in history]
    replayed = ppo_runs.replay_kl_controller([r["objective/kl"] for r in history], cfg)
    assert replayed == pytest.approx(logged, rel=1e-12) and replayed[0] == 0.1 and len(set(logged)) > 1
    # the rule itself: KL above the target by more than 20% -> beta grows by 0.2 * n / H per update
    assert ppo_runs.replay_kl_controller([1.0, 1.0], cfg, episodes=40) == pytest.approx([0.1, 0.12])
    assert ppo_runs.replay_kl_controller([0.0, 0.0, 0.0], cfg, episodes=20) == pytest.approx([0.1, 0.09, 0.081])
    fixed = dataclasses.replace(cfg, adaptive_kl=False)
    assert ppo_runs.replay_kl_controller([5.0, 0.0, 9.0], fixed) == [0.1, 0.1, 0.1]


def test_start_and_end_gives_each_runs_first_update_and_last_mean():
    runs = {"a": [{"step": i, "objective/kl": float(i), "objective/gold": 0.5} for i in range(1, 7)],
            "b": [{"step": 1, "objective/kl": 2.0}]}  # one update, no gold logged
    table = ppo_runs.start_and_end(runs, ["objective/kl", "objective/gold"], last=4)
    assert list(table.index) == [("a", "update 1"), ("a", "last 4 updates"), ("b", "update 1"), ("b", "last 4 updates")]
    assert list(table["objective/kl"]) == [1.0, 4.5, 2.0, 2.0] and table.loc[("a", "last 4 updates"), "objective/gold"] == 0.5
    assert table["objective/gold"].loc["b"].isna().all()


def test_plot_runs_draws_one_panel_per_logged_key_and_one_line_per_run():
    runs = {name: [{"step": i, "objective/kl": k * i, "val/num_eos_tokens": 60 - k} for i in range(1, 6)]
            for k, name in ((1, "short run"), (2, "course run"))}
    fig = ppo_runs.plot_runs(runs, ["objective/kl", "missing/key", "val/num_eos_tokens"], title="t")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [ppo_runs.METRIC_LABELS[k][0] for k in
                                                 ("objective/kl", "val/num_eos_tokens")]
    assert all(len(ax.get_lines()) == 2 for ax in panels)
    assert [t.get_text() for t in panels[-1].get_legend().get_texts()] == ["short run", "course run"]
    runs["replay"] = [{"step": 1, "objective/kl": 0.0}]  # in the first panel only: still in the legend
    fig = ppo_runs.plot_runs(runs, ["objective/kl", "val/num_eos_tokens"])
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == ["short run", "course run", "replay"]


def test_short_run_trains_a_copy_checkpoints_it_and_starts_over(make_tiny_model, tiny_tokenizer, tmp_path):
    model = make_tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stages = ppo_runs.PPOStages(model, make_tiny_model(), tiny_tokenizer, ConstantReward(0.5), PROMPTS,
                                small_cfg(), tmp_path / "ppo")
    words = {"words": lambda prompts, responses: [float(len(r.split())) for r in responses]}
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    out = tmp_path / "exercise" / "ppo_short"
    first = stages.short_run(small_cfg(total_updates=2), out, reward_source=reward, prompts=PROMPTS[:4],
                             extra_metrics=words)
    assert len(first.history) == 2 and all("objective/words" in r for r in first.history)
    assert json.loads((out / PPO_INFO).read_text())["step"] == 2 and not (tmp_path / "ppo").exists()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # the SFT policy untouched
    again = stages.short_run(small_cfg(total_updates=2), out, reward_source=reward, prompts=PROMPTS[:4])
    assert [r["step"] for r in again.history] == [1, 2]  # started over, not resumed at update 2
    assert [untimed(r)["objective/kl"] for r in again.history] == [r["objective/kl"] for r in first.history]


# ------------------------------------------------------------------------------------- course loader
def test_fit_response_length_follows_the_answers_and_drops_the_eos_penalty_under_a_short_cap():
    from rlhf_helpers.core.config import PPOConfig

    lengths = np.arange(1, 101)  # 1..100 tokens: 95th percentile 95.05
    fixed = PPOConfig(response_length=64)
    cfg, report = ppo_runs.fit_response_length(fixed, lengths)
    assert cfg is fixed and report.endswith("response_length = 64 (set), covers 64%")
    fits = PPOConfig(response_length=128, fit_response_length=True, missing_eos_penalty=1.0)
    cfg, report = ppo_runs.fit_response_length(fits, lengths)
    assert (cfg.response_length, cfg.missing_eos_penalty, cfg.fit_response_length) == (96, 1.0, False)
    assert "median 50 tokens, 95th percentile 95 (n = 100)" in report and "fitted: 96 tokens, covers 96%" in report
    capped = dataclasses.replace(fits, response_length=64)  # memory caps it below the data's answers
    cfg, report = ppo_runs.fit_response_length(capped, lengths)
    assert cfg.response_length == 64 and cfg.missing_eos_penalty is None
    assert "missing-EOS penalty off: the cap leaves 36% of the answers unfinished" in report
    with pytest.raises(ValueError, match="no answer lengths"):
        ppo_runs.fit_response_length(fits, np.array([]))


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
    assert stages.length_report.startswith("chosen answers: median ") and "response_length = 64 (set)" in stages.length_report
    assert set(stages.kwargs()) >= {"policy", "ref_policy", "tokenizer", "reward_source", "prompts", "cfg"}
    fits = dataclasses.replace(profile.ppo, response_length=512, fit_response_length=True)  # notebook 07 reuses it
    fitted, _ = ppo_runs.rollout_config(fits, tiny_tokenizer, data_prep.load_prepared(profile))
    chosen = data_prep.load_prepared(profile).preferences["train"]["chosen"]
    tokens = [len(tiny_tokenizer(a, add_special_tokens=False)["input_ids"]) + 1 for a in chosen]  # + EOS
    assert fitted.response_length == 8 * math.ceil(np.percentile(tokens, 95) / 8) < 512
    assert stages.policy.dtype == torch.float32 and stages.policy.config.pad_token_id == tiny_tokenizer.pad_token_id

"""rlhf_helpers.ppo: the math against plain loops, the KL controller, and short end-to-end runs on a tiny GPT-2."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest
import torch

from rlhf_helpers import ppo
from rlhf_helpers.config import PPOConfig, get_profile
from rlhf_helpers.data import old_dir

PROMPTS = [f"Tell me about {w}." for w in ("pasta", "soil", "stars", "garlic", "moon", "seeds", "oven", "orbit",
                                          "compost", "bread", "galaxy", "roots", "salt", "comet", "water", "light")]


@pytest.fixture(autouse=True)
def one_thread():
    """Models this small run as fast on one thread, and several threads slow down badly on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------- helpers for tests
def random_batch(seed: int, B: int = 6, T: int = 9):
    """Random [B, T] tensors and a prefix mask with lengths 1..T (one row full, one of length 1)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0], lengths[1] = T, 1
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    return [torch.randn(B, T, generator=g) for _ in range(4)], mask, lengths.tolist()


class TokenFrequencyReward:
    """Programmatic reward: the share of response tokens that belong to a target set."""

    name = "token_frequency"

    def __init__(self, tokenizer, target_ids: set[int]) -> None:
        self.tokenizer, self.target = tokenizer, target_ids
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        out = []
        for r in responses:
            ids = self.tokenizer(r, add_special_tokens=False)["input_ids"]
            out.append(sum(i in self.target for i in ids) / max(1, len(ids)))
        return torch.tensor(out)


class ConstantReward:
    name = "constant"

    def __init__(self, value: float = 0.5, nan_on_call: int | None = None) -> None:
        self.value, self.nan_on_call, self.calls = value, nan_on_call, 0

    def score(self, prompts, responses):
        self.calls += 1
        v = float("nan") if self.calls == self.nan_on_call else self.value
        return torch.full((len(responses),), v)


def target_ids(tokenizer, letter: str = "e") -> set[int]:
    vocab = tokenizer.get_vocab()
    return {i for t, i in vocab.items() if letter in tokenizer.convert_tokens_to_string([t])}


def small_cfg(**kw) -> PPOConfig:
    base = dict(total_updates=3, batch_size=16, mini_batch_size=8, ppo_epochs=2, max_new_tokens=8,
                learning_rate=1e-3, init_kl_coef=0.05, missing_eos_penalty=None, save_every=1, sample_every=2)
    base.update(kw)
    return PPOConfig(**base)


def run(model, tokenizer, reward, cfg, **kw):
    return ppo.train_ppo(model, None, tokenizer, reward, PROMPTS, cfg, callbacks=[], progress=False, **kw)


# ------------------------------------------------------------------------------------- math vs loops
@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0)])
def test_compute_gae_matches_a_plain_loop(gamma, lam):
    (rewards, values, _, _), mask, lengths = random_batch(0)
    adv, ret = ppo.compute_gae(rewards, values, mask, gamma, lam)
    for b, L in enumerate(lengths):
        r, v = rewards[b, :L].tolist(), values[b, :L].tolist()
        expected, running = [0.0] * L, 0.0
        for t in reversed(range(L)):
            next_v = v[t + 1] if t + 1 < L else 0.0  # terminal after the last token
            running = r[t] + gamma * next_v - v[t] + gamma * lam * running
            expected[t] = running
        assert adv[b, :L].tolist() == pytest.approx(expected, abs=1e-5)
        assert ret[b, :L].tolist() == pytest.approx([a + x for a, x in zip(expected, v, strict=True)], abs=1e-5)
        assert adv[b, L:].abs().sum() == 0 and ret[b, L:].abs().sum() == 0  # padding ignored


def test_whiten_matches_plain_statistics():
    (x, _, _, _), mask, lengths = random_batch(1)
    x = x * 3 + 2
    vals = [x[b, t].item() for b, L in enumerate(lengths) for t in range(L)]
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))  # unbiased, as TRL
    w = ppo.whiten(x, mask)
    for b, L in enumerate(lengths):
        assert w[b, :L].tolist() == pytest.approx([(x[b, t].item() - mean) / std for t in range(L)], abs=1e-4)
        assert w[b, L:].abs().sum() == 0
    kept = ppo.whiten(x, mask, shift_mean=False)
    assert ppo.masked_mean(kept, mask).item() == pytest.approx(mean, abs=1e-4)
    single = torch.zeros_like(mask)
    single[0, 0] = 1
    with pytest.raises(ValueError, match="at least 2"):
        ppo.whiten(x, single)


def test_kl_estimators_match_their_definitions():
    (a, b, _, _), mask, lengths = random_batch(2)
    logp, ref_logp = -a.abs(), -b.abs()
    k1, k3 = ppo.kl_estimators(logp, ref_logp, mask)
    for i, L in enumerate(lengths):
        for t in range(9):
            lp, rp = logp[i, t].item(), ref_logp[i, t].item()
            r = math.exp(rp - lp)
            want1, want3 = (lp - rp, (r - 1) - math.log(r)) if t < L else (0.0, 0.0)
            assert k1[i, t].item() == pytest.approx(want1, abs=1e-5)
            assert k3[i, t].item() == pytest.approx(want3, abs=1e-5)
    assert (k3 >= 0).all()  # k3 is non-negative token by token; k1 is not
    assert (k1 < 0).any()


def test_policy_loss_matches_a_plain_loop_and_clips_the_gradient():
    (new, old, adv, _), mask, lengths = random_batch(3)
    new, old = -new.abs() * 0.5, -old.abs() * 0.5
    new.requires_grad_(True)
    eps = 0.2
    loss, stats = ppo.policy_loss(new, old, adv, mask, eps)
    terms, clipped, sq, ratios = [], [], [], []
    for b, L in enumerate(lengths):
        for t in range(L):
            ratio = math.exp(new[b, t].item() - old[b, t].item())
            a = adv[b, t].item()
            l1, l2 = -a * ratio, -a * min(max(ratio, 1 - eps), 1 + eps)
            terms.append(max(l1, l2))
            clipped.append(float(l2 > l1))
            sq.append((new[b, t].item() - old[b, t].item()) ** 2)
            ratios.append(ratio)
    n = len(terms)
    assert loss.item() == pytest.approx(sum(terms) / n, abs=1e-5)
    assert stats["clipfrac"].item() == pytest.approx(sum(clipped) / n, abs=1e-6)
    assert stats["approxkl"].item() == pytest.approx(0.5 * sum(sq) / n, abs=1e-6)
    assert stats["ratio"].item() == pytest.approx(sum(ratios) / n, abs=1e-5)
    loss.backward()
    ratio = torch.exp(new - old).detach()
    outside = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
    assert outside.any() and (new.grad[outside] == 0).all()  # no push beyond the trust region
    assert (new.grad[(mask == 0)] == 0).all()


def test_value_loss_matches_a_plain_loop():
    (v, old_v, ret, _), mask, lengths = random_batch(4)
    eps = 0.2
    loss, clipfrac = ppo.value_loss(v, old_v, ret, mask, eps)
    terms, clipped = [], []
    for b, L in enumerate(lengths):
        for t in range(L):
            vv, ov, rr = v[b, t].item(), old_v[b, t].item(), ret[b, t].item()
            vc = ov + min(max(vv - ov, -eps), eps)
            terms.append(max((vv - rr) ** 2, (vc - rr) ** 2))
            clipped.append(float((vc - rr) ** 2 > (vv - rr) ** 2))
    assert loss.item() == pytest.approx(0.5 * sum(terms) / len(terms), abs=1e-5)
    assert clipfrac.item() == pytest.approx(sum(clipped) / len(clipped), abs=1e-6)


def test_adaptive_kl_controller_moves_beta_towards_the_target():
    ctl = ppo.AdaptiveKLController(0.1, target=6.0, horizon=1000)
    ctl.update(12.0, n_steps=100)  # KL too high: error clipped at +0.2 -> beta * (1 + 0.2 * 100/1000)
    assert ctl.value == pytest.approx(0.1 * 1.02)
    before = ctl.value
    ctl.update(3.0, n_steps=100)  # KL too low: error clipped at -0.2
    assert ctl.value == pytest.approx(before * 0.98)
    before = ctl.value
    ctl.update(6.6, n_steps=100)  # 10% above target: unclipped error 0.1
    assert ctl.value == pytest.approx(before * 1.01)
    restored = ppo.AdaptiveKLController(1.0, 6.0, 1000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value
    fixed = ppo.make_kl_controller(PPOConfig(init_kl_coef=0.3, adaptive_kl=False))
    fixed.update(100.0, 100)
    assert fixed.value == 0.3
    assert isinstance(ppo.make_kl_controller(PPOConfig(adaptive_kl=True)), ppo.AdaptiveKLController)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="batch_size .* multiple of mini_batch_size"):
        ppo.validate_config(PPOConfig(batch_size=10, mini_batch_size=4))
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        ppo.validate_config(PPOConfig(mini_batch_size=8, gradient_accumulation_steps=3))
    with pytest.raises(ValueError, match="sweep_betas"):
        ppo.validate_config(PPOConfig(sweep_betas=[0.1, -0.01]))
    with pytest.raises(ValueError, match="sweep_prompts"):
        ppo.validate_config(PPOConfig(sweep_prompts=0))
    with pytest.raises(ValueError, match="short_run_learning_rate"):
        ppo.validate_config(PPOConfig(short_run_learning_rate=0.0))
    for name in ("tiny", "colab", "cpu"):  # every profile's PPO settings (notebook 05's sweep included) are valid
        ppo.validate_config(get_profile(name).ppo)


# ------------------------------------------------------------------------------------- end to end
def test_reward_rises_while_kl_stays_bounded(make_tiny_model, tiny_tokenizer):
    torch.manual_seed(0)
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    cfg = small_cfg(total_updates=20, batch_size=32, ppo_epochs=2, max_new_tokens=16, learning_rate=3e-3,
                    init_kl_coef=0.02)
    hist = run(make_tiny_model(), tiny_tokenizer, reward, cfg).history
    assert [r["step"] for r in hist] == list(range(1, 21))
    first = sum(r["objective/scores"] for r in hist[:5]) / 5
    last = sum(r["objective/scores"] for r in hist[-5:]) / 5
    assert last > 1.8 * first and last - first > 0.08, (first, last)
    kls = [r["objective/kl"] for r in hist]
    assert hist[0]["objective/kl"] == pytest.approx(0, abs=1e-5)  # the first rollout: policy == reference
    assert all(math.isfinite(k) for k in kls) and max(kls) < 10  # the KL penalty holds the policy near pi_ref
    for r in hist:  # bookkeeping identities of the logged numbers
        assert r["objective/rlhf_reward"] == pytest.approx(r["objective/scores"] + r["objective/non_score_reward"],
                                                           abs=1e-5)
        assert r["objective/non_score_reward"] == pytest.approx(-r["objective/beta"] * r["objective/kl"], abs=1e-4)
        assert r["objective/kl_k3"] >= 0 and 0.5 < r["val/ratio"] < 1.5
    for key in ("objective/entropy", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg",
                "loss/value_avg", "val/clipfrac_avg", "val/num_eos_tokens", "time/update_s"):
        assert key in hist[-1]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_old_logprobs_match_the_training_forward(make_tiny_model, tiny_tokenizer, checkpointing):
    # one epoch, one minibatch, lr 0: the training forward must reproduce the rollout's log-probs exactly
    cfg = small_cfg(total_updates=1, batch_size=8, mini_batch_size=8, ppo_epochs=1, learning_rate=0.0,
                    gradient_checkpointing=checkpointing)
    rec = run(make_tiny_model(), tiny_tokenizer, ConstantReward(), cfg).history[0]
    assert rec["val/ratio"] == pytest.approx(1.0, abs=1e-5)
    assert rec["policy/approxkl_avg"] < 1e-10 and rec["policy/clipfrac_avg"] == 0


def test_missing_eos_penalty(make_tiny_model, tiny_tokenizer):
    model = make_tiny_model()
    eos = tiny_tokenizer.eos_token_id
    with torch.no_grad():  # make EOS likely (about a quarter of the tokens), so some responses end and some don't
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[eos, 0] = 5.0
    cfg = small_cfg(batch_size=16, max_new_tokens=4, missing_eos_penalty=2.0, init_kl_coef=0.0)
    trainer = ppo.PPOTrainerLite(model, None, tiny_tokenizer, ConstantReward(0.5), PROMPTS, cfg, callbacks=[],
                                 progress=False)
    ro = trainer.make_rollout(PROMPTS[:16], step=1)
    assert ro.eos_found.any() and (~ro.eos_found).any()
    assert ro.raw_scores.tolist() == [0.5] * 16
    expected = torch.where(ro.eos_found, torch.tensor(0.5), torch.tensor(-1.5))
    assert torch.equal(ro.scores, expected)
    last = ro.mask.sum(1).long() - 1
    for i in range(16):  # the score sits on the last response token (the EOS when there is one)
        assert ro.rewards[i, last[i]].item() == pytest.approx(expected[i].item())
        assert (ro.response_ids[i, last[i]].item() == eos) == bool(ro.eos_found[i])
        assert ro.rewards[i].abs().sum().item() == pytest.approx(abs(expected[i].item()))  # beta = 0: nothing else
    record = trainer.train_step()
    assert record["objective/raw_scores"] == pytest.approx(0.5)
    assert record["objective/scores"] < 0.5


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    cfg = small_cfg(total_updates=5, save_every=1)
    with pytest.raises(ppo.PPODivergenceError, match=r"update 3: the reward source returned NaN.*update 2\)") as e:
        run(make_tiny_model(), tiny_tokenizer, ConstantReward(0.5, nan_on_call=3), cfg, out_dir=out)
    assert e.value.checkpoint_step == 2 and len(e.value.result.history) == 2
    assert json.loads((out / ppo.INFO_FILE).read_text())["step"] == 2
    assert len((out / ppo.LOG_FILE).read_text().splitlines()) == 2
    assert ppo.load_ppo_policy(out, device="cpu") is not None
    assert not list(tmp_path.glob(".ppo.*"))  # no temporary directories left behind


def test_a_save_interrupted_between_its_renames_resumes_from_the_old_copy(make_tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "ppo"
    reward = ConstantReward(0.5)
    run(make_tiny_model(), tiny_tokenizer, reward, small_cfg(total_updates=2), out_dir=out)
    os.replace(out, old_dir(out))  # the moment between "current -> .old" and "new -> current"
    assert ppo.has_checkpoint(out) and not ppo.has_checkpoint(tmp_path / "other")
    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, small_cfg(total_updates=2),
                                 callbacks=[], progress=False)
    assert ppo.load_checkpoint(trainer, out) == 2 and len(trainer.history) == 2
    with pytest.raises(FileNotFoundError, match="No PPO checkpoint"):
        ppo.load_checkpoint(trainer, tmp_path / "other")


def test_runaway_kl_stops_the_run(make_tiny_model, tiny_tokenizer):
    cfg = small_cfg(total_updates=5, learning_rate=1e-2, max_kl=0.05, init_kl_coef=0.0)
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    with pytest.raises(ppo.PPODivergenceError, match="runaway KL.*max_kl = 0.05.*no checkpoint was written"):
        run(make_tiny_model(), tiny_tokenizer, reward, cfg)


def test_resume_continues_step_log_and_optimizer(make_tiny_model, tiny_tokenizer, tmp_path, capsys):
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    full = run(make_tiny_model(), tiny_tokenizer, reward, small_cfg(total_updates=3), out_dir=tmp_path / "a")
    run(make_tiny_model(), tiny_tokenizer, reward, small_cfg(total_updates=2), out_dir=tmp_path / "b")

    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, small_cfg(total_updates=3),
                                 out_dir=tmp_path / "b", callbacks=[], progress=False)
    result = trainer.train(resume=True)
    assert [r["step"] for r in result.history] == [1, 2, 3]
    steps_per_update = 2 * 16 // 8  # ppo_epochs * minibatches
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {3 * steps_per_update}  # the restored optimizer kept counting
    # the resumed update is the very update the uninterrupted run made (same RNG, weights and Adam moments)
    for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "policy/approxkl_avg"):
        assert result.history[2][key] == pytest.approx(full.history[2][key], rel=1e-4, abs=1e-6), key
    def untimed(r):
        return {k: v for k, v in r.items() if not k.startswith("time/")}

    assert [untimed(r) for r in result.history[:2]] == [untimed(r) for r in full.history[:2]]  # the restored log
    saved = [json.loads(line) for line in (tmp_path / "b" / ppo.LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in saved] == [1, 2, 3]
    # resuming a finished run does nothing more, and says so when the settings changed
    capsys.readouterr()
    again = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS,
                               small_cfg(total_updates=3, learning_rate=5e-4), out_dir=tmp_path / "b",
                               callbacks=[], progress=False).train()
    assert len(again.history) == 3
    assert "different settings (learning_rate)" in capsys.readouterr().out


def test_gradient_accumulation_steps_the_optimizer_once_per_minibatch(make_tiny_model, tiny_tokenizer):
    cfg = small_cfg(total_updates=1, gradient_accumulation_steps=4)
    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS, cfg,
                                 callbacks=[], progress=False)
    trainer.train()
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {cfg.ppo_epochs * cfg.batch_size // cfg.mini_batch_size}


def test_lora_policy_uses_the_adapter_free_model_as_reference(make_tiny_model, tiny_tokenizer, tmp_path):
    torch.manual_seed(0)  # peft draws the LoRA A matrices from the global RNG
    model = make_tiny_model()
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = small_cfg(total_updates=3, use_lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    trainer = ppo.PPOTrainerLite(model, None, tiny_tokenizer, reward, PROMPTS, cfg, out_dir=tmp_path / "ppo",
                                 callbacks=[], progress=False)
    assert trainer.ref_policy is None and trainer.use_adapter_as_ref  # no copy of the model
    hist = trainer.train().history
    assert hist[0]["objective/kl"] == pytest.approx(0, abs=1e-5)  # adapters start as a no-op (LoRA B = 0)
    assert hist[-1]["objective/kl_k3"] > 1e-3  # then the policy moves away from the adapter-free reference
    after = {k.replace(".base_layer", ""): v for k, v in trainer.policy.get_base_model().state_dict().items()
             if "lora_" not in k}
    assert after.keys() == base_before.keys()
    assert all(torch.equal(after[k], v) for k, v in base_before.items())  # the base weights stay frozen
    assert (tmp_path / "ppo" / "adapter_config.json").exists() and (tmp_path / "ppo" / "merged").is_dir()


def test_beta_sweep_logs_extra_metrics_and_leaves_the_policy_alone(make_tiny_model, tiny_tokenizer):
    model = make_tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    cfg = small_cfg(total_updates=2)
    words = {"words": lambda prompts, responses: [float(len(r.split())) for r in responses]}
    results = ppo.beta_sweep(model, tiny_tokenizer, reward, PROMPTS, cfg, betas=[0.0, 0.5],
                             extra_metrics=words, progress=False)
    assert set(results) == {0.0, 0.5}
    for beta, res in results.items():
        assert [r["objective/beta"] for r in res.history] == [beta, beta]
        assert all("objective/words" in r for r in res.history) and res.policy is None
        assert all("words" in s for s in res.samples)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    table = ppo.sweep_summary(results)
    assert list(table["beta"]) == [0.0, 0.5] and "objective/words" in table.columns
    fig = ppo.plot_beta_sweep(results, keys=("objective/scores", "objective/words", "objective/kl"))
    assert len(fig.axes) == 3


def test_checkpoint_never_overwrites_a_foreign_directory(make_tiny_model, tiny_tokenizer, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a PPO checkpoint"):
        run(make_tiny_model(), tiny_tokenizer, ConstantReward(), small_cfg(total_updates=1), out_dir=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_live_plot_is_a_no_op_outside_jupyter_and_plots_history():
    assert not ppo.in_notebook()
    history = [{"step": i, "objective/scores": i * 0.1, "objective/kl": 0.2 * i} for i in range(1, 5)]
    cb = ppo.LivePlot(every=1)
    cb.on_update(type("T", (), {"cfg": dataclasses.replace(PPOConfig(), total_updates=4), "history": history,
                                "extra_metrics": {}})(), history[-1])
    assert cb._handle is None
    fig = ppo.plot_history(history, ["objective/scores", "objective/kl", "missing/key"])
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2


def test_load_course_stages(make_tiny_model, tiny_tokenizer, course_data_dir, tmp_path):
    from rlhf_helpers import data
    from rlhf_helpers.config import MissingStageError, Paths, get_profile

    profile = get_profile("tiny", paths=Paths(root=tmp_path, data_dir=course_data_dir))
    with pytest.raises(MissingStageError, match="02_sft_full"):
        ppo.load_course_stages(profile, reward_source=ConstantReward())
    make_tiny_model().save_pretrained(profile.paths.checkpoint("sft_full"))
    tiny_tokenizer.save_pretrained(profile.paths.checkpoint("sft_full"))
    data.prepare_course_data(profile)
    stages = ppo.load_course_stages(profile, reward_source=ConstantReward())
    train_prompts = data.load_prepared(profile).preferences["train"]["prompt"]
    assert stages.prompts == list(dict.fromkeys(train_prompts)) and len(set(stages.prompts)) == len(stages.prompts)
    assert stages.ref_policy is not stages.policy and not any(p.requires_grad for p in stages.ref_policy.parameters())
    assert stages.out_dir == profile.paths.checkpoint("ppo") and stages.cfg == profile.ppo
    assert set(stages.kwargs()) >= {"policy", "ref_policy", "tokenizer", "reward_source", "prompts", "cfg"}


@pytest.mark.parametrize("detach", [False, True])
def test_value_detach_trunk_keeps_the_value_loss_out_of_the_policy(make_tiny_model, detach):
    policy = make_tiny_model()
    model = ppo.PolicyWithValueHead(policy, ppo.ValueHead(policy.config.n_embd), detach_trunk=detach)
    torch.nn.init.normal_(model.value_head.linear.weight)  # a trained head (it starts at zero: no gradient yet)
    ids = torch.randint(3, 100, (2, 10))
    _, values = model(ids, torch.ones_like(ids), 4)
    assert values.shape == (2, 4)
    values.sum().backward()  # a value loss alone
    trunk = [p.grad for p in policy.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert bool(trunk) is not detach
    assert model.value_head.linear.weight.grad.abs().sum() > 0  # the head always learns

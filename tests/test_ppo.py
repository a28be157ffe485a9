"""rlhf_helpers.ppo: the math against plain loops, the KL controller, the callback hooks and short end-to-end
runs on a tiny GPT-2. (Checkpoints, the sweep, plots and the course loader: test_ppo_runs.py, which reuses the
helpers below.)"""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
import torch

from rlhf_helpers import ppo
from rlhf_helpers.core.config import PPOConfig

PROMPTS = [f"Tell me about {w}." for w in ("pasta", "soil", "stars", "garlic", "moon", "seeds", "oven", "orbit",
                                          "compost", "bread", "galaxy", "roots", "salt", "comet", "water", "light")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


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
    base = dict(total_updates=3, batch_size=16, mini_batch_size=8, num_ppo_epochs=2, response_length=8,
                learning_rate=1e-3, kl_coef=0.05, missing_eos_penalty=None, save_every=1, sample_every=2,
                lam=0.95)  # TRL's default lambda (the tiny profile's 1.0 is for ~35-token answers)
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
    fixed = ppo.make_kl_controller(PPOConfig(kl_coef=0.3, adaptive_kl=False))
    fixed.update(100.0, 100)
    assert fixed.value == 0.3
    assert isinstance(ppo.make_kl_controller(PPOConfig(adaptive_kl=True)), ppo.AdaptiveKLController)


# ------------------------------------------------------------------------------------- end to end
def test_reward_rises_while_kl_stays_bounded(make_tiny_model, tiny_tokenizer):
    torch.manual_seed(0)
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    cfg = small_cfg(total_updates=20, batch_size=32, num_ppo_epochs=2, response_length=16, learning_rate=3e-3,
                    kl_coef=0.02)
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
    cfg = small_cfg(total_updates=1, batch_size=8, mini_batch_size=8, num_ppo_epochs=1, learning_rate=0.0,
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
    cfg = small_cfg(batch_size=16, response_length=4, missing_eos_penalty=2.0, kl_coef=0.0)
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


def test_runaway_kl_stops_the_run(make_tiny_model, tiny_tokenizer):
    cfg = small_cfg(total_updates=5, learning_rate=1e-2, max_kl=0.05, kl_coef=0.0)
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    with pytest.raises(ppo.PPODivergenceError, match="runaway KL.*max_kl = 0.05.*no checkpoint was written"):
        run(make_tiny_model(), tiny_tokenizer, reward, cfg)


class ScaledReward(TokenFrequencyReward):
    """TokenFrequencyReward times ``scale`` plus ``shift``: a reward on the wrong scale."""

    def __init__(self, tokenizer, target, scale: float, shift: float = 0.0) -> None:
        super().__init__(tokenizer, target)
        self.scale, self.shift = scale, shift

    def score(self, prompts, responses):
        return super().score(prompts, responses) * self.scale + self.shift


def test_scores_far_outside_ppos_scale_are_warned_about_once_per_run(make_tiny_model, tiny_tokenizer):
    big = ScaledReward(tiny_tokenizer, target_ids(tiny_tokenizer), scale=1e6, shift=3e5)
    cfg = small_cfg(total_updates=2, batch_size=8)
    with pytest.warns(RuntimeWarning) as caught:
        hist = run(make_tiny_model(), tiny_tokenizer, big, cfg).history
    msgs = [str(w.message) for w in caught if "scale PPO expects" in str(w.message)]
    assert len(msgs) == 1, msgs  # once per run, not every update
    assert "mean |score| = 3" in msgs[0] and f"more than {ppo.SCORE_SCALE_LIMIT:g}" in msgs[0]
    assert "Normalise the reward" in msgs[0] and "score_clip" in msgs[0]
    assert hist[0]["loss/value_avg"] > 1e6  # what it warns about: the value loss explodes, the KL penalty is noise
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no warning: clipped scores, a reward of order 1 ... or 90
        run(make_tiny_model(), tiny_tokenizer, big, small_cfg(total_updates=1, batch_size=8, score_clip=5.0))
        run(make_tiny_model(), tiny_tokenizer, TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer)),
            small_cfg(total_updates=1, batch_size=8))
        run(make_tiny_model(), tiny_tokenizer, ConstantReward(90.0), small_cfg(total_updates=1, batch_size=8))
    with pytest.warns(RuntimeWarning, match="std = "):  # a spread of 1000 around 0 too
        run(make_tiny_model(), tiny_tokenizer, ScaledReward(tiny_tokenizer, target_ids(tiny_tokenizer), 1e4, -1e3),
            small_cfg(total_updates=1, batch_size=8))


def test_gradient_accumulation_steps_the_optimizer_once_per_minibatch(make_tiny_model, tiny_tokenizer):
    cfg = small_cfg(total_updates=1, gradient_accumulation_steps=4)
    trainer = ppo.PPOTrainerLite(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS, cfg,
                                 callbacks=[], progress=False)
    trainer.train()
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {cfg.num_ppo_epochs * cfg.batch_size // cfg.mini_batch_size}


def test_lora_policy_uses_the_adapter_free_model_as_reference(make_tiny_model, tiny_tokenizer):
    torch.manual_seed(0)  # peft draws the LoRA A matrices from the global RNG
    model = make_tiny_model()
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = small_cfg(total_updates=3, use_lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    trainer = ppo.PPOTrainerLite(model, None, tiny_tokenizer, reward, PROMPTS, cfg, callbacks=[], progress=False)
    assert trainer.ref_policy is None and trainer.use_adapter_as_ref  # no copy of the model
    hist = trainer.train().history
    assert hist[0]["objective/kl"] == pytest.approx(0, abs=1e-5)  # adapters start as a no-op (LoRA B = 0)
    assert hist[-1]["objective/kl_k3"] > 1e-3  # then the policy moves away from the adapter-free reference
    after = {k.replace(".base_layer", ""): v for k, v in trainer.policy.get_base_model().state_dict().items()
             if "lora_" not in k}
    assert after.keys() == base_before.keys()
    assert all(torch.equal(after[k], v) for k, v in base_before.items())  # the base weights stay frozen
    # (its checkpoint, adapters and merged model: test_ppo_runs.py)


@pytest.mark.parametrize("detach", [False, True])
def test_value_detach_trunk_keeps_the_value_loss_out_of_the_policy(make_tiny_model, detach):
    policy = make_tiny_model()
    model = ppo.PolicyWithValueHead(policy, ppo.ValueHead(policy.config.hidden_size), detach_trunk=detach)
    torch.nn.init.normal_(model.value_head.linear.weight)  # a trained head (it starts at zero: no gradient yet)
    ids = torch.randint(3, 100, (2, 10))
    _, values = model(ids, torch.ones_like(ids), 4)
    assert values.shape == (2, 4)
    values.sum().backward()  # a value loss alone
    trunk = [p.grad for p in policy.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert bool(trunk) is not detach
    assert model.value_head.linear.weight.grad.abs().sum() > 0  # the head always learns


class Recorder(ppo.Callback):
    """Writes down which hook was called, in order, with the trainer's step at that moment."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def on_train_begin(self, trainer):
        self.calls.append(("begin", trainer.step))

    def on_samples(self, trainer, samples):
        self.calls.append(("samples", trainer.step))
        assert [s["step"] for s in samples] == [trainer.step] * trainer.cfg.num_samples

    def on_update(self, trainer, record):
        self.calls.append(("update", record["step"]))
        assert trainer.history[-1] is record and trainer.step == record["step"]

    def on_train_end(self, trainer):
        self.calls.append(("end", trainer.step))


def training_state(trainer) -> dict:
    """Everything a checkpoint holds, and the global RNGs, copied."""
    return {"step": trainer.step, "history": [dict(r) for r in trainer.history], "samples": list(trainer.samples),
            "weights": {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()},
            "adam": {k: {n: t.clone() for n, t in v.items()} for k, v in trainer.optimizer.state_dict()["state"].items()},
            "lrs": [g["lr"] for g in trainer.optimizer.param_groups], "beta": trainer.kl_ctl.value,
            "shuffle_gen": trainer.shuffle_gen.get_state(), "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(), "numpy_rng": np.random.get_state()[1].copy()}


def same_state(a: dict, b: dict) -> bool:
    def eq(x, y):
        if isinstance(x, torch.Tensor | np.ndarray):
            return bool((x == y).all()) and x.shape == y.shape
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(eq(x[k], y[k]) for k in x)
        return x == y
    return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)


class ValidationWatcher(ppo.Callback):
    """Checks that when a policy is announced as validated, its training state is exactly what its update left."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.after_update: dict = {}

    def on_update(self, trainer, record):
        self.calls.append(("update", trainer.step))
        self.after_update = training_state(trainer)

    def on_policy_validated(self, trainer):
        self.calls.append(("validated", trainer.step))
        assert trainer.validated_step == trainer.step
        assert same_state(training_state(trainer), self.after_update)

    def on_train_end(self, trainer):
        self.calls.append(("end", trainer.step))
        assert same_state(training_state(trainer), self.after_update)  # the extra rollout changed nothing


def test_a_policy_is_announced_as_validated_only_after_its_check_and_with_its_state_untouched(
        make_tiny_model, tiny_tokenizer):
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    cfg = small_cfg(total_updates=3, batch_size=8, adaptive_kl=True, target_kl=0.01, kl_horizon=100)
    plain = run(make_tiny_model(), tiny_tokenizer, reward, cfg)  # no callback wants validation: no extra rollout
    calls = reward.calls
    watcher = ValidationWatcher()
    checked = ppo.train_ppo(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, cfg, callbacks=[watcher],
                            progress=False)
    assert reward.calls - calls == 3 + 1  # one rollout per update, and one to check the final policy
    assert watcher.calls == [("update", 1), ("validated", 1), ("update", 2), ("validated", 2), ("update", 3),
                             ("validated", 3), ("end", 3)]
    # the extra rollout costs only time: same log, samples and weights as without it
    assert [untimed(r) for r in checked.history] == [untimed(r) for r in plain.history]
    assert checked.samples == plain.samples
    assert all(torch.equal(a, b) for a, b in zip(checked.policy.state_dict().values(),
                                                 plain.policy.state_dict().values(), strict=True))


def test_a_final_policy_beyond_max_kl_fails_its_check(make_tiny_model, tiny_tokenizer):
    # lr 1e-2, no KL penalty: mean KL 0 (update 1's rollout), 0.76 (update 2's), 2.85 (the policy after update 2)
    cfg = small_cfg(total_updates=2, learning_rate=1e-2, kl_coef=0.0, max_kl=2.0)
    reward = TokenFrequencyReward(tiny_tokenizer, target_ids(tiny_tokenizer))
    assert len(run(make_tiny_model(), tiny_tokenizer, reward, cfg).history) == 2  # nothing asks for the check
    with pytest.raises(ppo.PPODivergenceError, match=r"after its last update \(2\): the check of the final policy "
                       r"found runaway KL: .* = [\d.]+ nats > max_kl = 2\.0\. That policy was not saved; no checkpoint"):
        ppo.train_ppo(make_tiny_model(), None, tiny_tokenizer, reward, PROMPTS, cfg, callbacks=[ValidationWatcher()],
                      progress=False)


def untimed(r):
    return {k: v for k, v in r.items() if not k.startswith("time/")}


def test_callback_hooks_run_in_order_and_nothing_is_saved_by_default(make_tiny_model, tiny_tokenizer, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec, records = Recorder(), []
    cfg = small_cfg(total_updates=3, batch_size=8, num_ppo_epochs=1, sample_every=2, num_samples=2)
    result = ppo.train_ppo(make_tiny_model(), None, tiny_tokenizer, ConstantReward(), PROMPTS, cfg,
                           callbacks=[rec, records.append], progress=False)  # a plain function works as a callback
    assert rec.calls == [("begin", 0), ("samples", 1), ("update", 1), ("samples", 2), ("update", 2), ("update", 3),
                         ("end", 3)]
    assert records == result.history and result.out_dir is None
    assert not list(tmp_path.iterdir())  # no checkpoint, no log: keeping the run is a callback's job (ppo_runs)

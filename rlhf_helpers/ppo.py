"""PPO for causal language models, readable top to bottom, with the math beside the code.

Layout follows CleanRL's ``ppo.py`` (one file, one loop); the LM-specific details follow
*lm-human-preferences* and "The N Implementation Details of RLHF with PPO" (Huang et al., 2024); settings and
metric names follow TRL's (removed) PPOTrainer, so TRL's docs explain our plots too.

One PPO **update** (``PPOTrainerLite.train_step``):

1. **Rollout** -- ``batch_size`` prompts; sample a response to each with the course's generation helper
   (:func:`rlhf_helpers.core.generation.generate_ids`: batched, KV cache, temperature ``cfg.temperature``).
2. **Score** -- one no-grad forward of the policy gives the old log-probs ``log pi_old(y_t|x,y_<t)`` *and*
   the values ``V(s_t)`` (value head on the same forward); one no-grad forward of the frozen reference gives
   ``log pi_ref``; the reward source gives one scalar ``score`` per response.
3. **Rewards** -- a per-token KL penalty plus the score on the last response token::

       r_t = -beta * (log pi_old(y_t) - log pi_ref(y_t))   +   [t == last] * score

   A response without EOS (cut at ``response_length``) gets ``score - missing_eos_penalty`` (TRL semantics).
4. **GAE** -- ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``, ``A_t = delta_t + gamma lambda A_{t+1}``,
   returns ``R_t = A_t + V(s_t)``; advantages are whitened over the batch.
5. **PPO epochs** -- ``num_ppo_epochs`` passes over shuffled minibatches (optionally in gradient-accumulation
   micro-batches) minimising ``L = L_clip + vf_coef * L_V`` with gradient clipping (accelerate).
6. **KL controller** -- fixed beta (``kl_coef``), or the adaptive controller of Ziegler et al. (2019).

**Guards.** Each rollout is checked before the update learns from it: NaN/inf log-probs or values, or a mean
KL(pi || pi_ref) above ``cfg.max_kl``, stop the run (:class:`PPODivergenceError`), as do NaN/inf rewards, losses
or weights. A rollout is sampled from the policy the *previous* update left, so that policy is known to be good
only once the next rollout has passed: only then is it announced to the callbacks
(:meth:`Callback.on_policy_validated`, where checkpoints are saved), and the final policy gets one extra rollout
for the purpose (:meth:`PPOTrainerLite.validate_policy`). Scores far outside the scale PPO expects (mean |score|
or std above :data:`SCORE_SCALE_LIMIT`) are warned about once per run.

Choices (and why):

* **Value = a scalar linear head on the policy's last hidden state** (shared trunk): one forward gives
  log-probs and values, half the cost of TRL's separate value model (a copy of the reward model). The price:
  value-loss gradients reach the policy's trunk (scaled by ``vf_coef``), and the critic starts knowing
  nothing -- :class:`ValueHead` says how it catches up.
* **No dropout** in policy or reference: with dropout the rollout's "old" log-probs and the first
  minibatch's differ, so the ratio is not 1 at the start of an update.
* Everything goes through ``accelerate`` (``prepare``, ``accumulate``, ``backward``, ``clip_grad_norm_``,
  mixed precision on a GPU): the same code runs on CPU, one GPU or several processes.
* **Several processes** (``accelerate launch``, DDP): each process samples and scores its own ``batch_size``
  prompts (its own sampling seed); the advantage (and reward) whitening uses the mean and std of *all* processes'
  tokens, the metrics are means over all processes, the KL controller sees the global KL, DDP averages the
  gradients, and checkpoints are written by the main process (:mod:`rlhf_helpers.ppo_runs`). Each process's losses
  are means over its own tokens, so the averaged gradient is one process's exactly when the processes hold as many
  response tokens, and close to it otherwise. A given seed and process count give the same run; a different
  process count samples differently. DDP only: DeepSpeed is refused (see ``PPOTrainerLite``'s check).
* **Hand-written** because TRL >= 1.13 has no PPO trainer (1.12's needs separate value and reward models of
  the sequence-classification kind; the course's rewards are any :class:`~rlhf_helpers.reward.RewardSource`).

* **Encoder-decoder policies** (T5; notebook 10) go through the same code: the generation helper and
  :func:`~rlhf_helpers.core.generation.lm_forward` feed the query to the encoder and read log-probs and the value
  head's hidden states off the decoder, in the same ``[B, T]`` layout; LoRA adapters get peft's seq2seq task type.

Checkpoints, live plot, printed samples, the beta sweep and the course loader are callbacks and helpers
around the algorithm, in :mod:`rlhf_helpers.ppo_runs`.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .core.config import GenerationConfig, PPOConfig
from .core.generation import (
    entropy_from_logits,
    generate_ids,
    is_encoder_decoder,
    lm_forward,
    logprobs_from_logits,
)
from .core.loading import disable_dropout, frozen_copy, is_peft, lora_config, make_accelerator

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ExtraMetric = Callable[[list[str], list[str]], Sequence[float]]
Reduce = Callable[[torch.Tensor], torch.Tensor]  # sums a tensor over processes (PPOTrainerLite.sum_over_processes)

# Scores (after the EOS penalty and clipping) whose mean |score| or standard deviation over a rollout exceed this
# get a warning, once per run. PPO's defaults assume scores of order 1 (the course's reward model is normalised to
# mean 0, std 1 on reference responses): at 100x that, the KL penalty beta * KL (~0.1-1) is noise beside the
# score, max_kl stops nothing in time, and the value loss runs to 1e4 and beyond.
SCORE_SCALE_LIMIT = 100.0


# =====================================================================================================
# 1. Masked statistics, KL estimators, GAE and the two PPO losses (pure functions, unit-tested)
# =====================================================================================================
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None,
                reduce: Reduce | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (over ``dim``, or over everything). ``reduce`` sums a
    tensor over processes: the mean of every process's positions (with ``dim=None``)."""
    mask = mask.to(x.dtype)
    if dim is None:
        total, count = (x * mask).sum(), mask.sum()
        if reduce is not None:
            total, count = reduce(total), reduce(count)
        return total / count.clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True,
               reduce: Reduce | None = None) -> torch.Tensor:
    """Variance of ``x`` over the masked positions (Bessel-corrected by default, as TRL); of every process's
    positions with ``reduce`` (as :func:`masked_mean`)."""
    mean = masked_mean(x, mask, reduce=reduce)
    var = masked_mean((x - mean) ** 2, mask, reduce=reduce)
    if unbiased:
        n = mask.sum() if reduce is None else reduce(mask.to(x.dtype).sum())
        if n < 2:
            raise ValueError("masked_var needs at least 2 unmasked values (is the minibatch too small?)")
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, reduce: Reduce | None = None) -> torch.Tensor:
    """``(x - mean) / std`` over the masked positions; zeros outside the mask.

    ``shift_mean=False`` keeps the mean (only rescales), as used for reward whitening. ``reduce`` (a sum over
    processes): the mean and std of the whole batch, every process's share of it, as one process would compute.
    """
    mean, var = masked_mean(x, mask, reduce=reduce), masked_var(x, mask, reduce=reduce)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def kl_estimators(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token estimators of KL(pi || pi_ref) for tokens sampled from pi, shapes ``[B, T]`` (0 off-mask).

    * k1 = log pi - log pi_ref                  (unbiased, can be negative per token; the PPO penalty)
    * k3 = (r - 1) - log r,  r = pi_ref / pi    (unbiased, always >= 0, lower variance; Schulman's blog
      "Approximating KL divergence")
    """
    mask = mask.to(logp.dtype)
    k1 = (logp - ref_logp) * mask
    log_r = (ref_logp - logp) * mask
    k3 = (torch.expm1(log_r) - log_r) * mask
    return k1, k3


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens.

    ``rewards``, ``values``, ``mask``: ``[B, T]``; ``mask`` is 1 on each response's tokens (a prefix: the
    tokens up to and including EOS) and 0 on padding. The state after the last token is terminal (value 0)::

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V_t                       (the value target)

    Returns ``(advantages, returns)``, both ``[B, T]`` with zeros on padding.
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask  # padding: V = 0, r = 0 -> delta = 0 there
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, ``[B, T]`` inputs -> scalar loss (masked mean over tokens)::

        ratio_t = exp(log pi(y_t) - log pi_old(y_t))
        L_clip  = mean_t max( -A_t * ratio_t,  -A_t * clip(ratio_t, 1 - eps, 1 + eps) )

    Stats (detached): ``clipfrac`` (share of tokens where the clipped term is the larger one),
    ``approxkl`` (0.5 * mean (log ratio)^2, an estimate of KL(pi_old || pi)), ``ratio`` (mean ratio).
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss, ``[B, T]`` inputs -> ``(loss, clipfrac)``::

        V_clip = V_old + clip(V - V_old, -eps_v, eps_v)
        L_V    = 0.5 * mean_t max( (V - R)^2, (V_clip - R)^2 )
    """
    v_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((loss_clipped > loss_unclipped).float(), mask)
    return loss, clipfrac


# =====================================================================================================
# 2. KL controllers
# =====================================================================================================
class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. (2019): move beta so the measured KL approaches ``target``.

    ``e = clip(KL / target - 1, -0.2, 0.2)``, ``beta <- beta * (1 + e * n_steps / horizon)`` with
    ``n_steps`` the episodes (responses) of the update. KL above target -> beta grows, below -> it shrinks.
    """

    def __init__(self, kl_coef: float, target: float, horizon: int) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target ({target}) and horizon ({horizon}) must be positive")
        super().__init__(kl_coef)
        self.target, self.horizon = float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon


def make_kl_controller(cfg: PPOConfig) -> FixedKLController:
    """Adaptive controller if ``cfg.adaptive_kl`` else a fixed beta = ``cfg.kl_coef``."""
    if cfg.adaptive_kl:
        return AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
    return FixedKLController(cfg.kl_coef)


# =====================================================================================================
# 3. Policy + value head
# =====================================================================================================
class ValueHead(nn.Module):
    """``V(s_t) = w . h_t + b``: a scalar linear head on the policy's last hidden state ``h_t``.

    Initialised to zero: with a shared trunk, a random head would send large value-loss gradients into the
    policy on the first minibatches and move it before the critic knows anything; with zero weights the head
    learns first and its gradient into the trunk grows as it does. Two more details make the critic useful
    from the first updates (TRL gets this by starting its separate value model *from the reward model*):

    * ``cfg.value_bias_init``: the bias starts at the first rollout's mean score, not 0. With V = 0 and
      positive scores, the (lambda-discounted) advantages of the last tokens are the largest, and whitening
      turns that into a push towards ending early -- responses collapse to a few tokens.
    * ``cfg.value_lr_multiplier``: the head (a linear probe) learns ``10x`` faster than the policy, so V
      follows the scores as they rise.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[B, T, H]`` -> ``[B, T]``."""
        return self.linear(hidden).squeeze(-1)


class PolicyWithValueHead(nn.Module):
    """The policy (a causal LM, possibly a PeftModel) and its value head, prepared as one module."""

    def __init__(self, policy: PreTrainedModel, value_head: ValueHead, detach_trunk: bool = False) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        self.detach_trunk = detach_trunk

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                response_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits ``[B, T, V]`` predicting the response tokens, values ``[B, T]``)."""
        logits, hidden = lm_forward(self.policy, input_ids, attention_mask, response_len, hidden=True)
        if self.detach_trunk:  # the value loss trains the head only, never the policy's weights
            hidden = hidden.detach()
        return logits, self.value_head(hidden).float()


# =====================================================================================================
# 4. A rollout: everything one PPO update learns from
# =====================================================================================================
@dataclass
class Rollout:
    """One batch of experience. ``B`` responses, ``T`` response tokens (padding after EOS masked out)."""

    prompts: list[str]
    responses: list[str]
    input_ids: torch.Tensor  # [B, Lq + T]  left-padded query + right-padded response
    attention_mask: torch.Tensor  # [B, Lq + T]
    response_ids: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T]  1 on response tokens up to and including EOS
    eos_found: torch.Tensor  # [B] bool
    logprobs: torch.Tensor  # [B, T]  log pi_old, from one no-grad policy forward
    ref_logprobs: torch.Tensor  # [B, T]  log pi_ref
    values: torch.Tensor  # [B, T]  V_old(s_t)
    raw_scores: torch.Tensor  # [B]  reward source output
    scores: torch.Tensor  # [B]  after the missing-EOS penalty (and clipping)
    kl: torch.Tensor  # [B, T]  k1 per token
    kl_k3: torch.Tensor  # [B, T]
    non_score_rewards: torch.Tensor  # [B, T]  -beta * k1
    rewards: torch.Tensor  # [B, T]  non-score rewards + score at the last token
    advantages: torch.Tensor  # [B, T]  whitened
    returns: torch.Tensor  # [B, T]
    extra: dict[str, list[float]] = field(default_factory=dict)  # caller's metrics per response

    @property
    def response_len(self) -> int:
        return self.response_ids.shape[1]


# =====================================================================================================
# 5. Callbacks, results, set-up
# =====================================================================================================
class Callback:
    """Hooks of a PPO run; override what you need. A plain function ``f(record)`` also works as a callback.
    (Checkpoints, live plot and printed samples are callbacks of :mod:`rlhf_helpers.ppo_runs`.)"""

    def on_train_begin(self, trainer: PPOTrainerLite) -> None:
        """Before the first update of :meth:`PPOTrainerLite.train` (e.g. restore ``trainer.step`` to resume)."""

    def on_samples(self, trainer: PPOTrainerLite, samples: list[dict[str, Any]]) -> None:
        """Every ``cfg.sample_every`` updates (and after update 1), with a few prompts/responses/scores."""

    def on_update(self, trainer: PPOTrainerLite, record: dict[str, Any]) -> None:
        """After each update, with its log record. The new policy is not checked yet: save nothing here."""

    def on_policy_validated(self, trainer: PPOTrainerLite) -> None:
        """The policy of update ``trainer.step`` has passed the checks of a rollout sampled from it (finite
        log-probs and values, mean KL <= ``cfg.max_kl``): the place to save it. Everything a checkpoint holds
        -- weights, optimizer, KL controller, shuffle generator, step, history, samples -- is still exactly as
        that update left it (the rollout changed none of it; the global RNG: see :class:`PPOTrainerLite`).
        Called during the next update, right after its rollout's checks and before it changes anything, and
        for the last update by :meth:`PPOTrainerLite.train`'s extra rollout, before ``on_train_end``."""

    def on_train_end(self, trainer: PPOTrainerLite) -> None:
        """After the last update (and the check of its policy); not after a divergence stop."""


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_update(self, trainer: PPOTrainerLite, record: dict[str, Any]) -> None:
        self.fn(record)


class PPODivergenceError(RuntimeError):
    """Training stopped on NaN/inf or runaway KL. ``.result`` holds the history up to the last good update;
    ``.checkpoint_step`` the step of the last checkpoint on disk (None if none)."""

    def __init__(self, message: str, result: PPOResult | None = None, checkpoint_step: int | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.checkpoint_step = checkpoint_step


@dataclass
class PPOResult:
    """What a run returns: the per-update log, the sampled generations, the trained policy and value head."""

    history: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    policy: Any
    value_head: ValueHead | None
    out_dir: Path | None = None  # the checkpoint directory, if a callback saved one
    stopped: str | None = None  # why the run stopped early (divergence), else None

    def frame(self) -> pd.DataFrame:
        """The history as a DataFrame (one row per update)."""
        import pandas as pd

        return pd.DataFrame(self.history)

    def final(self, key: str, last: int = 5) -> float:
        """Mean of ``key`` over the last ``last`` updates (NaN if never logged)."""
        vals = [r[key] for r in self.history[-last:] if key in r]
        return float(np.mean(vals)) if vals else float("nan")


def _trim_padding(ro: Rollout, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The rows ``idx`` of the rollout without their all-padding columns (left of the shortest-padded query,
    right of the longest response): ``(input_ids, attention_mask, t)``, ``t`` = response tokens kept.
    Masked columns change nothing in a causal LM's outputs, so this is pure saving."""
    q_len = ro.input_ids.shape[1] - ro.response_len
    attention_mask = ro.attention_mask[idx]
    first = int(attention_mask[:, :q_len].any(0).long().argmax())
    t = max(1, int(ro.mask[idx].sum(1).max()))
    return ro.input_ids[idx, first : q_len + t], attention_mask[:, first : q_len + t], t


# =====================================================================================================
# 6. The trainer
# =====================================================================================================
class PPOTrainerLite:
    """PPO on a causal LM with a value head, a frozen reference and any reward source.

    ``policy`` is trained in place (wrapped in LoRA adapters first when ``cfg.use_lora``). ``ref_policy``: the
    frozen reference; ``None`` -> a frozen copy of ``policy`` made here, or -- for a LoRA policy -- the same
    model with its adapters disabled (no copy). ``reward_source.score(prompts, responses) -> Tensor[B]``.
    ``callbacks``: :class:`Callback` objects or functions ``f(record)`` (default: none).
    ``extra_metrics``: ``{name: f(prompts, responses) -> list[float]}`` logged as ``objective/<name>``
    (e.g. the gold judge), not used for training. Use :meth:`train`, or :meth:`train_step` /
    :meth:`make_rollout` to go step by step.

    Validated policies: update ``k`` leaves policy ``pi_k``; the rollout of update ``k + 1`` samples from it and is
    checked first. When it passes, ``validated_step = k`` and the callbacks' ``on_policy_validated`` run, *before*
    update ``k + 1`` touches the weights, optimizer, KL controller, shuffle generator, history or step; the
    rollout itself changes none of them (generation runs in a forked, seeded RNG; the value head's bias is set
    only by the very first rollout, before any update). The global RNG is the one thing a reward source or an
    extra metric could move in between, so a checkpoint takes its RNG state as ``on_update`` saw it
    (:class:`rlhf_helpers.ppo_runs.Checkpoint`). The last policy is checked by :meth:`validate_policy` at the end
    of :meth:`train` -- one extra rollout, run only when a callback implements ``on_policy_validated``.
    """

    def __init__(self, policy: PreTrainedModel, ref_policy: PreTrainedModel | None,
                 tokenizer: PreTrainedTokenizerBase, reward_source: Any, prompts: Sequence[str], cfg: PPOConfig,
                 callbacks: Iterable[Callback | Callable[[dict[str, Any]], None]] | None = None,
                 extra_metrics: Mapping[str, ExtraMetric] | None = None, progress: bool = True) -> None:
        prompts = list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        if not callable(getattr(reward_source, "score", None)):
            raise TypeError(f"reward_source must have .score(prompts, responses); got {type(reward_source).__name__}")
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer needs eos and pad tokens (rlhf_helpers.core.chat.apply_template).")
        self.cfg, self.tokenizer, self.reward_source, self.prompts = cfg, tokenizer, reward_source, prompts
        self.extra_metrics = dict(extra_metrics or {})
        self.callbacks = [cb if isinstance(cb, Callback) else _FunctionCallback(cb) for cb in callbacks or []]
        self.progress = progress
        self.accelerator = make_accelerator(cfg.mixed_precision, cfg.gradient_accumulation_steps,
                                            policy.config.model_type)
        device = self.accelerator.device
        from accelerate.utils import DistributedType

        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise ValueError("PPO runs under DDP, not DeepSpeed: its optimizer is built without a dataloader (which "
                             "a DeepSpeed config's 'auto' batch sizes need), its checkpoints hold one process's "
                             "optimizer state, and generating from ZeRO-3's sharded weights would need them gathered "
                             "first. Launch it with rlhf_helpers/accelerate_configs/multi_gpu.yaml.")

        if cfg.use_lora and not is_peft(policy):
            from peft import get_peft_model

            task = "SEQ_2_SEQ_LM" if is_encoder_decoder(policy) else "CAUSAL_LM"
            policy = get_peft_model(policy, lora_config(cfg.lora_r, cfg.lora_alpha, 0.0, cfg.lora_target_modules,
                                                        model=policy, task_type=task))
        self.use_adapter_as_ref = ref_policy is None and is_peft(policy)
        if ref_policy is None and not self.use_adapter_as_ref:
            ref_policy = frozen_copy(policy)
        if ref_policy is policy:
            raise ValueError("ref_policy must not be the policy object itself (pass a copy, or None)")
        disable_dropout(policy)
        if cfg.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.ref_policy = None
        if ref_policy is not None:
            disable_dropout(ref_policy)
            ref_policy.eval().requires_grad_(False)
            self.ref_policy = ref_policy.to(device)

        with torch.random.fork_rng(devices=[]):  # the value head's init must not move the global RNG
            torch.manual_seed(cfg.seed)
            value_head = ValueHead(policy.config.hidden_size)
        model = PolicyWithValueHead(policy, value_head, detach_trunk=cfg.value_detach_trunk)
        groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
                  {"params": list(value_head.parameters()), "lr": cfg.learning_rate * cfg.value_lr_multiplier}]
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, eps=cfg.adam_epsilon, weight_decay=0.0)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.kl_ctl = make_kl_controller(cfg)
        # minibatch shuffles: a generator of our own (saved in checkpoints; the global RNG is not ours)
        self.shuffle_gen = torch.Generator().manual_seed(self.shuffle_seed())
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.out_dir: Path | None = None  # set by whoever saves checkpoints (ppo_runs.Checkpoint) ...
        self.last_checkpoint_step: int | None = None  # ... with the step saved last: the divergence message names it
        self.validated_step: int | None = None  # the last update whose policy passed a rollout's checks
        self._warned_scale = False  # the score-scale warning: once per run
        self._perm_cache: tuple[int, list[int]] | None = None
        self._prompt_start = (0, 0)  # (update, prompts all processes had taken by then): moved by resume_prompts

    @property
    def unwrapped(self) -> PolicyWithValueHead:
        return self.accelerator.unwrap_model(self.model)

    @property
    def policy(self) -> PreTrainedModel:
        """The trained policy (unwrapped from accelerate/DDP)."""
        return self.unwrapped.policy

    @property
    def value_head(self) -> ValueHead:
        return self.unwrapped.value_head

    # ------------------------------------------------------------------ data
    def shuffle_seed(self, step: int = 0) -> int:
        """Seed of this process's minibatch shuffles: from the start (``step`` 0), or afresh after update ``step``
        (a checkpoint another number of processes wrote)."""
        return self.cfg.seed + 7919 * self.accelerator.process_index + 104_729 * step

    def prompts_seen(self, step: int) -> int:
        """Prompts all processes together have taken after update ``step`` (TRL's ``episode``)."""
        update, seen = self._prompt_start
        return seen + (step - update) * self.cfg.batch_size * self.accelerator.num_processes

    def resume_prompts(self, step: int, seen: int) -> None:
        """Go on from a checkpoint: after update ``step``, ``seen`` prompts had been taken (with whatever batch size
        and process count); the next update takes the ones after them."""
        self._prompt_start = (step, seen)

    def batch_prompts(self, step: int) -> list[str]:
        """The prompts of update ``step`` (1-based): consecutive slices of seeded per-epoch permutations;
        each process takes its own share. Deterministic in (seed, step), so a resumed run continues exactly."""
        n, b = len(self.prompts), self.cfg.batch_size
        start = self.prompts_seen(step - 1) + self.accelerator.process_index * b
        out = []
        for pos in range(start, start + b):
            epoch, i = divmod(pos, n)
            if self._perm_cache is None or self._perm_cache[0] != epoch:
                g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
                self._perm_cache = (epoch, torch.randperm(n, generator=g).tolist())
            out.append(self.prompts[self._perm_cache[1][i]])
        return out

    # ------------------------------------------------------------------ 1-4: rollout, scores, rewards, GAE
    @torch.no_grad()
    def make_rollout(self, prompts: list[str], step: int | None = None, extra_metrics: bool = True) -> Rollout:
        """Generate, score and compute rewards/advantages for ``prompts``. Changes no weights, except that
        the first rollout (step 1) sets the value head's bias when ``cfg.value_bias_init``.
        ``extra_metrics=False`` skips the caller's metrics (``rollout.extra`` stays empty)."""
        cfg, acc = self.cfg, self.accelerator
        step = self.step + 1 if step is None else step
        gen_cfg = GenerationConfig(
            max_new_tokens=cfg.response_length, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
            batch_size=len(prompts), seed=cfg.seed * 100_003 + step * 101 + acc.process_index,
            chat_format=cfg.chat_format)
        policy = self.policy
        with acc.autocast():  # mixed precision on a GPU (a no-op on CPU), like the prepared model's forward
            batch = generate_ids(policy, self.tokenizer, prompts, gen_cfg, progress=False)
        device = acc.device
        # drop response columns past the longest response (all padding): less work in every forward
        T = max(1, int(batch.response_mask.sum(1).max()))
        response_ids = batch.response_ids[:, :T].to(device)
        mask = batch.response_mask[:, :T].to(device).float()
        input_ids = torch.cat([batch.query_ids.to(device), response_ids], 1)
        attention_mask = torch.cat([batch.query_mask.to(device), mask.long()], 1)

        # one no-grad forward of the policy: old log-probs and values; one of the reference: ref log-probs
        self.model.eval()
        logits, values = self.model(input_ids, attention_mask, T)
        logprobs = logprobs_from_logits(logits / cfg.temperature, response_ids)
        del logits
        with acc.autocast():
            if self.use_adapter_as_ref:  # LoRA: the reference is the same model with its adapters switched off
                with policy.disable_adapter():
                    ref_logits, _ = lm_forward(policy, input_ids, attention_mask, T)
            else:
                ref_logits, _ = lm_forward(self.ref_policy, input_ids, attention_mask, T)
        ref_logprobs = logprobs_from_logits(ref_logits / cfg.temperature, response_ids)
        del ref_logits

        # scores from the reward source, then the missing-EOS penalty and optional clipping
        raw_scores = torch.as_tensor(self.reward_source.score(batch.prompts, batch.responses), dtype=torch.float32)
        if raw_scores.shape != (len(prompts),):
            raise ValueError(f"reward_source.score returned shape {tuple(raw_scores.shape)}, expected ({len(prompts)},)")
        raw_scores = raw_scores.to(device)
        eos_found = batch.eos_found.to(device)
        scores = raw_scores.clone()
        if cfg.missing_eos_penalty is not None:
            scores = torch.where(eos_found, scores, scores - cfg.missing_eos_penalty)
        if cfg.score_clip is not None:
            scores = scores.clamp(-cfg.score_clip, cfg.score_clip)

        if step == 1 and self.cfg.value_bias_init and not self.value_head.linear.weight.any():
            # a zero-initialised head predicts V = 0; start it at the first batch's mean score instead
            self.value_head.linear.bias.fill_(self._reduce(scores.mean()))
            values = values + self.value_head.linear.bias
        # rewards: r_t = -beta * k1_t, plus the score on the last response token (EOS if any)
        values = values * mask
        kl, kl_k3 = kl_estimators(logprobs, ref_logprobs, mask)
        non_score_rewards = -self.kl_ctl.value * kl
        rewards = non_score_rewards.clone()
        last = mask.sum(1).long() - 1
        rewards[torch.arange(len(prompts), device=device), last] += scores
        if cfg.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False, reduce=self.sum_over_processes)
        advantages, returns = compute_gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask, reduce=self.sum_over_processes)  # over every process's tokens

        extra = {name: [float(v) for v in fn(batch.prompts, batch.responses)]
                 for name, fn in self.extra_metrics.items()} if extra_metrics else {}
        return Rollout(
            prompts=batch.prompts, responses=batch.responses, input_ids=input_ids, attention_mask=attention_mask,
            response_ids=response_ids, mask=mask, eos_found=eos_found, logprobs=logprobs * mask,
            ref_logprobs=ref_logprobs * mask, values=values, raw_scores=raw_scores, scores=scores, kl=kl,
            kl_k3=kl_k3, non_score_rewards=non_score_rewards, rewards=rewards, advantages=advantages,
            returns=returns, extra=extra)

    # ------------------------------------------------------------------ 5: PPO epochs over minibatches
    def ppo_update(self, ro: Rollout) -> dict[str, float]:
        """``num_ppo_epochs`` passes over shuffled minibatches of the rollout; returns the averaged loss stats."""
        cfg, acc = self.cfg, self.accelerator
        B = len(ro.prompts)
        micro = cfg.mini_batch_size // cfg.gradient_accumulation_steps
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in (
            "approxkl", "clipfrac", "pg_loss", "vf_loss", "vf_clipfrac", "ratio", "entropy", "grad_norm")}
        self.model.train()
        for _epoch in range(cfg.num_ppo_epochs):
            order = torch.randperm(B, generator=self.shuffle_gen).to(acc.device)
            for mb_start in range(0, B, cfg.mini_batch_size):
                for mc_start in range(mb_start, mb_start + cfg.mini_batch_size, micro):
                    idx = order[mc_start : mc_start + micro]
                    input_ids, attention_mask, t = _trim_padding(ro, idx)
                    with acc.accumulate(self.model):
                        logits, vpred = self.model(input_ids, attention_mask, t)
                        logits = logits.float() / cfg.temperature
                        logp = logprobs_from_logits(logits, ro.response_ids[idx, :t])
                        m = ro.mask[idx, :t]
                        pg_loss, pg_stats = policy_loss(logp, ro.logprobs[idx, :t], ro.advantages[idx, :t], m,
                                                        cfg.cliprange)
                        vf_loss, vf_clipfrac = value_loss(vpred, ro.values[idx, :t], ro.returns[idx, :t], m,
                                                          cfg.cliprange_value)
                        loss = pg_loss + cfg.vf_coef * vf_loss
                        acc.backward(loss)
                        if acc.sync_gradients:
                            grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                            if grad_norm is not None:
                                stats["grad_norm"].append(grad_norm.detach().float())
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    with torch.no_grad():
                        stats["pg_loss"].append(pg_loss.detach())
                        stats["vf_loss"].append(vf_loss.detach())
                        stats["vf_clipfrac"].append(vf_clipfrac)
                        stats["entropy"].append(masked_mean(entropy_from_logits(logits.detach()), m))
                        for k in ("approxkl", "clipfrac", "ratio"):
                            stats[k].append(pg_stats[k])
        out = {}
        for k, v in stats.items():
            if v:
                t = torch.stack([x.float().reshape(()) for x in v])
                out[k], out[k + "_var"] = t.mean().item(), (t.var().item() if len(v) > 1 else 0.0)
        return out

    # ------------------------------------------------------------------ one update, with metrics
    def _divergence(self, step: int, reason: str, policy_failed: bool = False,
                    final: bool = False) -> PPODivergenceError:
        """The error that stops the run. ``policy_failed``: the check of a rollout sampled from the policy of
        update ``step - 1`` failed, so that policy was not saved either; ``final``: that rollout was the extra
        one checking the last update's policy; a failure of the reward source gets advice about it instead."""
        kept = self.last_checkpoint_step is not None
        where = (f"the last good checkpoint (update {self.last_checkpoint_step}) is kept in {self.out_dir}" if kept
                 else "no checkpoint was written")
        if final:
            head = (f"PPO stopped after its last update ({step - 1}): the check of the final policy found {reason}. "
                    "That policy was not saved")
        elif policy_failed and step > 1:
            head = (f"PPO stopped at update {step}: {reason}. The policy this rollout was sampled from (after update "
                    f"{step - 1}) failed the check and was not saved")
        else:
            head = f"PPO stopped at update {step}: {reason}. Nothing from this update was saved"
        if reason.startswith("the reward source"):
            advice = "Check the reward source: it must return a finite score for every response."
        else:
            advice = ("Try a lower learning_rate, a larger kl_coef (beta) or adaptive_kl=True"
                      + (", or a larger max_kl" if "KL" in reason else "")
                      + ("; re-running with the same out_dir resumes from that checkpoint with the new settings."
                         if kept else "."))
        return PPODivergenceError(f"{head}; {where}. {advice}", self.result(stopped=reason), self.last_checkpoint_step)

    def _check_policy(self, ro: Rollout, step: int, final: bool = False) -> float:
        """The checks of the policy a rollout was sampled from: finite log-probs and values, mean KL <= max_kl.
        Returns the mean KL (over processes); raises :class:`PPODivergenceError` otherwise."""
        finite = torch.isfinite(ro.logprobs).all() and torch.isfinite(ro.values).all()
        if self._reduce(float(finite)) < 1:  # every process stops together, when any one sees NaN/inf
            raise self._divergence(step, "the policy produced NaN/inf log-probs or values (diverged weights)",
                                   policy_failed=True, final=final)
        mean_kl = self._reduce(ro.kl.sum(1).mean())
        if not math.isfinite(mean_kl) or mean_kl > self.cfg.max_kl:
            raise self._divergence(step, f"runaway KL: mean KL(pi || pi_ref) = {mean_kl:.2f} nats > max_kl = "
                                   f"{self.cfg.max_kl}", policy_failed=True, final=final)
        return mean_kl

    def _policy_validated(self) -> None:
        self.validated_step = self.step
        for cb in self.callbacks:
            cb.on_policy_validated(self)

    def _warn_on_score_scale(self, ro: Rollout, step: int) -> None:
        """Warn (once per run) when the rollout's scores are far outside the scale PPO expects."""
        if self._warned_scale:
            return
        mean_abs = self._reduce(ro.scores.abs().mean())
        std = self._reduce(ro.scores.std(correction=0))
        if mean_abs > SCORE_SCALE_LIMIT or std > SCORE_SCALE_LIMIT:
            self._warned_scale = True
            if self.accelerator.is_main_process:
                warnings.warn(
                    f"PPO update {step}: the scores are far outside the scale PPO expects (mean |score| = "
                    f"{mean_abs:.3g}, std = {std:.3g}; more than {SCORE_SCALE_LIMIT:g}). The KL penalty (beta * KL, "
                    f"beta = {self.kl_ctl.value:g}) weighs nothing against such scores, so max_kl and beta hardly hold "
                    "the policy, and the value loss is huge. Normalise the reward (the course's reward model is "
                    "normalised to mean 0, std 1 on reference responses) or set score_clip (e.g. 5).",
                    RuntimeWarning, stacklevel=3)

    def train_step(self) -> dict[str, Any]:
        """One PPO update: rollout -> rewards -> GAE -> PPO epochs -> KL controller. Returns the log record.

        The rollout's policy checks come first (finite log-probs and values, mean KL <= ``cfg.max_kl``); when
        they pass, the previous update's policy is announced as validated (:meth:`Callback.on_policy_validated`).
        Then NaN/inf rewards, losses or weights raise too. Every :class:`PPODivergenceError` comes *before*
        anything of this update is logged or saved. Scores far outside PPO's scale are warned about once.
        """
        cfg, acc = self.cfg, self.accelerator
        step = self.step + 1
        t0 = time.perf_counter()
        ro = self.make_rollout(self.batch_prompts(step), step)
        t_rollout = time.perf_counter() - t0

        mean_kl = self._check_policy(ro, step)
        if self.step > 0:  # the policy of update ``self.step`` passed: its state is still exactly that update's
            self._policy_validated()
        bad = round(self._reduce((~torch.isfinite(ro.raw_scores)).sum()) * acc.num_processes)  # over processes
        if bad:
            raise self._divergence(step, f"the reward source returned NaN/inf for {bad} of "
                                         f"{len(ro.prompts) * acc.num_processes} responses")
        self._warn_on_score_scale(ro, step)

        beta = self.kl_ctl.value
        t1 = time.perf_counter()
        stats = self.ppo_update(ro)
        t_opt = time.perf_counter() - t1
        if not all(math.isfinite(self._reduce(stats[k])) for k in ("pg_loss", "vf_loss")):  # NaN on any process
            raise self._divergence(step, f"NaN/inf loss (policy {stats['pg_loss']}, value {stats['vf_loss']})")
        if not all(torch.isfinite(p).all() for p in self.model.parameters() if p.requires_grad):
            raise self._divergence(step, "NaN/inf in the weights after the optimizer step")
        self.kl_ctl.update(mean_kl, cfg.batch_size * acc.num_processes)

        non_score = ro.non_score_rewards.sum(1).mean()
        record: dict[str, Any] = {  # TRL's metric names
            "step": step, "episode": self.prompts_seen(step),
            "objective/kl": mean_kl, "objective/kl_k3": ro.kl_k3.sum(1).mean(),
            "objective/entropy": (-ro.logprobs * ro.mask).sum(1).mean(), "objective/non_score_reward": non_score,
            "objective/rlhf_reward": ro.scores.mean() + non_score, "objective/scores": ro.scores.mean(),
            "objective/raw_scores": ro.raw_scores.mean(), "objective/beta": beta,
            "policy/approxkl_avg": stats["approxkl"], "policy/clipfrac_avg": stats["clipfrac"],
            "policy/entropy_avg": stats["entropy"], "policy/grad_norm_avg": stats.get("grad_norm", float("nan")),
            "loss/policy_avg": stats["pg_loss"], "loss/value_avg": stats["vf_loss"],
            "val/clipfrac_avg": stats["vf_clipfrac"], "val/ratio": stats["ratio"], "val/ratio_var": stats["ratio_var"],
            "val/num_eos_tokens": ro.eos_found.float().sum(), "val/response_length": ro.mask.sum(1).mean(),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        for name, vals in ro.extra.items():
            record[f"objective/{name}"] = float(np.mean(vals))
        for k, v in record.items():  # average over processes; plain floats in the log
            if k not in ("step", "episode", "objective/kl", "objective/beta", "lr"):
                record[k] = self._reduce(v)
        record["val/num_eos_tokens"] *= acc.num_processes  # a count over all processes, not a mean
        record["time/rollout_s"] = t_rollout
        record["time/optimize_s"] = t_opt
        record["time/update_s"] = time.perf_counter() - t0

        self.step = step
        self.history.append(record)
        if step == 1 or step % cfg.sample_every == 0:
            new = [{"step": step, "prompt": p, "response": r, "score": float(s),
                    **{name: vals[i] for name, vals in ro.extra.items()}}
                   for i, (p, r, s) in enumerate(zip(ro.prompts, ro.responses, ro.scores.tolist(), strict=True))
                   if i < cfg.num_samples]
            self.samples.extend(new)
            for cb in self.callbacks:
                cb.on_samples(self, new)
        for cb in self.callbacks:
            cb.on_update(self, record)
        return record

    def sum_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the processes (the whitening's statistics); ``t`` itself on one process."""
        return self.accelerator.reduce(t, reduction="sum") if self.accelerator.num_processes > 1 else t

    def _reduce(self, value: float | torch.Tensor) -> float:
        """Mean over processes (identity on one process) as a Python float."""
        t = torch.as_tensor(value, dtype=torch.float32, device=self.accelerator.device).detach()
        if self.accelerator.num_processes > 1:
            t = self.accelerator.reduce(t, reduction="mean")
        return float(t)

    # ------------------------------------------------------------------ the loop
    @contextmanager
    def _rng_untouched(self) -> Iterator[None]:
        """The global RNGs (torch CPU and this device's GPU, Python's, NumPy's) as they were, afterwards."""
        device = self.accelerator.device
        devices = [device.index or 0] if device.type == "cuda" else []
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=devices):
            try:
                yield
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)

    def validate_policy(self) -> float:
        """Check the current policy (that of update ``self.step``) on one extra rollout -- the one update
        ``self.step + 1`` would sample, seeded as it would be -- and announce it (``on_policy_validated``).

        Returns the mean KL; raises :class:`PPODivergenceError` on NaN/inf log-probs or values or KL > max_kl.
        Changes no training state: no weights, optimizer, KL controller, shuffle generator, step, history or
        samples; the global RNGs are restored and the model's train/eval mode too; extra metrics are not
        computed (the reward source is called once more)."""
        if self.step < 1:
            raise ValueError("validate_policy checks a trained policy: run an update first")
        step = self.step + 1
        was_training = self.model.training
        try:
            with self._rng_untouched():
                ro = self.make_rollout(self.batch_prompts(step), step, extra_metrics=False)
        finally:
            self.model.train(was_training)
        mean_kl = self._check_policy(ro, step, final=True)
        self._policy_validated()
        return mean_kl

    def _wants_validation(self) -> bool:
        return any(type(cb).on_policy_validated is not Callback.on_policy_validated for cb in self.callbacks)

    def train(self) -> PPOResult:
        """Run from ``self.step`` until ``cfg.total_updates`` (a callback's ``on_train_begin`` may resume).

        When a callback implements ``on_policy_validated`` (a checkpoint does), the final policy is checked by
        one extra rollout (:meth:`validate_policy`) before ``on_train_end``: a final policy beyond ``max_kl``
        raises :class:`PPODivergenceError` and is not saved. The extra rollout costs time only."""
        from tqdm.auto import tqdm

        for cb in self.callbacks:
            cb.on_train_begin(self)
        bar = tqdm(total=self.cfg.total_updates, initial=self.step, desc="PPO",
                   disable=not self.progress or not self.accelerator.is_main_process)
        try:
            while self.step < self.cfg.total_updates:
                record = self.train_step()
                bar.update(1)
                bar.set_postfix(score=f"{record['objective/scores']:.3f}", kl=f"{record['objective/kl']:.2f}",
                                s=f"{record['time/update_s']:.2f}")
            if self.step > 0 and self.validated_step != self.step and self._wants_validation():
                self.validate_policy()
        finally:
            bar.close()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.result()

    def result(self, stopped: str | None = None) -> PPOResult:
        return PPOResult(list(self.history), list(self.samples), self.policy, self.value_head, self.out_dir, stopped)


def train_ppo(policy: PreTrainedModel, ref_policy: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase,
              reward_source: Any, prompts: Sequence[str], cfg: PPOConfig,
              callbacks: Iterable[Callback | Callable[[dict[str, Any]], None]] | None = None,
              extra_metrics: Mapping[str, ExtraMetric] | None = None, progress: bool = True) -> PPOResult:
    """Train ``policy`` with PPO against ``reward_source`` on ``prompts``; see :class:`PPOTrainerLite`.
    Nothing is kept on disk unless a callback does it (:func:`rlhf_helpers.ppo_runs.train_ppo` adds
    checkpoints and the notebook's live plot). Raises :class:`PPODivergenceError` (with ``.result``) on NaN
    or runaway KL."""
    trainer = PPOTrainerLite(policy, ref_policy, tokenizer, reward_source, prompts, cfg, callbacks=callbacks,
                             extra_metrics=extra_metrics, progress=progress)
    return trainer.train()

"""PPO for causal language models, readable top to bottom, with the math beside the code.

Layout follows CleanRL's ``ppo.py`` (one file, one loop); the LM-specific details follow
*lm-human-preferences* and "The N Implementation Details of RLHF with PPO" (Huang et al., 2024), and
the metric names follow TRL's (removed) PPOTrainer so TRL's docs explain our plots too.

One PPO **update** (``PPOTrainerLite.train_step``):

1. **Rollout** -- ``batch_size`` prompts; sample a response to each with the course's generation helper
   (:func:`rlhf_helpers.generation.generate_ids`: batched, KV cache, temperature ``cfg.temperature``).
2. **Score** -- one no-grad forward of the policy gives the old log-probs ``log pi_old(y_t|x,y_<t)`` *and*
   the values ``V(s_t)`` (value head on the same forward); one no-grad forward of the frozen reference gives
   ``log pi_ref``; the reward source gives one scalar ``score`` per response.
3. **Rewards** -- a per-token KL penalty plus the score on the last response token::

       r_t = -beta * (log pi_old(y_t) - log pi_ref(y_t))   +   [t == last] * score

   A response without EOS (cut at ``max_new_tokens``) gets ``score - missing_eos_penalty`` (TRL semantics).
4. **GAE** -- ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``, ``A_t = delta_t + gamma lambda A_{t+1}``,
   returns ``R_t = A_t + V(s_t)``; advantages are whitened over the batch.
5. **PPO epochs** -- ``ppo_epochs`` passes over shuffled minibatches (optionally in gradient-accumulation
   micro-batches) minimising ``L = L_clip + vf_coef * L_V`` with gradient clipping (accelerate).
6. **KL controller** -- fixed beta, or the adaptive controller of Ziegler et al. (2019).

Choices (and why):

* **Value = a scalar linear head on the policy's last hidden state** (shared trunk). One forward gives both
  log-probs and values -- on CPU that halves the cost of a separate value model (TRL's choice, initialised
  from the reward model). The price: value-loss gradients flow into the policy trunk (scaled by
  ``vf_coef``; with ``use_lora`` into the adapters only), and the critic starts knowing nothing -- see
  :class:`ValueHead` for the zero init, the bias set from the first rollout and the faster head LR.
* **No dropout** in policy or reference (it is switched off here): with dropout the "old" log-probs of the
  rollout and the first minibatch's log-probs differ, so the ratio is not 1 at the start of an update.
* Everything runs through ``accelerate`` (``prepare``, ``accumulate``, ``backward``, ``clip_grad_norm_``,
  mixed precision on a GPU), so the same code runs on CPU, one GPU or several processes (each process
  draws its own prompts; gradients are averaged by DDP; metrics are averaged over processes).
* **Hand-written** because TRL >= 1.13 has no PPO trainer (its last one, ``trl.experimental.ppo`` in 1.12,
  needs a separate value *and* reward model of the ``AutoModelForSequenceClassification`` kind, while the
  course's rewards come from any :class:`~rlhf_helpers.reward.RewardSource`, programmatic ones included).

Public API (notebook 05): :func:`train_ppo`, :func:`beta_sweep`, :func:`load_course_stages`, the callbacks
:class:`LivePlot` / :class:`PrintSamples`, the plots :func:`plot_history` / :func:`plot_beta_sweep`, and the
math helpers :func:`compute_gae`, :func:`whiten`, :func:`kl_estimators`, :func:`policy_loss`,
:func:`value_loss`, :class:`AdaptiveKLController`, :class:`FixedKLController`. Checkpoints:
:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_ppo_policy`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .core.artifacts import atomic_dir, old_dir, read_records, write_jsonl
from .core.config import GenerationConfig, PPOConfig

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import pandas as pd
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .core.config import Profile

ExtraMetric = Callable[[list[str], list[str]], Sequence[float]]
STATE_FILE = "trainer_state.pt"  # optimizer, KL controller, RNG states, step
INFO_FILE = "ppo_info.json"  # written last: marks a complete checkpoint
VALUE_HEAD_FILE = "value_head.safetensors"
LOG_FILE = "log.jsonl"
SAMPLES_FILE = "samples.jsonl"


# =====================================================================================================
# 1. Masked statistics, KL estimators, GAE and the two PPO losses (pure functions, unit-tested)
# =====================================================================================================
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (over ``dim``, or over everything)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the masked positions (Bessel-corrected by default, as TRL)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            raise ValueError("masked_var needs at least 2 unmasked values (is the minibatch too small?)")
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """``(x - mean) / std`` over the masked positions; zeros outside the mask.

    ``shift_mean=False`` keeps the mean (only rescales), as used for reward whitening.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
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


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
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


def policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
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


def logprobs_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[ids]``: ``[B, T, V]`` and ``[B, T]`` -> ``[B, T]`` (float32, no full log-softmax copy)."""
    logits = logits.float()
    return logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's next-token distribution, ``[B, T, V]`` -> ``[B, T]``."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


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

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target ({target}) and horizon ({horizon}) must be positive")
        super().__init__(init_kl_coef)
        self.target, self.horizon = float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon


def make_kl_controller(cfg: PPOConfig) -> FixedKLController:
    """Adaptive controller if ``cfg.adaptive_kl`` else a fixed beta = ``cfg.init_kl_coef``."""
    if cfg.adaptive_kl:
        return AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
    return FixedKLController(cfg.init_kl_coef)


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


def _hidden_size(model: Any) -> int:
    config = model.config
    for name in ("hidden_size", "n_embd", "d_model"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    raise ValueError(f"Cannot find the hidden size in {type(config).__name__}")


def _supports_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def lm_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int, hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward of a causal LM on ``[B, Lq + T]`` (left-padded query, then response); returns the logits that
    *predict* the ``T`` response tokens, ``[B, T, V]``, and (if ``hidden``) the last hidden states at the same
    positions, ``[B, T, H]``. Position ids skip the left padding, as in generation."""
    position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    kwargs: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=False, output_hidden_states=hidden)
    if getattr(model, "_ppo_logits_to_keep", None) is None:
        model._ppo_logits_to_keep = _supports_logits_to_keep(model)
    if model._ppo_logits_to_keep:  # the LM head only on the positions we need (saves a big matmul)
        kwargs["logits_to_keep"] = response_len + 1
    out = model(**kwargs)
    logits = out.logits[:, -(response_len + 1) : -1]
    h = out.hidden_states[-1][:, -(response_len + 1) : -1] if hidden else None
    return logits, h


class PolicyWithValueHead(nn.Module):
    """The policy (a causal LM, possibly a PeftModel) and its value head, prepared as one module."""

    def __init__(self, policy: PreTrainedModel, value_head: ValueHead, detach_trunk: bool = False) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        self.detach_trunk = detach_trunk

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits ``[B, T, V]`` predicting the response tokens, values ``[B, T]``)."""
        logits, hidden = lm_forward(self.policy, input_ids, attention_mask, response_len, hidden=True)
        if self.detach_trunk:  # the value loss trains the head only, never the policy's weights
            hidden = hidden.detach()
        return logits, self.value_head(hidden).float()


def _disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A deep copy in eval mode with ``requires_grad=False`` (the reference policy)."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


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
# 5. Callbacks: live plot (Jupyter), printed samples
# =====================================================================================================
class Callback:
    """Hooks of a PPO run; override what you need. A plain function ``f(record)`` also works as a callback."""

    def on_update(self, trainer: PPOTrainerLite, record: dict[str, Any]) -> None:
        """After each update, with its log record."""

    def on_samples(self, trainer: PPOTrainerLite, samples: list[dict[str, Any]]) -> None:
        """Every ``cfg.sample_every`` updates (and after update 1), with a few prompts/responses/scores."""

    def on_train_end(self, trainer: PPOTrainerLite) -> None:
        """After the last update (not after a divergence stop)."""


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where IPython.display can redraw a figure in place)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


DEFAULT_PLOT_KEYS = ("objective/scores", "objective/kl", "objective/rlhf_reward", "objective/entropy",
                     "loss/value_avg", "policy/clipfrac_avg")


class LivePlot(Callback):
    """Redraw a figure of the training curves every ``every`` updates, in place (``display_id``).

    A no-op outside Jupyter. ``keys`` default to :data:`DEFAULT_PLOT_KEYS` plus any extra metric.
    """

    def __init__(self, keys: Sequence[str] | None = None, every: int = 2, ncols: int = 3) -> None:
        self.keys, self.every, self.ncols = keys, max(1, every), ncols
        self._handle = None

    def on_update(self, trainer: PPOTrainerLite, record: dict[str, Any]) -> None:
        last = record["step"] == trainer.cfg.total_updates
        if not in_notebook() or (record["step"] % self.every and not last):
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        keys = self.keys or (*DEFAULT_PLOT_KEYS, *(f"objective/{k}" for k in trainer.extra_metrics))
        fig = plot_history(trainer.history, keys, ncols=self.ncols)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


class PrintSamples(Callback):
    """Print a few sampled responses (with score) each time samples are drawn."""

    def __init__(self, n: int = 2, max_chars: int = 160) -> None:
        self.n, self.max_chars = n, max_chars

    def on_samples(self, trainer: PPOTrainerLite, samples: list[dict[str, Any]]) -> None:
        from tqdm.auto import tqdm

        for s in samples[: self.n]:
            extra = "".join(f"  {k}={s[k]:.3f}" for k in trainer.extra_metrics)
            tqdm.write(f"[update {s['step']}] score={s['score']:+.3f}{extra}\n  prompt  : "
                       f"{s['prompt'][: self.max_chars]!r}\n  response: {s['response'][: self.max_chars]!r}")


def default_callbacks() -> list[Callback]:
    return [LivePlot(), PrintSamples()]


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_update(self, trainer: PPOTrainerLite, record: dict[str, Any]) -> None:
        self.fn(record)


# =====================================================================================================
# 6. The trainer
# =====================================================================================================
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
    out_dir: Path | None = None
    stopped: str | None = None  # why the run stopped early (divergence), else None

    def frame(self) -> pd.DataFrame:
        """The history as a DataFrame (one row per update)."""
        import pandas as pd

        return pd.DataFrame(self.history)

    def final(self, key: str, last: int = 5) -> float:
        """Mean of ``key`` over the last ``last`` updates (NaN if never logged)."""
        vals = [r[key] for r in self.history[-last:] if key in r]
        return float(np.mean(vals)) if vals else float("nan")


def _resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _make_accelerator(cfg: PPOConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import GradientAccumulationPlugin

    mp: str | None = _resolve_mixed_precision(cfg.mixed_precision)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mp):
        # accelerate's state is per process and cannot change: keep what an earlier run set
        print(f"note: accelerate already runs with mixed_precision={state['_mixed_precision']!r}; keeping it.")
        mp = None
    plugin = GradientAccumulationPlugin(num_steps=cfg.gradient_accumulation_steps, sync_with_dataloader=False)
    return Accelerator(mixed_precision=mp, gradient_accumulation_plugin=plugin)


def validate_config(cfg: PPOConfig) -> None:
    """Raise a ValueError naming the field for inconsistent PPO settings."""
    checks = [
        (cfg.batch_size > 0, "batch_size must be positive"),
        (cfg.mini_batch_size > 0 and cfg.batch_size % cfg.mini_batch_size == 0,
         f"batch_size ({cfg.batch_size}) must be a multiple of mini_batch_size ({cfg.mini_batch_size})"),
        (cfg.gradient_accumulation_steps > 0 and cfg.mini_batch_size % cfg.gradient_accumulation_steps == 0,
         f"mini_batch_size ({cfg.mini_batch_size}) must be a multiple of gradient_accumulation_steps "
         f"({cfg.gradient_accumulation_steps})"),
        (cfg.mini_batch_size // max(1, cfg.gradient_accumulation_steps) >= 1, "micro-batch size must be >= 1"),
        (cfg.ppo_epochs > 0, "ppo_epochs must be positive"),
        (cfg.total_updates >= 0, "total_updates must be >= 0"),
        (cfg.max_new_tokens > 0, "max_new_tokens must be positive"),
        (cfg.temperature > 0, "temperature must be > 0"),
        (cfg.init_kl_coef >= 0, "init_kl_coef (beta) must be >= 0"),
        (0 <= cfg.gamma <= 1 and 0 <= cfg.lam <= 1, "gamma and lam must be in [0, 1]"),
        (cfg.cliprange > 0 and cfg.cliprange_value > 0, "cliprange and cliprange_value must be > 0"),
        (cfg.missing_eos_penalty is None or cfg.missing_eos_penalty >= 0, "missing_eos_penalty must be >= 0"),
        (cfg.save_every > 0 and cfg.sample_every > 0, "save_every and sample_every must be positive"),
        (cfg.mixed_precision in ("auto", "no", "fp16", "bf16"), "mixed_precision must be auto|no|fp16|bf16"),
        (cfg.brevity_updates >= 0 and cfg.sweep_updates >= 0, "brevity_updates and sweep_updates must be >= 0"),
        (len(cfg.sweep_betas) > 0 and all(b >= 0 for b in cfg.sweep_betas), "sweep_betas must be betas >= 0"),
        (cfg.sweep_prompts is None or cfg.sweep_prompts > 0, "sweep_prompts must be positive (or None = all)"),
        (cfg.short_run_learning_rate is None or cfg.short_run_learning_rate > 0,
         "short_run_learning_rate must be > 0 (or None)"),
        (cfg.brevity_kl_coef >= 0, "brevity_kl_coef must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"PPOConfig: {message}")


def _trim_padding(ro: Rollout, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The rows ``idx`` of the rollout without their all-padding columns (left of the shortest-padded query,
    right of the longest response): ``(input_ids, attention_mask, t)``, ``t`` = response tokens kept.
    Masked columns change nothing in a causal LM's outputs, so this is pure saving."""
    q_len = ro.input_ids.shape[1] - ro.response_len
    attention_mask = ro.attention_mask[idx]
    first = int(attention_mask[:, :q_len].any(0).long().argmax())
    t = max(1, int(ro.mask[idx].sum(1).max()))
    return ro.input_ids[idx, first : q_len + t], attention_mask[:, first : q_len + t], t


class PPOTrainerLite:
    """PPO on a causal LM with a value head, a frozen reference and any reward source.

    ``policy`` is trained in place (wrapped in LoRA adapters first when ``cfg.use_lora``). ``ref_policy``: the
    frozen reference; ``None`` -> a frozen copy of ``policy`` made here, or -- for a LoRA policy -- the same
    model with its adapters disabled (no copy). ``reward_source.score(prompts, responses) -> Tensor[B]``.
    ``extra_metrics``: ``{name: f(prompts, responses) -> list[float]}`` logged as ``objective/<name>``
    (e.g. the gold judge), not used for training. Use :meth:`train`, or :meth:`train_step` /
    :meth:`make_rollout` to go step by step.
    """

    def __init__(
        self,
        policy: PreTrainedModel,
        ref_policy: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase,
        reward_source: Any,
        prompts: Sequence[str],
        cfg: PPOConfig,
        out_dir: str | Path | None = None,
        callbacks: Iterable[Callback | Callable[[dict[str, Any]], None]] | None = None,
        extra_metrics: Mapping[str, ExtraMetric] | None = None,
        progress: bool = True,
    ) -> None:
        validate_config(cfg)
        prompts = list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        if not callable(getattr(reward_source, "score", None)):
            raise TypeError(f"reward_source must have .score(prompts, responses); got {type(reward_source).__name__}")
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer needs eos and pad tokens (rlhf_helpers.chat.apply_template).")
        self.cfg, self.tokenizer, self.reward_source, self.prompts = cfg, tokenizer, reward_source, prompts
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.extra_metrics = dict(extra_metrics or {})
        cbs = default_callbacks() if callbacks is None else list(callbacks)
        self.callbacks = [cb if isinstance(cb, Callback) else _FunctionCallback(cb) for cb in cbs]
        self.progress = progress
        self.accelerator = _make_accelerator(cfg)
        device = self.accelerator.device

        if cfg.use_lora and not _is_peft(policy):
            from peft import LoraConfig, get_peft_model

            with warnings.catch_warnings():  # GPT-2's Conv1D: peft switches fan_in_fan_out on itself, and says so
                warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
                policy = get_peft_model(policy, LoraConfig(
                    r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
                    target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM"))
        self.use_adapter_as_ref = ref_policy is None and _is_peft(policy)
        if ref_policy is None and not self.use_adapter_as_ref:
            ref_policy = frozen_copy(policy)
        if ref_policy is policy:
            raise ValueError("ref_policy must not be the policy object itself (pass a copy, or None)")
        _disable_dropout(policy)
        if cfg.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.ref_policy = None
        if ref_policy is not None:
            _disable_dropout(ref_policy)
            ref_policy.eval().requires_grad_(False)
            self.ref_policy = ref_policy.to(device)

        with torch.random.fork_rng(devices=[]):  # the value head's init must not move the global RNG
            torch.manual_seed(cfg.seed)
            value_head = ValueHead(_hidden_size(policy))
        model = PolicyWithValueHead(policy, value_head, detach_trunk=cfg.value_detach_trunk)
        groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
                  {"params": list(value_head.parameters()), "lr": cfg.learning_rate * cfg.value_lr_multiplier}]
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, eps=cfg.adam_eps, weight_decay=0.0)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.kl_ctl = make_kl_controller(cfg)
        # minibatch shuffles: a generator of our own (saved in checkpoints; the global RNG is not ours)
        self.shuffle_gen = torch.Generator().manual_seed(cfg.seed + 7919 * self.accelerator.process_index)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.last_checkpoint_step: int | None = None
        self._perm_cache: tuple[int, list[int]] | None = None

    # ------------------------------------------------------------------ handy accessors
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

    def _log(self, *args: Any) -> None:
        if self.accelerator.is_main_process:
            print(*args)

    # ------------------------------------------------------------------ data
    def batch_prompts(self, step: int) -> list[str]:
        """The prompts of update ``step`` (1-based): consecutive slices of seeded per-epoch permutations;
        each process takes its own share. Deterministic in (seed, step), so a resumed run continues exactly."""
        n, b = len(self.prompts), self.cfg.batch_size
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        start = (step - 1) * b * world + rank * b
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
    def make_rollout(self, prompts: list[str], step: int | None = None) -> Rollout:
        """Generate, score and compute rewards/advantages for ``prompts``. Changes no weights, except that
        the first rollout (step 1) sets the value head's bias when ``cfg.value_bias_init``."""
        from .core.generation import generate_ids

        cfg, acc = self.cfg, self.accelerator
        step = self.step + 1 if step is None else step
        gen_cfg = GenerationConfig(
            max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
            batch_size=len(prompts), seed=cfg.seed * 100_003 + step * 101 + acc.process_index)
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
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = compute_gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask)

        extra = {name: [float(v) for v in fn(batch.prompts, batch.responses)]
                 for name, fn in self.extra_metrics.items()}
        return Rollout(
            prompts=batch.prompts, responses=batch.responses, input_ids=input_ids, attention_mask=attention_mask,
            response_ids=response_ids, mask=mask, eos_found=eos_found, logprobs=logprobs * mask,
            ref_logprobs=ref_logprobs * mask, values=values, raw_scores=raw_scores, scores=scores, kl=kl,
            kl_k3=kl_k3, non_score_rewards=non_score_rewards, rewards=rewards, advantages=advantages,
            returns=returns, extra=extra)

    # ------------------------------------------------------------------ 5: PPO epochs over minibatches
    def ppo_update(self, ro: Rollout) -> dict[str, float]:
        """``ppo_epochs`` passes over shuffled minibatches of the rollout; returns the averaged loss stats."""
        cfg, acc = self.cfg, self.accelerator
        B = len(ro.prompts)
        micro = cfg.mini_batch_size // cfg.gradient_accumulation_steps
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in (
            "approxkl", "clipfrac", "pg_loss", "vf_loss", "vf_clipfrac", "ratio", "entropy", "grad_norm")}
        self.model.train()
        for _epoch in range(cfg.ppo_epochs):
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
    def _divergence(self, step: int, reason: str) -> PPODivergenceError:
        where = (f"the last good checkpoint (update {self.last_checkpoint_step}) is kept in {self.out_dir}"
                 if self.last_checkpoint_step is not None else "no checkpoint was written")
        msg = (f"PPO stopped at update {step}: {reason}. Nothing from this update was saved; {where}. "
               "Try a lower learning_rate, a larger init_kl_coef (beta) or adaptive_kl=True"
               + (", or a larger max_kl." if "KL" in reason else "."))
        return PPODivergenceError(msg, self.result(stopped=reason), self.last_checkpoint_step)

    def train_step(self) -> dict[str, Any]:
        """One PPO update: rollout -> rewards -> GAE -> PPO epochs -> KL controller. Returns the log record.

        Raises :class:`PPODivergenceError` on NaN/inf (reward, log-probs, losses, weights) or when the mean
        KL exceeds ``cfg.max_kl``, *before* anything of this update is logged or saved.
        """
        cfg, acc = self.cfg, self.accelerator
        step = self.step + 1
        t0 = time.perf_counter()
        ro = self.make_rollout(self.batch_prompts(step), step)
        t_rollout = time.perf_counter() - t0

        bad = (~torch.isfinite(ro.raw_scores)).sum().item()
        if bad:
            raise self._divergence(step, f"the reward source returned NaN/inf for {bad} of {len(ro.prompts)} responses")
        if not (torch.isfinite(ro.logprobs).all() and torch.isfinite(ro.values).all()):
            raise self._divergence(step, "the policy produced NaN/inf log-probs or values (diverged weights)")
        mean_kl = self._reduce(ro.kl.sum(1).mean())
        if not math.isfinite(mean_kl) or mean_kl > cfg.max_kl:
            raise self._divergence(step, f"runaway KL: mean KL(pi || pi_ref) = {mean_kl:.2f} nats > max_kl = {cfg.max_kl}")

        beta = self.kl_ctl.value
        t1 = time.perf_counter()
        stats = self.ppo_update(ro)
        t_opt = time.perf_counter() - t1
        if not all(math.isfinite(stats[k]) for k in ("pg_loss", "vf_loss")):
            raise self._divergence(step, f"NaN/inf loss (policy {stats['pg_loss']}, value {stats['vf_loss']})")
        if not all(torch.isfinite(p).all() for p in self.model.parameters() if p.requires_grad):
            raise self._divergence(step, "NaN/inf in the weights after the optimizer step")
        self.kl_ctl.update(mean_kl, cfg.batch_size * acc.num_processes)

        non_score = ro.non_score_rewards.sum(1).mean()
        record: dict[str, Any] = {
            "step": step,
            "episode": step * cfg.batch_size * acc.num_processes,
            "objective/kl": mean_kl,
            "objective/kl_k3": ro.kl_k3.sum(1).mean(),
            "objective/entropy": (-ro.logprobs * ro.mask).sum(1).mean(),
            "objective/non_score_reward": non_score,
            "objective/rlhf_reward": ro.scores.mean() + non_score,
            "objective/scores": ro.scores.mean(),
            "objective/raw_scores": ro.raw_scores.mean(),
            "objective/beta": beta,
            "policy/approxkl_avg": stats["approxkl"],
            "policy/clipfrac_avg": stats["clipfrac"],
            "policy/entropy_avg": stats["entropy"],
            "policy/grad_norm_avg": stats.get("grad_norm", float("nan")),
            "loss/policy_avg": stats["pg_loss"],
            "loss/value_avg": stats["vf_loss"],
            "val/clipfrac_avg": stats["vf_clipfrac"],
            "val/ratio": stats["ratio"],
            "val/ratio_var": stats["ratio_var"],
            "val/num_eos_tokens": ro.eos_found.float().sum(),
            "val/response_length": ro.mask.sum(1).mean(),
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

    def _reduce(self, value: float | torch.Tensor) -> float:
        """Mean over processes (identity on one process) as a Python float."""
        t = torch.as_tensor(value, dtype=torch.float32, device=self.accelerator.device).detach()
        if self.accelerator.num_processes > 1:
            t = self.accelerator.reduce(t, reduction="mean")
        return float(t)

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = True) -> PPOResult:
        """Run until ``cfg.total_updates``; resume from ``out_dir`` if it holds a checkpoint and ``resume``."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        if resume and self.out_dir is not None and has_checkpoint(self.out_dir):
            load_checkpoint(self, self.out_dir)
            self._log(f"Resumed from {self.out_dir} at update {self.step}/{cfg.total_updates}.")
        bar = tqdm(total=cfg.total_updates, initial=self.step, desc="PPO",
                   disable=not self.progress or not self.accelerator.is_main_process)
        try:
            while self.step < cfg.total_updates:
                record = self.train_step()
                bar.update(1)
                bar.set_postfix(score=f"{record['objective/scores']:.3f}", kl=f"{record['objective/kl']:.2f}",
                                s=f"{record['time/update_s']:.2f}")
                if self.out_dir is not None and (self.step % cfg.save_every == 0 or self.step == cfg.total_updates):
                    save_checkpoint(self, self.out_dir)
        finally:
            bar.close()
        if self.out_dir is not None and self.last_checkpoint_step != self.step:
            save_checkpoint(self, self.out_dir)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.result()

    def result(self, stopped: str | None = None) -> PPOResult:
        return PPOResult(list(self.history), list(self.samples), self.policy, self.value_head, self.out_dir, stopped)


# =====================================================================================================
# 7. Checkpoints: written to a temporary directory, then renamed into place
# =====================================================================================================
def has_checkpoint(path: str | Path) -> bool:
    """True when ``path`` (or the backup left by an interrupted save) holds a complete PPO checkpoint."""
    return _complete_checkpoint(Path(path)) is not None


def _complete_checkpoint(path: Path) -> Path | None:
    """``path``, else the previous copy a save interrupted between its two renames left (``artifacts.old_dir``),
    whichever holds ``INFO_FILE`` (written last); None when neither does."""
    return next((p for p in (path, old_dir(path)) if (p / INFO_FILE).exists()), None)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(trainer: PPOTrainerLite, out_dir: str | Path) -> Path:
    """Save policy (``save_pretrained``; adapters only for LoRA) + tokenizer, value head, optimizer, KL
    controller, step, RNG states, the log and samples into ``out_dir`` -- atomically: everything is written
    to a temporary directory next to it, then renamed into place (the previous checkpoint is moved aside
    first and deleted last, so an interrupted save leaves one complete checkpoint).

    Refuses to replace an existing non-empty directory that is not a PPO checkpoint.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    acc = trainer.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / INFO_FILE).exists():
            raise FileExistsError(f"{out_dir} exists and is not a PPO checkpoint; refusing to overwrite it.")
        from .core.loading import quiet_transformers as _quiet_transformers

        def write(tmp: Path) -> None:
            policy = trainer.policy
            with _quiet_transformers():  # no "Writing model shards" bar at every checkpoint
                policy.save_pretrained(tmp)
                trainer.tokenizer.save_pretrained(tmp)
                if _is_peft(policy) and trainer.step >= trainer.cfg.total_updates:
                    # the final LoRA policy also as a plain model, for later stages
                    merged = copy.deepcopy(policy).merge_and_unload()
                    merged.save_pretrained(tmp / "merged")
                    trainer.tokenizer.save_pretrained(tmp / "merged")
                    del merged
            vh = {k: v.detach().float().cpu().contiguous() for k, v in trainer.value_head.state_dict().items()}
            save_file(vh, str(tmp / VALUE_HEAD_FILE))
            torch.save({
                "step": trainer.step,
                "optimizer": trainer.optimizer.state_dict(),
                "kl_controller": trainer.kl_ctl.state_dict(),
                "rng": _rng_state(),
                "shuffle_gen": trainer.shuffle_gen.get_state(),
                "last_checkpoint_step": trainer.step,
            }, tmp / STATE_FILE)
            write_jsonl(trainer.history, tmp / LOG_FILE)
            write_jsonl(trainer.samples, tmp / SAMPLES_FILE)
            info = {"step": trainer.step, "use_lora": _is_peft(policy), "config": dataclasses.asdict(trainer.cfg),
                    "value_head": "linear head on the policy's last hidden state", "saved_at": time.time()}
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=1))  # last: marks a complete checkpoint

        atomic_dir(out_dir, write)
    acc.wait_for_everyone()
    trainer.last_checkpoint_step = trainer.step
    return out_dir


def _load_policy_weights(policy: Any, path: Path) -> None:
    """Load the weights saved by ``save_pretrained`` into ``policy`` in place (full model or LoRA adapters)."""
    from safetensors.torch import load_file

    if _is_peft(policy):
        from peft import set_peft_model_state_dict

        file = path / "adapter_model.safetensors"
        if not file.exists():
            raise FileNotFoundError(f"{file} missing: the checkpoint holds no LoRA adapters (was use_lora off?)")
        set_peft_model_state_dict(policy, load_file(str(file)))
        return
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No model*.safetensors in {path} (a LoRA checkpoint needs use_lora=True)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = policy.load_state_dict(state, strict=False)
    # tied weights (lm_head = embeddings) are saved once: a missing key is fine if it shares storage
    own = policy.state_dict(keep_vars=True)
    loaded_ptrs = {own[k].data_ptr() for k in state if k in own}
    really_missing = [k for k in missing if own[k].data_ptr() not in loaded_ptrs]
    if unexpected or really_missing:
        raise ValueError(f"Checkpoint {path} does not match the policy: missing {really_missing[:5]}, "
                         f"unexpected {list(unexpected)[:5]}")


def load_checkpoint(trainer: PPOTrainerLite, out_dir: str | Path) -> int:
    """Restore policy, value head, optimizer, KL controller, step, RNG states, log and samples from
    ``out_dir`` into ``trainer``; returns the restored step."""
    from safetensors.torch import load_file

    path = _complete_checkpoint(Path(out_dir))
    if path is None:
        raise FileNotFoundError(f"No PPO checkpoint in {out_dir} ({INFO_FILE} missing)")
    info = json.loads((path / INFO_FILE).read_text())
    if info.get("use_lora") != _is_peft(trainer.policy):
        raise ValueError(f"Checkpoint {path} has use_lora={info.get('use_lora')} but the policy "
                         f"{'is' if _is_peft(trainer.policy) else 'is not'} a LoRA model.")
    saved_cfg = info.get("config", {})
    now_cfg = dataclasses.asdict(trainer.cfg)
    changed = [k for k in now_cfg if k not in ("total_updates", "save_every", "sample_every")
               and k in saved_cfg and saved_cfg[k] != now_cfg[k]]
    if changed:
        trainer._log(f"note: resuming {path} saved with different settings ({', '.join(changed)}); the new ones "
                     "apply from here. Pass resume=False to start over.")
    _load_policy_weights(trainer.policy, path)
    vh = load_file(str(path / VALUE_HEAD_FILE))
    trainer.value_head.load_state_dict({k: v.to(trainer.value_head.linear.weight.dtype) for k, v in vh.items()})
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)  # our own file
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.kl_ctl.load_state_dict(state["kl_controller"])
    _set_rng_state(state["rng"])
    trainer.shuffle_gen.set_state(state["shuffle_gen"])
    trainer.step = int(state["step"])
    trainer.last_checkpoint_step = trainer.step
    trainer.history, trainer.samples = ([] if not (path / f).exists() else read_records(path / f)
                                        for f in (LOG_FILE, SAMPLES_FILE))
    return trainer.step


def load_ppo_policy(path: str | Path, device: str | None = None) -> PreTrainedModel:
    """The trained policy of a PPO checkpoint as a plain causal LM (LoRA: the ``merged/`` copy, or the
    adapters applied to their base)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if (path / "adapter_config.json").exists():
        if (path / "merged").exists():
            model = AutoModelForCausalLM.from_pretrained(str(path / "merged"))
        else:
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(str(path)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path))
    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()


# =====================================================================================================
# 8. Entry points for the notebook
# =====================================================================================================
def train_ppo(
    policy: PreTrainedModel,
    ref_policy: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase,
    reward_source: Any,
    prompts: Sequence[str],
    cfg: PPOConfig,
    out_dir: str | Path | None = None,
    callbacks: Iterable[Callback | Callable[[dict[str, Any]], None]] | None = None,
    resume: bool = True,
    extra_metrics: Mapping[str, ExtraMetric] | None = None,
    progress: bool = True,
) -> PPOResult:
    """Train ``policy`` with PPO against ``reward_source`` on ``prompts``; see :class:`PPOTrainerLite`.

    ``out_dir``: checkpoint directory (every ``cfg.save_every`` updates and at the end; resumed from when
    ``resume``); ``None`` = keep nothing on disk. ``callbacks``: default = live plot (Jupyter) + printed
    samples; ``[]`` for none. Raises :class:`PPODivergenceError` (with ``.result``) on NaN or runaway KL.
    """
    trainer = PPOTrainerLite(policy, ref_policy, tokenizer, reward_source, prompts, cfg, out_dir=out_dir,
                             callbacks=callbacks, extra_metrics=extra_metrics, progress=progress)
    return trainer.train(resume=resume)


def beta_sweep(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward_source: Any,
    prompts: Sequence[str],
    cfg: PPOConfig,
    betas: Sequence[float],
    ref_policy: PreTrainedModel | None = None,
    extra_metrics: Mapping[str, ExtraMetric] | None = None,
    callbacks: Callable[[float], Iterable[Callback | Callable]] | None = None,
    keep_policies: bool = False,
    progress: bool = True,
) -> dict[float, PPOResult]:
    """Several short runs from the same starting ``policy`` (it is copied, never changed), one per fixed
    beta, all against the same frozen reference (a frozen copy of ``policy`` unless given).

    ``extra_metrics`` are logged every update (e.g. ``{"gold": judge.gold_scores}`` -> ``objective/gold``).
    A run that diverges (NaN, KL > ``cfg.max_kl``) keeps its history with ``result.stopped`` set.
    ``callbacks(beta)`` may return callbacks per run (default: none). Returns ``{beta: PPOResult}``;
    ``result.policy`` is None unless ``keep_policies``.
    """
    ref = ref_policy if ref_policy is not None else frozen_copy(policy)
    results: dict[float, PPOResult] = {}
    for beta in betas:
        run_cfg = dataclasses.replace(cfg, init_kl_coef=float(beta), adaptive_kl=False)
        run_policy = copy.deepcopy(policy)
        cbs = list(callbacks(beta)) if callbacks else []
        if progress:
            print(f"--- beta = {beta:g} ---")
        try:
            result = train_ppo(run_policy, ref, tokenizer, reward_source, prompts, run_cfg, out_dir=None,
                               callbacks=cbs, resume=False, extra_metrics=extra_metrics, progress=progress)
        except PPODivergenceError as e:
            print(f"beta = {beta:g}: {e}")
            result = e.result
        if not keep_policies:
            result.policy = result.value_head = None
            del run_policy
        results[float(beta)] = result
    return results


def sweep_summary(results: Mapping[float, PPOResult], keys: Sequence[str] | None = None,
                  last: int = 5) -> pd.DataFrame:
    """One row per beta: the mean of each key over the last ``last`` updates, and whether the run stopped."""
    import pandas as pd

    keys = keys or ["objective/scores", "objective/kl", "objective/rlhf_reward"]
    rows = []
    for beta, res in results.items():
        extra = [k for k in (res.history[-1] if res.history else {}) if k.startswith("objective/")
                 and k not in keys and k not in DEFAULT_SUMMARY_SKIP]
        row: dict[str, Any] = {"beta": beta, "updates": len(res.history)}
        row.update({k: res.final(k, last) for k in [*keys, *extra]})
        row["stopped"] = res.stopped or ""
        rows.append(row)
    return pd.DataFrame(rows)


DEFAULT_SUMMARY_SKIP = ("objective/entropy", "objective/non_score_reward", "objective/kl_k3",
                        "objective/raw_scores", "objective/beta")


def plot_history(history: Sequence[Mapping[str, Any]], keys: Sequence[str] = DEFAULT_PLOT_KEYS,
                 ncols: int = 3, title: str = "") -> plt.Figure:
    """One small panel per metric over the update step."""
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in history)] or list(keys[:1])
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.5 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        pts = [(r["step"], r[key]) for r in history if key in r]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_beta_sweep(results: Mapping[float, PPOResult],
                    keys: Sequence[str] = ("objective/scores", "objective/gold", "objective/kl"),
                    title: str = "") -> plt.Figure:
    """One panel per metric, one line per beta (e.g. proxy reward up, gold down, KL up as beta -> 0)."""
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for res in results.values() for r in res.history)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.2), squeeze=False)
    cmap = plt.get_cmap("viridis")
    betas = sorted(results)
    for ax, key in zip(axes.flat, keys, strict=False):
        for i, beta in enumerate(betas):
            pts = [(r["step"], r[key]) for r in results[beta].history if key in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, color=cmap(i / max(1, len(betas) - 1)), label=f"beta={beta:g}")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# =====================================================================================================
# 9. The course's stages for PPO (thin loader, kept apart from the algorithm)
# =====================================================================================================
@dataclass
class PPOStages:
    """What PPO needs from the earlier notebooks."""

    policy: Any
    ref_policy: Any
    tokenizer: Any
    reward_source: Any
    prompts: list[str]
    cfg: PPOConfig
    out_dir: Path

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`train_ppo`."""
        return {"policy": self.policy, "ref_policy": self.ref_policy, "tokenizer": self.tokenizer,
                "reward_source": self.reward_source, "prompts": self.prompts, "cfg": self.cfg,
                "out_dir": self.out_dir}


def load_course_stages(profile: Profile, reward_source: Any | None = None) -> PPOStages:
    """Policy = the ``sft_full`` checkpoint (float32: accelerate handles mixed precision), reference = a
    frozen copy of it, reward = ``reward.load_reward_source(profile)`` unless given, prompts = the unique
    preference-train prompts of ``data_prep.load_prepared(profile)``; out_dir = ``checkpoints/ppo``."""
    from . import data_prep
    from .core import loading

    sft_dir = profile.paths.require("sft_full")
    tokenizer = loading.load_tokenizer(sft_dir)
    policy = loading.load_causal_lm(sft_dir, "float32")
    if reward_source is None:
        from . import reward

        reward_source = reward.load_reward_source(profile)
    prompts = list(dict.fromkeys(data_prep.load_prepared(profile).preferences["train"]["prompt"]))
    return PPOStages(policy, frozen_copy(policy), tokenizer, reward_source, prompts, profile.ppo,
                     profile.paths.checkpoint("ppo"))

"""Reward over-optimisation, measured (notebooks 05 and 06, and ``make seeds``).

Gao, Schulman and Hilton (2022, "Scaling Laws for Reward Model Overoptimization") plot the *gold* reward of a
policy against d = sqrt(KL(pi || pi_ref)) while it optimises a *proxy* reward model: the proxy keeps rising, the
gold reward rises, peaks and falls, and for RL it follows R(d) = d (alpha - beta log d). Here:

* :func:`rise_and_fall` -- one run's log in numbers: the gold score at the start, at its peak and at the end
  (moving averages over ``window`` updates), the proxy at the start and the end, the KL at the peak and the end.
* :func:`sweep_table` -- both for every beta of a sweep, one row each.
* :func:`gao_fit` / :func:`gao_curve` -- the least-squares fit of R(d) = d (alpha - beta log d) to the gold gain.
* :func:`plot_gao` -- gold and proxy against sqrt(KL), one colour per run, with the fitted curves.
* :func:`sample_agreement` -- the blind spot: how often the reward model orders two samples of the same prompt
  as the gold judge does, for each policy (the SFT model's samples, the PPO run's, an over-optimised run's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.config import GenerationConfig
from .core.generation import generate
from .core.plots import color, legend_outside, series, smooth

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import pandas as pd

GOLD, PROXY, KL = "objective/gold", "objective/scores", "objective/kl"


def rise_and_fall(history: Sequence[Mapping[str, Any]], window: int = 4) -> dict[str, float]:
    """Gold and proxy of one PPO log (records with ``objective/gold``, ``objective/scores``, ``objective/kl``).
    ``gold_start`` / ``proxy_start``: the first update's rollout, sampled before any change (the starting policy's
    own score); the rest smoothed by a centred moving average over ``window`` updates: ``gold_peak`` (highest),
    ``peak_step``, ``gold_end`` (last), ``rise`` = peak - start, ``fall`` = peak - end, ``proxy_peak`` (at the gold
    peak), ``proxy_end``, ``kl_peak`` (KL at the peak) and ``kl_end``."""
    steps, gold = series(history, "step", GOLD)
    if not gold:
        raise ValueError(f"the log has no {GOLD!r}: pass extra_metrics={{'gold': ...}} to the PPO run")
    proxy = series(history, "step", PROXY)[1]
    g, p, k = smooth(gold, window), smooth(proxy, window), smooth(series(history, "step", KL)[1], window)
    peak = int(np.argmax(g))
    return {"gold_start": gold[0], "gold_peak": g[peak], "gold_end": g[-1], "peak_step": int(steps[peak]),
            "rise": g[peak] - gold[0], "fall": g[peak] - g[-1], "proxy_start": proxy[0], "proxy_peak": p[peak],
            "proxy_end": p[-1], "kl_peak": k[peak], "kl_end": k[-1]}


def sweep_table(logs: Mapping[float, Sequence[Mapping[str, Any]]], window: int = 4) -> pd.DataFrame:
    """One row per beta of a sweep (``{beta: log records}``): :func:`rise_and_fall` and Gao et al.'s fit of the
    gold gain against sqrt(KL) (``gao_alpha``, ``gao_beta``; NaN when the run never left the reference)."""
    import pandas as pd

    rows = []
    for beta in sorted(logs):
        row: dict[str, Any] = {"beta": beta, **rise_and_fall(logs[beta], window)}
        kl, gold = series(logs[beta], KL, GOLD)
        try:
            row["gao_alpha"], row["gao_beta"] = gao_fit(kl, np.asarray(gold) - gold[0])
        except ValueError:
            row["gao_alpha"] = row["gao_beta"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def gao_fit(kl: Sequence[float], gain: Sequence[float]) -> tuple[float, float]:
    """``(alpha, beta)`` of R(d) = d (alpha - beta log d), d = sqrt(KL), fitted by least squares to ``gain``
    (gold score minus its start). Points with KL <= 0 carry no information about the shape and are left out."""
    d = np.sqrt(np.asarray(kl, dtype=float))
    y = np.asarray(gain, dtype=float)
    keep = d > 0
    if keep.sum() < 2:
        raise ValueError("gao_fit needs at least two updates with KL > 0")
    d, y = d[keep], y[keep]
    design = np.stack([d, -d * np.log(d)], axis=1)  # R is linear in (alpha, beta)
    (alpha, beta), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(alpha), float(beta)


def gao_curve(d: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """R(d) = d (alpha - beta log d) (0 at d = 0)."""
    d = np.asarray(d, dtype=float)
    return np.where(d > 0, d * (alpha - beta * np.log(np.maximum(d, 1e-12))), 0.0)


def plot_gao(runs: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> plt.Figure:
    """Left: the gold gain (score minus its first update) against sqrt(KL) for each run (``{label: log}``), points
    and Gao et al.'s fitted curve; right: the proxy against sqrt(KL). Over-optimisation is the gap: the proxy keeps
    climbing where the gold curve bends down."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 3.8))
    for i, (label, log) in enumerate(runs.items()):
        kl, gold = series(log, KL, GOLD)
        _, proxy = series(log, KL, PROXY)
        if not kl:
            continue
        d = np.sqrt(np.maximum(kl, 0.0))
        gain = np.asarray(gold) - gold[0]
        left.plot(d, gain, "o", ms=3, alpha=0.45, color=color(i))
        try:
            alpha, beta = gao_fit(kl, gain)
            grid = np.linspace(0, d.max(), 100)
            left.plot(grid, gao_curve(grid, alpha, beta), lw=2, color=color(i),
                      label=f"{label}: α={alpha:.2f}, β={beta:.2f}")
        except ValueError:
            left.plot([], [], color=color(i), label=label)
        right.plot(d, proxy, "o", ms=3, alpha=0.6, color=color(i), label=label)
    left.axhline(0, color="#888", lw=0.8)
    left.set(title="gold judge: gain over the SFT model", xlabel="sqrt(KL to the SFT model)  (sqrt nats)",
             ylabel="gold score - first update")
    right.set(title="reward model (proxy): what PPO maximises", xlabel="sqrt(KL to the SFT model)  (sqrt nats)",
              ylabel="normalised score")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    legend_outside(left, title="fit R(d) = d (α - β log d)", loc="upper left", bbox_to_anchor=(0, -0.2))
    legend_outside(right)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sample_agreement(reward_source: Any, judge: Callable[[list[str], list[str]], list[float]],
                     policies: Mapping[str, tuple[Any, Any]], prompts: Sequence[str], gen_cfg: GenerationConfig,
                     ) -> pd.DataFrame:
    """The reward model's blind spot in numbers. For each policy (``{label: (model, tokenizer)}``): two sampled
    answers per prompt (``gen_cfg`` with sampling on, seeded), scored by ``reward_source`` and by ``judge``
    (``judge(prompts, responses) -> scores``); a pair counts when the judge scores its answers differently, and
    the reward model *agrees* when it prefers the same one. One row per policy: ``pairs``, ``agreement %``,
    ``gold mean``, ``proxy mean``."""
    import pandas as pd

    cfg = dataclasses.replace(gen_cfg, do_sample=True)
    doubled = [p for p in prompts for _ in range(2)]
    rows = []
    for label, (model, tokenizer) in policies.items():
        answers = generate(model, tokenizer, doubled, cfg, progress=False)
        gold = np.asarray(judge(doubled, answers), dtype=float).reshape(-1, 2)
        proxy = reward_source.score(doubled, answers).float().numpy().reshape(-1, 2)
        counted = np.abs(gold[:, 0] - gold[:, 1]) > 1e-9
        agree = np.sign(gold[:, 0] - gold[:, 1]) == np.sign(proxy[:, 0] - proxy[:, 1])
        rows.append({"policy": label, "pairs": int(counted.sum()),
                     "agreement %": 100 * float(agree[counted].mean()) if counted.any() else float("nan"),
                     "gold mean": float(gold.mean()), "proxy mean": float(proxy.mean())})
    return pd.DataFrame(rows).set_index("policy")

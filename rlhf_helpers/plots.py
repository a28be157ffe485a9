"""Plotting shared by the notebooks: every figure is shown *and* saved as PNG under ``outputs/plots``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import Paths


def save_figure(fig: plt.Figure, name: str, paths: Paths | None = None) -> Path:
    """Save ``fig`` as ``outputs/plots/<name>.png`` (atomically) and return the path."""
    paths = paths or Paths()
    out = paths.plot(f"{name}.png")
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, out)
    return out


def plot_curves(history: Sequence[Mapping[str, float]], keys: Sequence[str], x: str = "step",
                title: str = "", ylabel: str = "") -> plt.Figure:
    """Line plot of ``keys`` over ``x`` from a list of log records (records missing a key are skipped)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        pts = [(r[x], r[key]) for r in history if key in r and x in r]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, label=key)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


PIPELINE = [
    ("00-01", "data", "prompts, demonstrations,\npreference pairs"),
    ("02-03", "SFT", "pretrained LM ->\ninstruction follower"),
    ("04", "reward model", "preference pairs ->\nscalar score r(x, y)"),
    ("05", "PPO", "max E[r] - beta KL(pi||pi_ref)"),
    ("06", "evaluation", "ROUGE, rewards,\nwin rates"),
]


def course_map() -> plt.Figure:
    """The course as a pipeline diagram: one box per stage, with its notebooks."""
    fig, ax = plt.subplots(figsize=(11, 2.4))
    ax.set_xlim(0, len(PIPELINE) * 2.2)
    ax.set_ylim(-0.35, 2)
    ax.axis("off")
    colors = ["#dbe9f6", "#d5f0d5", "#fde2c8", "#f9d2d2", "#e6dcf5"]
    for i, ((nbs, name, what), color) in enumerate(zip(PIPELINE, colors, strict=True)):
        x = i * 2.2 + 0.1
        ax.add_patch(plt.Rectangle((x, 0.25), 1.8, 1.5, color=color, ec="#555", lw=1))
        ax.text(x + 0.9, 1.45, name, ha="center", va="center", fontsize=11, weight="bold")
        ax.text(x + 0.9, 0.85, what, ha="center", va="center", fontsize=8)
        ax.text(x + 0.9, 0.38, f"notebook {nbs}", ha="center", va="center", fontsize=7, color="#444")
        if i:
            ax.annotate("", xy=(x, 1.0), xytext=(x - 0.4, 1.0), arrowprops={"arrowstyle": "->", "lw": 1.5})
    ax.text(6.5, -0.12, "DPO folds these two stages into one loss; RLOO / GRPO replace PPO's value model",
            fontsize=8, style="italic", ha="center")
    fig.tight_layout()
    return fig


def beta_tradeoff(sweep: Mapping[str, Sequence[float]], policies: Mapping[str, Sequence[float]],
                  answers: Sequence[str]) -> plt.Figure:
    """Left: expected reward and KL of the optimal policy over beta. Right: the policies at a few betas."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    left.semilogx(sweep["beta"], sweep["reward"], label="E[r] under pi*")
    left.set_xlabel("beta (KL coefficient)")
    left.set_ylabel("expected reward")
    twin = left.twinx()
    twin.semilogx(sweep["beta"], sweep["kl"], color="tab:red", label="KL(pi* || pi_ref)")
    twin.set_ylabel("KL (nats)", color="tab:red")
    left.set_title("small beta: more reward, further from pi_ref")
    width = 0.8 / len(policies)
    for i, (label, probs) in enumerate(policies.items()):
        right.bar([j + i * width for j in range(len(answers))], probs, width, label=label)
    right.set_xticks([j + 0.4 - width / 2 for j in range(len(answers))], answers, rotation=20)
    right.set_ylabel("probability")
    right.legend(fontsize=8)
    right.set_title("the optimal policy pi* for several beta")
    fig.tight_layout()
    return fig


def _words(texts) -> list[int]:
    return [len(str(t).split()) for t in texts]


def data_overview(sft: pd.DataFrame, prefs: pd.DataFrame) -> plt.Figure:
    """Four panels: answer lengths, topics, failure types (clean vs label noise), SFT demonstration quality.

    ``sft`` has prompt/response/topic/quality columns; ``prefs`` prompt/chosen/rejected/topic/failure/label_noise.
    """
    noisy = prefs["label_noise"].astype(bool)
    better = prefs["chosen"].where(~noisy, prefs["rejected"])  # on flipped pairs the stored 'chosen' is worse
    worse = prefs["rejected"].where(~noisy, prefs["chosen"])
    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    ax = axes[0, 0]
    bins = range(0, 110, 4)
    for label, texts in (("SFT response", sft["response"]), ("better answer", better), ("worse answer", worse)):
        ax.hist(_words(texts), bins=bins, alpha=0.5, label=label)
    ax.set(title="answer length", xlabel="words", ylabel="count")
    ax.legend()
    topics = pd.DataFrame({"SFT": sft["topic"].value_counts(), "preferences": prefs["topic"].value_counts()})
    topics.sort_index().plot.barh(ax=axes[0, 1], title="topics")
    fails = prefs.groupby(["failure", noisy.rename("label noise")]).size().unstack(fill_value=0)
    fails.plot.bar(ax=axes[1, 0], stacked=True, rot=20, title="failure shown by the worse answer")
    sft["quality"].value_counts().plot.bar(ax=axes[1, 1], rot=20, title="SFT demonstrations by quality")
    fig.tight_layout()
    return fig


def judge_heatmap(table: pd.DataFrame, title: str) -> plt.Figure:
    """Heatmap of a (rows x criteria) table of scores in [0, 1], values written in the cells."""
    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 2, 0.45 * table.shape[0] + 1.5))
    im = ax.imshow(table.values, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=20)
    ax.set_yticks(range(table.shape[0]), table.index)
    for (i, j), v in np.ndenumerate(table.values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ evaluation (notebook 06)
def eval_reward_bars(frame: pd.DataFrame, judge_label: str = "gold judge") -> plt.Figure:
    """Mean learned reward and mean judge score per model (``frame``: index = model, columns
    ``reward_mean/std``, ``judge_mean/std``, ``n``), error bars = 95% CI of the mean (1.96 * std / sqrt(n))."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (key, title) in zip(axes, (("reward", "learned reward (proxy)"), ("judge", judge_label)), strict=True):
        mean, err = frame[f"{key}_mean"], 1.96 * frame[f"{key}_std"] / np.sqrt(frame["n"])
        ok = mean.notna()
        colors = plt.get_cmap("tab10")(np.arange(len(frame)))
        ax.bar(np.arange(len(frame))[ok.values], mean[ok], yerr=err[ok], capsize=4, color=colors[ok.values])
        ax.set_xticks(range(len(frame)), frame.index, rotation=15)
        ax.axhline(0, color="#444", lw=0.8)
        ax.set_title(title if ok.any() else f"{title}: not available")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean score (error bar: 95% CI of the mean)")
    fig.tight_layout()
    return fig


def eval_metric_bars(frame: pd.DataFrame, columns: Mapping[str, str], title: str = "", ylabel: str = "") -> plt.Figure:
    """Grouped bars: one group per model (``frame`` index), one bar per metric (``columns``: column -> label)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(frame) + 2), 3.6))
    width = 0.8 / len(columns)
    for i, (col, label) in enumerate(columns.items()):
        xs = np.arange(len(frame)) + (i - (len(columns) - 1) / 2) * width
        ax.bar(xs, frame[col], width, label=label)
    ax.set_xticks(range(len(frame)), frame.index, rotation=15)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=8, ncol=len(columns))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def length_histograms(lengths: Mapping[str, Sequence[float]], xlabel: str = "words per response",
                      max_value: float | None = None) -> plt.Figure:
    """One histogram panel per model, shared bins and x axis; the dashed line marks the median."""
    n = len(lengths)
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n + 1, 2.8), sharex=True, sharey=True, squeeze=False)
    top = max_value or max([max(v) for v in lengths.values() if len(v)] + [1])
    bins = np.linspace(0, top, 21)
    for ax, (name, values), color in zip(axes.flat, lengths.items(), plt.get_cmap("tab10")(np.arange(n)), strict=True):
        ax.hist(values, bins=bins, color=color, alpha=0.8)
        if len(values):
            ax.axvline(float(np.median(values)), color="#222", ls="--", lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel)
    axes[0, 0].set_ylabel("responses")
    fig.tight_layout()
    return fig


def win_rate_intervals(frame: pd.DataFrame, reference_label: str = "SFT") -> plt.Figure:
    """Win rate against the reference per model with its confidence interval (columns win_rate/low/high)."""
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(frame) + 1.5))
    ys = np.arange(len(frame))[::-1]
    lo, hi = frame["win_rate"] - frame["win_low"], frame["win_high"] - frame["win_rate"]
    ax.errorbar(frame["win_rate"], ys, xerr=[lo, hi], fmt="o", capsize=4)
    ax.axvline(0.5, color="#888", ls="--", lw=1)
    ax.set_yticks(ys, frame.index)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"win rate against {reference_label} (ties = 1/2)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def proxy_gold_over_kl(runs: Mapping[str, Sequence[Mapping[str, float]]], kl_key: str = "objective/kl",
                       proxy_key: str = "objective/scores", gold_key: str = "objective/gold") -> plt.Figure:
    """Reward over KL for PPO runs (``runs``: label -> log records): the proxy (learned reward) on the left, the
    gold judge on the right. Goodhart: the proxy keeps rising with KL while gold flattens or falls."""
    has_gold = any(gold_key in r for recs in runs.values() for r in recs)
    fig, axes = plt.subplots(1, 2 if has_gold else 1, figsize=(10 if has_gold else 5.5, 3.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for i, (label, recs) in enumerate(runs.items()):
        color = cmap(i / max(1, len(runs) - 1))
        for ax, key in zip(axes.flat, (proxy_key, gold_key), strict=False):
            pts = [(r[kl_key], r[key]) for r in recs if kl_key in r and key in r]  # in update order
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, "o-", ms=3, lw=0.8, alpha=0.6, color=color)
                ax.plot(xs[-1:], ys[-1:], "*", ms=12, color=color, label=f"{label} (star: last update)")
    for ax, title in zip(axes.flat, ("proxy: learned reward", "gold judge"), strict=False):
        ax.set(title=title, xlabel="KL(pi || pi_ref) per response (nats)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean reward of the rollouts")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def training_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], keys: Mapping[str, Sequence[str]],
                    twin_keys: Sequence[str] = ("objective/kl", "eval_accuracy"), x: str = "step") -> plt.Figure:
    """One panel per stage (``curves``: stage -> log records), lines for that stage's ``keys`` present in its
    records; ``twin_keys`` go on a right-hand axis (other scale)."""
    n = len(curves)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3 * nrows), squeeze=False)
    for ax, (stage, recs) in zip(axes.flat, curves.items(), strict=False):
        twin = None
        for j, key in enumerate(keys.get(stage, ())):
            pts = [(r[x], r[key]) for r in recs if x in r and key in r and r[key] is not None]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            target = ax
            if key in twin_keys:
                twin = twin or ax.twinx()
                target = twin
            target.plot(xs, ys, color=f"C{j}", marker="o" if len(pts) < 30 else None, ms=3,
                        label=f"{key} (right axis)" if target is twin else key)
        lines = [ln for a in (ax, twin) if a is not None for ln in a.get_lines()]
        if lines:
            ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7)
        ax.set_title(stage, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig

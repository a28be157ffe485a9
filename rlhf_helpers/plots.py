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

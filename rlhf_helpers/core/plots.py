"""Plotting shared by the notebooks: every figure is shown *and* saved as PNG under ``outputs/plots``.

Stage-specific figures live with their stage; here: :func:`save_figure`, :func:`series` (the points of one
metric in a training log) and :func:`plot_curves` (metrics over steps, the figure every stage draws).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .artifacts import Paths


def save_figure(fig: plt.Figure, name: str, paths: Paths | None = None) -> Path:
    """Save ``fig`` as ``outputs/plots/<name>.png`` (atomically) and return the path."""
    paths = paths or Paths()
    out = paths.plot(f"{name}.png")
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, out)
    return out


def series(records: Sequence[Mapping[str, Any]], x: str, key: str) -> tuple[tuple, tuple]:
    """``(xs, ys)``: ``key`` against ``x`` over the log records that have both (None values skipped), in order."""
    pts = [(r[x], r[key]) for r in records if x in r and r.get(key) is not None]
    return tuple(zip(*pts, strict=True)) if pts else ((), ())


def plot_curves(history: Sequence[Mapping[str, float]], keys: Sequence[str], x: str = "step",
                title: str = "", ylabel: str = "", ax: plt.Axes | None = None,
                labels: Mapping[str, str] | None = None) -> plt.Figure:
    """Line plot of ``keys`` over ``x`` from a list of log records (records missing a key are skipped), on
    ``ax`` or a new figure; ``labels`` renames keys in the legend."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        xs, ys = series(history, x, key)
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=(labels or {}).get(key, key))
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.figure.tight_layout()
    return ax.figure

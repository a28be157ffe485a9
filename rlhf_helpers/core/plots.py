"""Plotting shared by the notebooks: every figure is shown *and* saved as PNG under ``outputs/plots``.

Stage-specific figures live with their stage; here: :func:`save_figure`, :func:`series` (the points of one
metric in a training log), :func:`plot_curves` (metrics over steps, the figure every stage draws) and what every
figure shares: the colour-blind-safe :data:`PALETTE` (:func:`color`), :func:`smooth` and :func:`plot_series` (a
noisy curve as a faint raw line under its moving average), :func:`legend_outside` (a legend off the data).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .artifacts import Paths

# Okabe-Ito: told apart with every common colour-vision deficiency; yellow last, it is pale on white
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
SMOOTH_ABOVE = 12  # a series with more points is drawn raw (faint) and smoothed (bold)


def color(i: int) -> str:
    """The ``i``-th colour of :data:`PALETTE` (cycling)."""
    return PALETTE[i % len(PALETTE)]


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average over ``window`` points (fewer at the ends); unchanged when ``window <= 1`` or the
    series is shorter than the window."""
    vals = [float(v) for v in values]
    if window <= 1 or len(vals) < window:
        return vals
    back = (window - 1) // 2
    parts = [vals[max(0, i - back):i - back + window] for i in range(len(vals))]
    return [sum(p) / len(p) for p in parts]


def plot_series(ax: plt.Axes, xs: Sequence[float], ys: Sequence[float], color: str,
                label: str | None = None) -> None:
    """``ys`` over ``xs`` in ``color``: a plain line with markers up to :data:`SMOOTH_ABOVE` points, else a faint
    raw line under a bold moving average (window len/8, at least 3) that carries the legend ``label``."""
    if len(xs) <= SMOOTH_ABOVE:
        ax.plot(xs, ys, color=color, marker="o", ms=3, label=label)
        return
    ax.plot(xs, ys, color=color, alpha=0.25, lw=1)
    ax.plot(xs, smooth(ys, max(3, len(xs) // 8)), color=color, lw=2, label=label)


def legend_outside(ax: plt.Axes, *args: Any, **kwargs: Any) -> None:
    """A small legend right of ``ax``, where it covers no data (arguments as for ``ax.legend``, overriding
    these defaults)."""
    ax.legend(*args, **{"loc": "upper left", "bbox_to_anchor": (1.01, 1), "fontsize": 8, "frameon": False,
                        **kwargs})


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
    ``ax`` or a new figure, long series smoothed (:func:`plot_series`); ``labels`` renames keys in the legend."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for i, key in enumerate(keys):
        xs, ys = series(history, x, key)
        if xs:
            plot_series(ax, xs, ys, color(i), (labels or {}).get(key, key))
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    ax.figure.tight_layout()
    return ax.figure

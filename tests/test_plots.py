"""core.plots: saving figures atomically, the points of a metric in a log, the shared curve plot, the palette and
smoothing; and the readability of the stage plots built on them (words for metric keys, the RM's blind spots)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rlhf_helpers import ppo, ppo_runs, reward  # noqa: E402
from rlhf_helpers.core.artifacts import Paths  # noqa: E402
from rlhf_helpers.core.plots import PALETTE, color, plot_curves, save_figure, series, smooth  # noqa: E402

LOG = [{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.5}, {"step": 3, "loss": 1.0, "eval_loss": None},
       {"loss": 0.5}]


def test_series_keeps_records_with_both_keys_in_order():
    assert series(LOG, "step", "loss") == ((1, 3), (2.0, 1.0))
    assert series(LOG, "step", "eval_loss") == ((2,), (1.5,))  # None is a missing value, not a point
    assert series(LOG, "step", "accuracy") == ((), ())


def test_plot_curves_draws_one_line_per_logged_key_on_a_given_axis():
    fig, ax = plt.subplots()
    assert plot_curves(LOG, ["loss", "eval_loss", "accuracy"], title="t", ax=ax) is fig
    assert [line.get_label() for line in ax.lines] == ["loss", "eval_loss"]  # nothing for a key never logged
    assert list(ax.lines[0].get_xdata()) == [1, 3] and ax.get_title() == "t"
    plt.close(fig)
    fig = plot_curves(LOG, ["loss"], labels={"loss": "train"})  # a new figure when no axis is given
    assert fig.axes[0].lines[0].get_label() == "train"
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1
    plt.close(fig)


def test_save_figure_writes_a_png_under_plots_and_no_temporary_file(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, "curve", Paths(root=tmp_path))
    assert out == tmp_path / "plots" / "curve.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curve.png"]
    plt.close(fig)


def test_smooth_is_a_centred_moving_average_and_leaves_short_series_alone():
    assert smooth([0, 3, 6, 3, 0], 3) == [1.5, 3.0, 4.0, 3.0, 1.5]  # fewer points at the ends
    assert smooth([0, 4, 8, 4], 2) == [2.0, 6.0, 6.0, 4.0]
    assert smooth([1, 5, 2], 1) == [1.0, 5.0, 2.0] and smooth([1, 5], 3) == [1.0, 5.0] and smooth([], 3) == []


def test_palette_colours_are_distinct_and_cycle():
    assert len({color(i) for i in range(6)}) == 6 and color(len(PALETTE)) == color(0)
    assert PALETTE[-1] == "#F0E442"  # pale yellow last


def _tv(values) -> float:
    return float(np.abs(np.diff(np.asarray(values, dtype=float))).sum())


def test_plot_curves_draws_a_long_noisy_series_faint_and_smoothed_with_the_legend_off_the_data():
    rng = np.random.default_rng(0)
    log = [{"step": i, "loss": 2 - i / 100 + rng.normal(0, 0.3)} for i in range(100)]
    fig = plot_curves(log, ["loss"])
    ax = fig.axes[0]
    raw, smoothed = ax.lines
    assert raw.get_alpha() < 0.5 and smoothed.get_alpha() in (None, 1)
    assert raw.get_color() == smoothed.get_color() == PALETTE[0]
    assert _tv(smoothed.get_ydata()) < _tv(raw.get_ydata()) / 3
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["loss"]  # the smoothed line only
    fig.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # right of the axes, on no data
    plt.close(fig)


def test_ppo_panels_are_titled_in_words_with_the_unit_as_y_label():
    history = [{"step": i, "objective/kl": 0.1 * i, "custom/x": 1.0} for i in range(1, 5)]
    fig = ppo_runs.plot_history(history, ["objective/kl"])
    ax = fig.axes[0]
    assert ax.get_title() == "KL to the SFT model" and "objective/kl" in [t.get_text() for t in ax.texts]
    assert ax.get_ylabel() == "nats per response" and ax.get_xlabel() == "PPO update"
    plt.close(fig)
    fig = ppo_runs.plot_history(history, ["custom/x"])  # an unknown key: the key itself
    assert fig.axes[0].get_title() == "custom/x" and fig.axes[0].get_ylabel() == ""
    plt.close(fig)
    assert set(ppo_runs.DEFAULT_PLOT_KEYS) <= set(ppo_runs.METRIC_LABELS)


def test_beta_sweep_gives_each_beta_its_own_colour():
    results = {beta: ppo.PPOResult([{"step": i, "objective/kl": beta * i} for i in range(1, 4)], [], None, None)
               for beta in (0.0, 0.05, 0.2)}
    fig = ppo_runs.plot_beta_sweep(results)
    ax = fig.axes[0]
    assert [ln.get_color() for ln in ax.lines] == list(PALETTE[:3]) and ax.get_title() == "KL to the SFT model"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["β = 0", "β = 0.05", "β = 0.2"]
    plt.close(fig)


def test_plot_fool_shows_how_often_the_reward_model_is_fooled():
    table = pd.DataFrame({"RM score": [0.0, 1.2, -0.5], "gold score": [0.8, 0.5, 0.1],
                          "RM prefers it %": [0.0, 75.0, 10.0], "gold prefers it %": [0.0, 25.0, 0.0],
                          "RM fooled %": [0.0, 60.0, 10.0]}, index=["reference", "flattering", "off-topic answer"])
    fig = reward.plot_fool(table)
    bars = [ax for ax in fig.axes if ax.patches]
    assert len(bars) == 1
    assert [p.get_height() for p in bars[0].patches] == [0.0, 60.0, 10.0]
    assert [t.get_text() for t in bars[0].texts] == ["0%", "60%", "10%"]  # the percentage on each bar
    plt.close(fig)

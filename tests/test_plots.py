"""core.plots: saving figures atomically, the points of a metric in a log, the shared curve plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from rlhf_helpers.core.artifacts import Paths  # noqa: E402
from rlhf_helpers.core.plots import plot_curves, save_figure, series  # noqa: E402

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

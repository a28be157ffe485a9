"""Tests of rlhf_helpers.overoptimization: the rise-and-fall numbers, Gao et al.'s fit, its plot, the blind spot."""

import numpy as np
import pytest
import torch

from rlhf_helpers import overoptimization as oo
from rlhf_helpers.core.config import GenerationConfig


def _log(gold, proxy, kl):
    return [{"step": i + 1, oo.GOLD: g, oo.PROXY: p, oo.KL: k}
            for i, (g, p, k) in enumerate(zip(gold, proxy, kl, strict=True))]


def test_rise_and_fall_finds_the_peak_of_the_smoothed_gold_curve():
    gold = [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4]
    log = _log(gold, proxy=list(range(10)), kl=[i / 2 for i in range(10)])
    r = oo.rise_and_fall(log, window=1)  # no smoothing: the raw numbers
    assert (r["gold_start"], r["gold_peak"], r["gold_end"], r["peak_step"]) == (0.5, 0.8, 0.4, 5)
    assert r["rise"] == pytest.approx(0.3) and r["fall"] == pytest.approx(0.4)
    assert (r["proxy_start"], r["proxy_peak"], r["proxy_end"], r["kl_peak"], r["kl_end"]) == (0, 4, 9, 2.0, 4.5)
    log[0][oo.GOLD] = 0.3  # the starting policy's own rollout is never smoothed with the updates after it
    smoothed = oo.rise_and_fall(log, window=3)
    assert smoothed["gold_peak"] == pytest.approx(2.3 / 3) and smoothed["gold_start"] == 0.3
    assert smoothed["gold_end"] == pytest.approx(0.45)  # mean of the last two (the window is cut at the end)
    assert smoothed["rise"] == pytest.approx(2.3 / 3 - 0.3)
    with pytest.raises(ValueError, match="objective/gold"):
        oo.rise_and_fall([{"step": 1, oo.PROXY: 1.0}])


def test_gao_fit_recovers_the_parameters_of_a_noiseless_curve():
    kl = np.linspace(0.1, 30, 40)
    gain = oo.gao_curve(np.sqrt(kl), 0.3, 0.2)
    alpha, beta = oo.gao_fit(kl, gain)
    assert alpha == pytest.approx(0.3, abs=1e-6) and beta == pytest.approx(0.2, abs=1e-6)
    # the curve rises then falls: its maximum is at d = exp(alpha / beta - 1)
    d = np.linspace(0.01, 6, 2000)
    assert d[np.argmax(oo.gao_curve(d, alpha, beta))] == pytest.approx(np.exp(0.3 / 0.2 - 1), abs=0.01)
    assert oo.gao_curve(np.array([0.0]), 1.0, 1.0)[0] == 0.0
    with pytest.raises(ValueError, match="two updates"):
        oo.gao_fit([0.0, 0.0, 1.0], [0.0, 0.1, 0.2])


def test_sweep_table_has_one_row_per_beta_with_the_fit():
    kl = np.linspace(0, 25, 20)
    logs = {0.5: _log([0.5] * 4, [0.0] * 4, [0.0] * 4),
            0.0: _log(0.5 + oo.gao_curve(np.sqrt(kl), 0.2, 0.15), np.linspace(0, 2, 20), kl)}
    table = oo.sweep_table(logs, window=1)
    assert list(table["beta"]) == [0.0, 0.5]
    assert table.loc[0, "gao_alpha"] == pytest.approx(0.2) and table.loc[0, "gao_beta"] == pytest.approx(0.15)
    assert np.isnan(table.loc[1, "gao_alpha"]) and table.loc[1, "rise"] == 0.0


def test_plot_gao_draws_one_fitted_curve_per_run():
    kl = np.linspace(0, 25, 20)
    runs = {"beta=0": _log(0.5 + oo.gao_curve(np.sqrt(kl), 0.2, 0.15), np.linspace(0, 2, 20), kl),
            "beta=0.5": _log([0.5] * 5, [0.0] * 5, [0.0, 0.1, 0.2, 0.2, 0.3])}
    fig = oo.plot_gao(runs)
    left = fig.axes[0]
    labels = [ln.get_label() for ln in left.get_lines() if not ln.get_label().startswith("_")]
    assert len(labels) == 2 and labels[0].startswith("beta=0: α=0.20, β=0.15")



def test_sample_agreement_counts_pairs_the_judge_separates(monkeypatch):
    answers = iter([["good", "bad", "same", "same"], ["good", "bad", "bad", "good"]])
    monkeypatch.setattr(oo, "generate", lambda model, tok, prompts, cfg, progress: next(answers))

    class Proxy:  # prefers "bad": a reward model with a blind spot
        def score(self, prompts, responses):
            return torch.tensor([1.0 if r == "bad" else 0.0 for r in responses])

    def judge(prompts, responses):
        return [1.0 if r == "good" else 0.0 for r in responses]

    table = oo.sample_agreement(Proxy(), judge, {"sft": (None, None), "ppo": (None, None)}, ["p1", "p2"],
                                GenerationConfig())
    assert table.loc["sft", "pairs"] == 1 and table.loc["sft", "agreement %"] == 0.0  # ("same", "same") is a tie
    assert table.loc["ppo", "pairs"] == 2 and table.loc["ppo", "agreement %"] == 0.0
    assert table.loc["sft", "gold mean"] == 0.25 and table.loc["ppo", "proxy mean"] == 0.5

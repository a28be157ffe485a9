"""Notebook 00's module: the closed-form optimum of the RLHF objective and the course's figures."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rlhf_helpers import overview as objective  # noqa: E402


def test_optimal_policy_maximises_the_objective():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(6))
    rewards = rng.normal(size=6)
    for beta in (0.1, 1.0, 5.0):
        best = objective.objective(objective.optimal_policy(ref, rewards, beta), ref, rewards, beta)
        for _ in range(200):  # no random policy does better than the closed form
            other = rng.dirichlet(np.ones(6))
            assert objective.objective(other, ref, rewards, beta) <= best + 1e-9


def test_beta_sweep_trades_reward_for_kl():
    ref = np.array([0.5, 0.3, 0.2])
    sweep = objective.beta_sweep(ref, np.array([0.0, 1.0, 2.0]), np.array([10.0, 1.0, 0.1]))
    assert np.all(np.diff(sweep["reward"]) > 0) and np.all(np.diff(sweep["kl"]) > 0)
    assert objective.kl_divergence(ref, ref) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        objective.optimal_policy(ref, np.zeros(3), 0.0)


def test_figures_draw_every_stage_and_both_panels():
    fig = objective.course_map()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert all(any(name == t for t in texts) for _, name, _ in objective.PIPELINE)
    plt.close(fig)
    betas = np.array([0.1, 1.0, 10.0])
    sweep = objective.beta_sweep(np.array([0.5, 0.5]), np.array([0.0, 1.0]), betas)
    fig = objective.beta_tradeoff(sweep, {"beta=1": [0.3, 0.7]}, ["a", "b"])
    assert len(fig.axes) == 3 and list(fig.axes[0].lines[0].get_xdata()) == list(betas)  # left, right, twin
    plt.close(fig)

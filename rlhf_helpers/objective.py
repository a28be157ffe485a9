"""The RLHF objective on a toy problem small enough to solve exactly.

RLHF maximises   J(pi) = E_{y~pi}[ r(y) ] - beta * KL(pi || pi_ref).
Over a finite set of answers its maximiser has a closed form (the "Gibbs" policy):

    pi*(y) = pi_ref(y) * exp(r(y) / beta) / Z

beta -> infinity keeps pi_ref; beta -> 0 puts all mass on the highest reward (reward hacking when r is a
learned proxy). Notebook 00 plots this trade-off before any neural network appears.
"""

from __future__ import annotations

import numpy as np


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum_y p(y) log(p(y) / q(y)) for two distributions of shape [N]."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


def objective(policy: np.ndarray, ref: np.ndarray, rewards: np.ndarray, beta: float) -> float:
    """J(pi) = E_pi[r] - beta * KL(pi || pi_ref); all arrays of shape [N]."""
    return float(np.dot(policy, rewards)) - beta * kl_divergence(policy, ref)


def optimal_policy(ref: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """pi*(y) proportional to pi_ref(y) * exp(r(y) / beta), shape [N]; computed in log space for stability."""
    if beta <= 0:
        raise ValueError("beta must be > 0 (beta = 0 is plain reward maximisation: an argmax, not a distribution)")
    logits = np.log(np.asarray(ref, float)) + np.asarray(rewards, float) / beta
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def beta_sweep(ref: np.ndarray, rewards: np.ndarray, betas: np.ndarray) -> dict[str, np.ndarray]:
    """Expected reward and KL of the optimal policy for each beta (arrays of shape [len(betas)])."""
    pis = [optimal_policy(ref, rewards, b) for b in betas]
    return {
        "beta": np.asarray(betas, float),
        "reward": np.array([float(np.dot(p, rewards)) for p in pis]),
        "kl": np.array([kl_divergence(p, ref) for p in pis]),
    }

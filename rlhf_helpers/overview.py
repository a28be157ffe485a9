"""The RLHF objective on a toy problem small enough to solve exactly.

RLHF maximises   J(pi) = E_{y~pi}[ r(y) ] - beta * KL(pi || pi_ref).
Over a finite set of answers its maximiser has a closed form (the "Gibbs" policy):

    pi*(y) = pi_ref(y) * exp(r(y) / beta) / Z

beta -> infinity keeps pi_ref; beta -> 0 puts all mass on the highest reward (reward hacking when r is a
learned proxy). Notebook 00 plots this trade-off before any neural network appears, after a map of the course
(:func:`course_map`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
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


# ------------------------------------------------------------------------------------------------ figures
PIPELINE = [
    ("00-01", "data", "prompts, demonstrations,\npreference pairs"),
    ("02-03", "SFT", "pretrained LM ->\ninstruction follower"),
    ("04", "reward model", "preference pairs ->\nscalar score r(x, y)"),
    ("05", "PPO", "max E[r] - beta KL(pi||pi_ref)"),
    ("06", "evaluation", "ROUGE, rewards,\nwin rates"),
    ("07", "beyond PPO", "DPO, IPO, RLOO, GRPO:\ngold against KL"),
    ("08", "human feedback", "your labels ->\nreward model -> PPO"),
]


def course_map() -> plt.Figure:
    """The course as a pipeline diagram: one box per stage, with its notebooks."""
    fig, ax = plt.subplots(figsize=(15, 2.4))
    ax.set_xlim(0, len(PIPELINE) * 2.2)
    ax.set_ylim(-0.35, 2)
    ax.axis("off")
    colors = ["#dbe9f6", "#d5f0d5", "#fde2c8", "#f9d2d2", "#e6dcf5", "#f5ecc8", "#d8f0ee"]
    for i, ((nbs, name, what), color) in enumerate(zip(PIPELINE, colors, strict=True)):
        x = i * 2.2 + 0.1
        ax.add_patch(plt.Rectangle((x, 0.25), 1.8, 1.5, color=color, ec="#555", lw=1))
        ax.text(x + 0.9, 1.45, name, ha="center", va="center", fontsize=11, weight="bold")
        ax.text(x + 0.9, 0.85, what, ha="center", va="center", fontsize=8)
        ax.text(x + 0.9, 0.38, f"notebook {nbs}", ha="center", va="center", fontsize=7, color="#444")
        if i:
            ax.annotate("", xy=(x, 1.0), xytext=(x - 0.4, 1.0), arrowprops={"arrowstyle": "->", "lw": 1.5})
    ax.text(len(PIPELINE) * 1.1, -0.12, "notebook 07: DPO folds the reward model and PPO into one loss; RLOO / GRPO drop PPO's value model",
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

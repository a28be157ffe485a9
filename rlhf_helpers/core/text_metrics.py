"""Text metrics on answers, shared by SFT (notebooks 02-03) and evaluation (05-06).

* **ROUGE-1/2/L/Lsum and BLEU** against references -- :func:`rouge_scores`, :func:`bleu_score`, through
  ``evaluate`` with the metric modules shipped in ``rlhf_helpers/core/metrics/`` (``evaluate.load("rouge")``
  needs the Hub; these load offline; the numbers are rouge_score's / tensorflow-nmt's).
* **distinct-n** (Li et al., 2016) -- :func:`distinct_n`.
* **Win rate** with a percentile-bootstrap interval -- :func:`win_rate`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@functools.cache
def load_metric(name: str) -> Any:
    """``evaluate.load`` of a metric module shipped in ``rlhf_helpers/core/metrics/<name>`` (cached per process).

    ``keep_in_memory=True``: nothing is written to the ``evaluate`` cache (no lock files shared between
    processes). Works offline: the module and its helper files are local.
    """
    import evaluate

    path = METRICS_DIR / name
    if not (path / f"{name}.py").exists():
        shipped = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").exists())
        raise ValueError(f"No metric module {name!r} in {METRICS_DIR}; shipped: {', '.join(shipped)}")
    return evaluate.load(str(path), keep_in_memory=True)


def _check_pairs(predictions: list[str], references: list[str]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be lists of strings, not single strings")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")


def rouge_per_example(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L/Lsum F1 of each prediction against its reference (the shipped ``evaluate`` module,
    ``use_aggregator=False``): ``{"rouge1": [float per example], ...}``."""
    _check_pairs(predictions, references)
    out = load_metric("rouge").compute(predictions=list(predictions), references=list(references),
                                       use_aggregator=False)
    return {key: [float(v) for v in out[key]] for key in ROUGE_TYPES}


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F1 of ``predictions`` against ``references`` (one reference each).

    Computed by the shipped ``evaluate`` module (Google's ``rouge_score`` inside), per example
    (``use_aggregator=False``), then averaged here. Why not the module's default aggregator: its value is the
    median of 1000 bootstrap means drawn from NumPy's unseeded global RNG -- close to the mean, but neither
    exactly the mean nor reproducible from run to run. The plain mean is both.
    Returns ``{"rouge1", "rouge2", "rougeL", "rougeLsum"}`` -> float in [0, 1].
    """
    return {key: float(np.mean(values)) for key, values in rouge_per_example(predictions, references).items()}


def bleu_score(predictions: list[str], references: list[str], smooth: bool = False) -> dict[str, Any]:
    """Corpus BLEU (max order 4, mteval-13a tokens) through the shipped ``evaluate`` module.

    Returns the module's dict: ``bleu`` (float in [0, 1]), ``precisions`` (1- to 4-gram), ``brevity_penalty``,
    ``length_ratio``, ``translation_length``, ``reference_length``.
    """
    _check_pairs(predictions, references)
    out = load_metric("bleu").compute(predictions=list(predictions), references=[[r] for r in references],
                                      smooth=smooth)
    return {k: [float(x) for x in v] if isinstance(v, list) else (int(v) if k.endswith("_length") else float(v))
            for k, v in out.items()}


def _words(text: str) -> list[str]:
    return text.lower().split()


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique word n-grams / all word n-grams, pooled over ``texts``.

    Words = lower-cased whitespace tokens. 1.0 = no n-gram repeats anywhere; low = the answers repeat
    themselves or each other. 0.0 when the texts hold no n-gram at all (e.g. all empty).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(w[i : i + n]) for w in map(_words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def win_rate(scores: Sequence[float], baseline: Sequence[float], n_boot: int = 1000, seed: int = 0,
             level: float = 0.95) -> dict[str, float]:
    """Pairwise win rate of ``scores`` over ``baseline`` (same prompts, same order), with a bootstrap CI.

    Per prompt: 1 if the policy's score is higher, 0.5 on a tie (equal scores), 0 if lower. The win rate is the
    mean; the interval is the percentile bootstrap: prompts resampled with replacement ``n_boot`` times
    (``numpy.random.default_rng(seed)``), the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
    resampled means. Returns ``{"win_rate", "low", "high", "wins", "ties", "losses", "n"}``.
    """
    a, b = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"scores and baseline must be 1-D and of the same length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("win_rate needs at least one prompt")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("win_rate got NaN scores")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got level={level}, n_boot={n_boot}")
    outcome = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
    rng = np.random.default_rng(seed)
    means = outcome[rng.integers(0, len(outcome), size=(n_boot, len(outcome)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"win_rate": float(outcome.mean()), "low": float(low), "high": float(high),
            "wins": int((a > b).sum()), "ties": int((a == b).sum()), "losses": int((a < b).sum()), "n": len(a)}

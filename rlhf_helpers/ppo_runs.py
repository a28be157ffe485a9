"""Running PPO in the course (notebook 05): what surrounds the algorithm of :mod:`rlhf_helpers.ppo`.

Callbacks (live plot, printed samples), checkpoints (save, resume, load the trained policy), the beta sweep and its
plots, and the course loader that hands the SFT policy, the reward model and the prompts to the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .core.artifacts import BETA_SWEEP_LOG, PPO_INFO, PPO_LOG, Paths, read_json, read_records, write_jsonl


def save_beta_sweep(results: Mapping[float, Any], paths: Paths) -> Path:
    """Save a PPO beta sweep's logs (``{beta: PPOResult or list of log records}``, e.g. from
    :func:`beta_sweep`) as ``results/ppo_beta_sweep.jsonl`` -- one record per (beta, update),
    with a ``beta`` field -- where :func:`load_ppo_logs` (notebook 06's proxy-vs-gold plot) finds it."""
    records = []
    for beta, res in results.items():
        history = res if isinstance(res, list | tuple) else res.history
        records += [{"beta": float(beta), **r} for r in history]
    return write_jsonl(records, paths.result(BETA_SWEEP_LOG))


def load_ppo_logs(paths: Paths) -> dict[str, list[dict[str, Any]]]:
    """PPO logs for the proxy-vs-gold plot: ``{label: records}`` -- the main run (``checkpoints/ppo/log.jsonl``)
    and each beta of a saved sweep (``results/ppo_beta_sweep.jsonl``); empty when neither exists."""
    runs: dict[str, list[dict[str, Any]]] = {}
    main = paths.checkpoint("ppo") / PPO_LOG
    if main.exists():
        info = paths.checkpoint("ppo") / PPO_INFO
        cfg = read_json(info).get("config", {}) if info.exists() else {}
        beta = cfg.get("kl_coef")
        label = "PPO run" + (f" (beta={beta:g}{', adaptive' if cfg.get('adaptive_kl') else ''})" if beta else "")
        runs[label] = read_records(main)
    sweep = paths.results / BETA_SWEEP_LOG
    if sweep.exists():
        for r in read_records(sweep):
            runs.setdefault(f"sweep beta={r['beta']:g}", []).append(r)
    return runs

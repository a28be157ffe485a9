"""Running PPO in the course (notebook 05): what surrounds the algorithm of :mod:`rlhf_helpers.ppo`.

* :func:`train_ppo` -- :func:`rlhf_helpers.ppo.train_ppo` with a checkpoint directory (saved every
  ``cfg.save_every`` updates and at the end, each once its policy has passed the trainer's checks; resumed from,
  with the current settings) and the notebook's callbacks by default;
* callbacks: :class:`Checkpoint`, :class:`LivePlot` (Jupyter), :class:`PrintSamples`;
* checkpoints: :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`has_checkpoint`, :func:`load_ppo_policy`;
* the beta sweep: :func:`beta_sweep`, :func:`sweep_summary`, :func:`save_beta_sweep`, :func:`load_ppo_logs`;
* plots: :func:`plot_history`, :func:`plot_beta_sweep`;
* :func:`load_course_stages` -- the SFT policy, its frozen reference, the reward model and the prompts;
* exercises: :func:`replay_kl_controller` (the betas the adaptive controller picks for a sequence of KLs),
  :func:`plot_runs` (several runs' curves on shared panels), :func:`start_and_end` (their first and last updates).

This module imports :mod:`rlhf_helpers.ppo`, never the reverse: the trainer reaches checkpoints only through
the :class:`~rlhf_helpers.ppo.Callback` hooks (:class:`Checkpoint`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import data_prep, ppo
from .core.artifacts import (
    BETA_SWEEP_LOG,
    PPO_INFO,
    PPO_LOG,
    Paths,
    atomic_dir,
    old_dir,
    read_json,
    read_records,
    weights_digest,
    write_json,
    write_jsonl,
)
from .core.config import PPOConfig, Profile
from .core.loading import frozen_copy, is_peft, load_model, precision, quiet_transformers
from .core.plots import color, legend_outside, plot_series, series

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import pandas as pd
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

STATE_FILE = "trainer_state.pt"  # optimizer, KL controller, RNG states, step (tensors and plain values only)
VALUE_HEAD_FILE = "value_head.safetensors"
SAMPLES_FILE = "samples.jsonl"
DEFAULT_PLOT_KEYS = ("objective/scores", "objective/kl", "objective/rlhf_reward", "objective/entropy",
                     "loss/value_avg", "policy/clipfrac_avg")
# TRL metric key -> (panel title in words, y-axis unit) for the plots
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "objective/scores": ("reward-model score (proxy)", "normalised score"),
    "objective/rlhf_reward": ("score − KL penalty (what PPO maximises)", "normalised score"),
    "objective/kl": ("KL to the SFT model", "nats per response"),
    "objective/kl_k3": ("KL to the SFT model (k3 estimate)", "nats per response"),
    "objective/entropy": ("answer entropy (randomness)", "nats per response"),
    "objective/non_score_reward": ("KL penalty (−β × KL)", "normalised score"),
    "objective/gold": ("gold judge score (true quality)", "score in [0, 1]"),
    "policy/approxkl_avg": ("policy change per update (approx. KL)", "nats per token"),
    "policy/clipfrac_avg": ("policy updates clipped", "fraction of tokens"),
    "policy/entropy_avg": ("token entropy (randomness)", "nats per token"),
    "loss/policy_avg": ("policy loss (clipped PPO)", "loss"),
    "loss/value_avg": ("value-head loss", "squared error"),
    "val/response_length": ("answer length", "tokens"),
    "val/num_eos_tokens": ("answers that ended (EOS)", "answers per rollout"),
    "objective/beta": ("KL coefficient β", "beta"),
    "val/clipfrac_avg": ("value updates clipped", "fraction of tokens"),
    "val/ratio": ("new / old probability ratio", "ratio (1 = unchanged)"),
}
DEFAULT_SUMMARY_SKIP = ("objective/entropy", "objective/non_score_reward", "objective/kl_k3",
                        "objective/raw_scores", "objective/beta")


def _say(trainer: ppo.PPOTrainerLite, message: str) -> None:
    if trainer.accelerator.is_main_process:
        print(message)


# =====================================================================================================
# Callbacks: checkpoints, live plot (Jupyter), printed samples
# =====================================================================================================
class Checkpoint(ppo.Callback):
    """Keep the run in ``out_dir``: resume from it at the start (when ``resume`` and it holds a checkpoint),
    save every ``every`` updates (default ``cfg.save_every``) and after the last update -- each one only once its
    policy has passed the checks, so a run that diverges keeps a checkpoint that is good (the error names it).

    An update due for a save is *pending* (``on_update``): its policy is unchecked, since the KL is measured on
    the rollout sampled from it, i.e. the next update's. When that rollout passes, the trainer calls
    ``on_policy_validated`` before changing anything, and the pending update is saved then; the last update's
    policy is checked by the trainer's extra rollout at the end of ``train``. The global RNG state is the one
    thing a reward source or extra metric could move in between, so it is taken at ``on_update``: a resumed
    run continues bit for bit as the uninterrupted one.

    ``starts_from`` names the models the run starts from (:func:`~rlhf_helpers.core.artifacts.weights_digest`
    of the SFT policy and the reward model): it is saved with each checkpoint, and a checkpoint that started from
    other models (one retrained since) is not resumed -- the run starts over and replaces it at its first save."""

    def __init__(self, out_dir: str | Path, every: int | None = None, resume: bool = True,
                 starts_from: str | None = None) -> None:
        self.out_dir, self.every, self.resume, self.starts_from = Path(out_dir), every, resume, starts_from
        self._pending: tuple[int, dict[str, Any]] | None = None  # (update, RNG state after it) awaiting its check

    def on_train_begin(self, trainer: ppo.PPOTrainerLite) -> None:
        trainer.out_dir = self.out_dir
        self._pending = None
        path = _complete_checkpoint(self.out_dir) if self.resume else None
        if path is None:
            return
        if self.starts_from is not None and read_json(path / PPO_INFO).get("starts_from") != self.starts_from:
            _say(trainer, f"Not resuming {self.out_dir}: it was trained from other models than this run's (the SFT "
                          "policy or the reward model was retrained since). Starting over; it is replaced at the "
                          "first save.")
            return
        load_checkpoint(trainer, self.out_dir)
        _say(trainer, f"Resumed from {self.out_dir} at update {trainer.step}/{trainer.cfg.total_updates}.")

    def on_update(self, trainer: ppo.PPOTrainerLite, record: dict[str, Any]) -> None:
        every = self.every or trainer.cfg.save_every
        if trainer.step % every == 0 or trainer.step == trainer.cfg.total_updates:
            self._pending = (trainer.step, _rng_state())

    def on_policy_validated(self, trainer: ppo.PPOTrainerLite) -> None:
        if self._pending is not None and self._pending[0] == trainer.step:
            save_checkpoint(trainer, self.out_dir, rng_state=self._pending[1], starts_from=self.starts_from)
            self._pending = None

    def on_train_end(self, trainer: ppo.PPOTrainerLite) -> None:
        if trainer.last_checkpoint_step != trainer.step and trainer.validated_step == trainer.step:
            save_checkpoint(trainer, self.out_dir, starts_from=self.starts_from)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where IPython.display can redraw a figure in place): Jupyter's
    ``ZMQInteractiveShell`` or a subclass of it, such as Colab's ``google.colab._shell.Shell``."""
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
        from IPython import get_ipython
    except ImportError:  # no IPython / ipykernel: not a notebook
        return False
    return isinstance(get_ipython(), ZMQInteractiveShell)


class LivePlot(ppo.Callback):
    """Redraw a figure of the training curves every ``every`` updates, in place (``display_id``).

    A no-op outside Jupyter. ``keys`` default to :data:`DEFAULT_PLOT_KEYS` plus any extra metric.
    """

    def __init__(self, keys: Sequence[str] | None = None, every: int = 4, ncols: int = 3) -> None:
        self.keys, self.every, self.ncols = keys, max(1, every), ncols
        self._handle = None

    def on_update(self, trainer: ppo.PPOTrainerLite, record: dict[str, Any]) -> None:
        last = record["step"] == trainer.cfg.total_updates
        if not in_notebook() or (record["step"] % self.every and not last):
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        keys = self.keys or (*DEFAULT_PLOT_KEYS, *(f"objective/{k}" for k in trainer.extra_metrics))
        fig = plot_history(trainer.history, keys, ncols=self.ncols)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


class PrintSamples(ppo.Callback):
    """Print a few sampled responses (with score) each time samples are drawn (the main process's)."""

    def __init__(self, n: int = 2, max_chars: int = 160) -> None:
        self.n, self.max_chars = n, max_chars

    def on_samples(self, trainer: ppo.PPOTrainerLite, samples: list[dict[str, Any]]) -> None:
        from tqdm.auto import tqdm

        if not trainer.accelerator.is_main_process:
            return

        for s in samples[: self.n]:
            extra = "".join(f"  {k}={s[k]:.3f}" for k in trainer.extra_metrics)
            tqdm.write(f"[update {s['step']}] score={s['score']:+.3f}{extra}\n  prompt  : "
                       f"{s['prompt'][: self.max_chars]!r}\n  response: {s['response'][: self.max_chars]!r}")


def default_callbacks() -> list[ppo.Callback]:
    """The notebook's: a live plot of the curves and a couple of printed samples."""
    return [LivePlot(), PrintSamples()]


# =====================================================================================================
# Checkpoints: written to a temporary directory, then renamed into place
# =====================================================================================================
# Our own files rather than accelerate's ``save_state``/``load_state``: accelerate unpickles its RNG-state file
# with ``torch.load(weights_only=False)``, so a tampered checkpoint could run code when loaded; ours holds only
# tensors and plain values (loaded with ``weights_only=True``) and resumes bit-identically (RNG states included).
def has_checkpoint(path: str | Path) -> bool:
    """True when ``path`` (or the backup left by an interrupted save) holds a complete PPO checkpoint."""
    return _complete_checkpoint(Path(path)) is not None


def _complete_checkpoint(path: Path) -> Path | None:
    """``path``, else the previous copy a save interrupted between its two renames left (``artifacts.old_dir``),
    whichever holds ``PPO_INFO`` (written last); None when neither does."""
    return next((p for p in (path, old_dir(path)) if (p / PPO_INFO).exists()), None)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),  # plain values: loadable with weights_only
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(trainer: ppo.PPOTrainerLite, out_dir: str | Path,
                    rng_state: Mapping[str, Any] | None = None, starts_from: str | None = None) -> Path:
    """Save policy (``save_pretrained``: safetensors; adapters only for LoRA) + tokenizer, value head
    (safetensors), optimizer, KL controller, step, RNG states (``rng_state``, default: the current ones), the log,
    samples and ``starts_from`` (see :class:`Checkpoint`) into ``out_dir`` -- atomically: everything is written
    to a temporary directory next to it, then renamed into place (the previous checkpoint is moved aside first
    and deleted last, so an interrupted save leaves one complete checkpoint). :class:`Checkpoint` calls it only
    for a policy that passed its checks.

    Refuses to replace an existing non-empty directory that is not a PPO checkpoint. Several processes: every
    process's minibatch-shuffle state is gathered, the main process writes, the others wait for it.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    acc = trainer.accelerator
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / PPO_INFO).exists():  # every process sees it
        raise FileExistsError(f"{out_dir} exists and is not a PPO checkpoint; refusing to overwrite it.")
    # each process shuffles its minibatches with its own generator: all of their states, in process order (gathered
    # on the accelerator's device: NCCL moves no CPU tensors)
    shuffle = trainer.shuffle_gen.get_state()
    shuffle_gens = ([g.cpu().to(torch.uint8) for g in acc.gather(shuffle.to(acc.device, torch.int32)[None])]
                    if acc.num_processes > 1 else [shuffle])

    def write(tmp: Path) -> None:
        policy = trainer.policy
        with quiet_transformers():  # no "Writing model shards" bar at every checkpoint
            policy.save_pretrained(tmp)
            trainer.tokenizer.save_pretrained(tmp)
            if is_peft(policy) and trainer.step >= trainer.cfg.total_updates:
                # the final LoRA policy also as a plain model, for later stages
                merged = copy.deepcopy(policy).merge_and_unload()
                merged.save_pretrained(tmp / "merged")
                trainer.tokenizer.save_pretrained(tmp / "merged")
                del merged
        vh = {k: v.detach().float().cpu().contiguous() for k, v in trainer.value_head.state_dict().items()}
        save_file(vh, str(tmp / VALUE_HEAD_FILE))
        torch.save({
            "step": trainer.step,
            "optimizer": trainer.optimizer.state_dict(),
            "kl_controller": trainer.kl_ctl.state_dict(),
            "rng": dict(rng_state) if rng_state is not None else _rng_state(),
            "shuffle_gens": shuffle_gens,
            "num_processes": acc.num_processes,
            "prompts_seen": trainer.prompts_seen(trainer.step),
            "last_checkpoint_step": trainer.step,
        }, tmp / STATE_FILE)
        write_jsonl(trainer.history, tmp / PPO_LOG)
        write_jsonl(trainer.samples, tmp / SAMPLES_FILE)
        info = {"step": trainer.step, "use_lora": is_peft(policy), "config": dataclasses.asdict(trainer.cfg),
                "num_processes": acc.num_processes, "starts_from": starts_from,
                "value_head": "linear head on the policy's last hidden state", "saved_at": time.time()}
        write_json(tmp / PPO_INFO, info)  # last: marks a complete checkpoint

    atomic_dir(out_dir, write)  # the main process writes; the others wait for it
    trainer.out_dir, trainer.last_checkpoint_step = out_dir, trainer.step
    return out_dir


def _load_policy_weights(policy: Any, path: Path) -> None:
    """Load the weights saved by ``save_pretrained`` into ``policy`` in place (full model or LoRA adapters)."""
    from safetensors.torch import load_file

    if is_peft(policy):
        from peft import set_peft_model_state_dict

        file = path / "adapter_model.safetensors"
        if not file.exists():
            raise FileNotFoundError(f"{file} missing: the checkpoint holds no LoRA adapters (was use_lora off?)")
        set_peft_model_state_dict(policy, load_file(str(file)))
        return
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No model*.safetensors in {path} (a LoRA checkpoint needs use_lora=True)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = policy.load_state_dict(state, strict=False)
    # tied weights (lm_head = embeddings) are saved once: a missing key is fine if it shares storage
    own = policy.state_dict(keep_vars=True)
    loaded_ptrs = {own[k].data_ptr() for k in state if k in own}
    really_missing = [k for k in missing if own[k].data_ptr() not in loaded_ptrs]
    if unexpected or really_missing:
        raise ValueError(f"Checkpoint {path} does not match the policy: missing {really_missing[:5]}, "
                         f"unexpected {list(unexpected)[:5]}")


def load_checkpoint(trainer: ppo.PPOTrainerLite, out_dir: str | Path) -> int:
    """Restore policy, value head, optimizer, KL controller, step, RNG states, log and samples from
    ``out_dir`` into ``trainer``; returns the restored step.

    The trainer state is read first, with ``torch.load(weights_only=True)``: a file holding anything but
    tensors and plain values (a pickled object) is refused (``pickle.UnpicklingError``) before anything changes.

    The trainer's config wins over the saved one: the optimizer's moments are restored, but its learning rates
    (policy ``learning_rate``, value head ``learning_rate * value_lr_multiplier``) and ``adam_epsilon`` are the
    current config's, and when ``kl_coef`` or ``adaptive_kl`` changed, beta restarts at the new ``kl_coef``
    (otherwise the saved beta, e.g. where the adaptive controller had moved it, goes on). So the advice of a
    divergence stop -- a lower learning rate, a larger beta -- takes effect when the run resumes.
    """
    from safetensors.torch import load_file

    path = _complete_checkpoint(Path(out_dir))
    if path is None:
        raise FileNotFoundError(f"No PPO checkpoint in {out_dir} ({PPO_INFO} missing)")
    info = read_json(path / PPO_INFO)
    if info.get("use_lora") != is_peft(trainer.policy):
        raise ValueError(f"Checkpoint {path} has use_lora={info.get('use_lora')} but the policy "
                         f"{'is' if is_peft(trainer.policy) else 'is not'} a LoRA model.")
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    saved_cfg = info.get("config", {})
    now_cfg = dataclasses.asdict(trainer.cfg)
    changed = [k for k in now_cfg if k not in ("total_updates", "save_every", "sample_every")
               and k in saved_cfg and saved_cfg[k] != now_cfg[k]]
    new_beta = any(k in changed for k in ("kl_coef", "adaptive_kl"))
    if changed:
        _say(trainer, f"note: resuming {path} saved with different settings ({', '.join(changed)}); the new ones "
                      "apply from here" + (f" (beta restarts at kl_coef = {trainer.cfg.kl_coef:g})" if new_beta else "")
                      + ". Pass resume=False to start over.")
    _load_policy_weights(trainer.policy, path)
    vh = load_file(str(path / VALUE_HEAD_FILE))
    trainer.value_head.load_state_dict({k: v.to(trainer.value_head.linear.weight.dtype) for k, v in vh.items()})
    trainer.optimizer.load_state_dict(state["optimizer"])  # brings back the saved learning rates too: ...
    cfg = trainer.cfg
    lrs = (cfg.learning_rate, cfg.learning_rate * cfg.value_lr_multiplier)  # ... the current config's apply
    for group, lr in zip(trainer.optimizer.param_groups, lrs, strict=True):
        group["lr"], group["eps"] = lr, cfg.adam_epsilon
    if not new_beta:
        trainer.kl_ctl.load_state_dict(state["kl_controller"])
    _set_rng_state(state["rng"])
    trainer.step = int(state["step"])
    # where the prompt stream stands (older checkpoints: batch_size x processes per update, as then)
    trainer.resume_prompts(trainer.step, int(state.get("prompts_seen", trainer.step * cfg.batch_size
                                                        * state.get("num_processes", 1))))
    _restore_shuffle(trainer, state)
    trainer.out_dir, trainer.last_checkpoint_step = Path(out_dir), trainer.step
    trainer.validated_step = trainer.step  # saved only once it passed its checks (Checkpoint)
    trainer.history, trainer.samples = ([] if not (path / f).exists() else read_records(path / f)
                                        for f in (PPO_LOG, SAMPLES_FILE))
    return trainer.step


def _restore_shuffle(trainer: ppo.PPOTrainerLite, state: Mapping[str, Any]) -> None:
    """Each process's minibatch-shuffle generator as saved; written by another number of processes, a fresh one
    per process, seeded by (seed, process, step): the run goes on from the prompts where it stopped
    (:meth:`~rlhf_helpers.ppo.PPOTrainerLite.resume_prompts`), but it is no longer the run the old count would give."""
    acc = trainer.accelerator
    saved = state.get("shuffle_gens") or [state["shuffle_gen"]]  # "shuffle_gen": a one-process checkpoint
    if len(saved) == acc.num_processes:
        trainer.shuffle_gen.set_state(saved[acc.process_index])
        return
    trainer.shuffle_gen.manual_seed(trainer.shuffle_seed(trainer.step))
    _say(trainer, f"note: the checkpoint was written by {len(saved)} process(es), this run has "
                  f"{acc.num_processes}: the minibatch shuffles start afresh (seeded) from update {trainer.step}.")


def load_ppo_policy(path: str | Path, device: str | None = None) -> PreTrainedModel:
    """The trained policy of a PPO checkpoint as a plain causal LM (LoRA: the ``merged/`` copy, or the
    adapters applied to their base), on ``device`` (default: :func:`~rlhf_helpers.core.loading.precision`'s)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if (path / "adapter_config.json").exists():
        if (path / "merged").exists():
            model = AutoModelForCausalLM.from_pretrained(str(path / "merged"))
        else:
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(str(path)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path))
    return model.to(device or precision().device).eval()


# =====================================================================================================
# Entry points for the notebook
# =====================================================================================================
def train_ppo(
    policy: PreTrainedModel,
    ref_policy: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase,
    reward_source: Any,
    prompts: Sequence[str],
    cfg: PPOConfig,
    out_dir: str | Path | None = None,
    callbacks: Iterable[ppo.Callback | Callable[[dict[str, Any]], None]] | None = None,
    resume: bool = True,
    extra_metrics: Mapping[str, ppo.ExtraMetric] | None = None,
    progress: bool = True,
    starts_from: str | None = None,
) -> ppo.PPOResult:
    """:func:`rlhf_helpers.ppo.train_ppo` as the notebook runs it.

    ``out_dir``: checkpoint directory (a :class:`Checkpoint` callback: every ``cfg.save_every`` updates and at
    the end; resumed from when ``resume`` and it started from the same models, ``starts_from``); ``None`` = keep
    nothing on disk. ``callbacks``: default = live plot (Jupyter) + printed samples; ``[]`` for none. Raises
    :class:`~rlhf_helpers.ppo.PPODivergenceError` (with ``.result``) on NaN or runaway KL.
    """
    cbs = default_callbacks() if callbacks is None else list(callbacks)
    if out_dir is not None:
        cbs.append(Checkpoint(out_dir, resume=resume, starts_from=starts_from))
    return ppo.train_ppo(policy, ref_policy, tokenizer, reward_source, prompts, cfg, callbacks=cbs,
                           extra_metrics=extra_metrics, progress=progress)


def beta_sweep(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reward_source: Any,
    prompts: Sequence[str],
    cfg: PPOConfig,
    betas: Sequence[float],
    ref_policy: PreTrainedModel | None = None,
    extra_metrics: Mapping[str, ppo.ExtraMetric] | None = None,
    callbacks: Callable[[float], Iterable[ppo.Callback | Callable]] | None = None,
    keep_policies: bool = False,
    progress: bool = True,
) -> dict[float, ppo.PPOResult]:
    """Several short runs from the same starting ``policy`` (it is copied, never changed), one per fixed
    beta (``kl_coef``), all against the same frozen reference (a frozen copy of ``policy`` unless given).

    ``extra_metrics`` are logged every update (e.g. ``{"gold": judge.gold_scores}`` -> ``objective/gold``).
    A run that diverges (NaN, KL > ``cfg.max_kl``) keeps its history with ``result.stopped`` set.
    ``callbacks(beta)`` may return callbacks per run (default: none). Returns ``{beta: PPOResult}``;
    ``result.policy`` is None unless ``keep_policies``.
    """
    ref = ref_policy if ref_policy is not None else frozen_copy(policy)
    results: dict[float, ppo.PPOResult] = {}
    for beta in betas:
        run_cfg = dataclasses.replace(cfg, kl_coef=float(beta), adaptive_kl=False)
        run_policy = copy.deepcopy(policy)
        cbs = list(callbacks(beta)) if callbacks else []
        if progress:
            print(f"--- beta = {beta:g} ---")
        try:
            result = ppo.train_ppo(run_policy, ref, tokenizer, reward_source, prompts, run_cfg, callbacks=cbs,
                                     extra_metrics=extra_metrics, progress=progress)
        except ppo.PPODivergenceError as e:
            print(f"beta = {beta:g}: {e}")
            result = e.result
        if not keep_policies:
            result.policy = result.value_head = None
            del run_policy
        results[float(beta)] = result
    return results


def sweep_summary(results: Mapping[float, ppo.PPOResult], keys: Sequence[str] | None = None,
                  last: int = 5) -> pd.DataFrame:
    """One row per beta: the mean of each key over the last ``last`` updates, and whether the run stopped."""
    import pandas as pd

    keys = keys or ["objective/scores", "objective/kl", "objective/rlhf_reward"]
    rows = []
    for beta, res in results.items():
        extra = [k for k in (res.history[-1] if res.history else {}) if k.startswith("objective/")
                 and k not in keys and k not in DEFAULT_SUMMARY_SKIP]
        row: dict[str, Any] = {"beta": beta, "updates": len(res.history)}
        row.update({k: res.final(k, last) for k in [*keys, *extra]})
        row["stopped"] = res.stopped or ""
        rows.append(row)
    return pd.DataFrame(rows)


SWEEP_POLICIES = "ppo_sweep"  # under checkpoints/: the beta sweep's final policies, one folder per beta


def sweep_policy_dir(paths: Paths, beta: float) -> Path:
    """Where :func:`save_beta_sweep` keeps the final policy of the run at ``beta``: ``checkpoints/ppo_sweep/beta_<beta>``."""
    return paths.checkpoint(SWEEP_POLICIES) / f"beta_{beta:g}"


def save_beta_sweep(results: Mapping[float, Any], paths: Paths, tokenizer: Any = None) -> Path:
    """Save a PPO beta sweep's logs (``{beta: PPOResult or list of log records}``, e.g. from
    :func:`beta_sweep`) as ``results/ppo_beta_sweep.jsonl`` -- one record per (beta, update),
    with a ``beta`` field -- where :func:`load_ppo_logs` (notebook 06's proxy-vs-gold plot) finds it. Each run's
    final policy, where it was kept (``beta_sweep(..., keep_policies=True)``), goes to :func:`sweep_policy_dir`
    with ``tokenizer`` (``save_pretrained``, atomically; LoRA merged first), for notebook 07's frontier."""
    records = []
    for beta, res in results.items():
        history = res if isinstance(res, list | tuple) else res.history
        records += [{"beta": float(beta), **r} for r in history]
        policy = getattr(res, "policy", None)
        if policy is not None:
            plain = copy.deepcopy(policy).merge_and_unload() if is_peft(policy) else policy

            def write(tmp: Path, model: Any = plain) -> None:
                with quiet_transformers():
                    model.save_pretrained(tmp)
                    if tokenizer is not None:
                        tokenizer.save_pretrained(tmp)

            atomic_dir(sweep_policy_dir(paths, float(beta)), write)
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


# =====================================================================================================
# Plots
# =====================================================================================================
def _label_panel(ax: plt.Axes, key: str) -> None:
    """Title ``ax`` in words (:data:`METRIC_LABELS`) above the TRL ``key`` in small grey; y label = the unit."""
    words, unit = METRIC_LABELS.get(key, (key, ""))
    ax.set_title(words, fontsize=9, pad=13 if words != key else None)
    if words != key:
        ax.text(0.5, 1.02, key, transform=ax.transAxes, ha="center", va="bottom", fontsize=7, color="grey")
    ax.set(xlabel="PPO update", ylabel=unit)
    ax.grid(alpha=0.3)


def plot_history(history: Sequence[Mapping[str, Any]], keys: Sequence[str] = DEFAULT_PLOT_KEYS,
                 ncols: int = 3, title: str = "") -> plt.Figure:
    """One small panel per metric over the update step, titled in words, long series smoothed."""
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in history)] or list(keys[:1])
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.9 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        xs, ys = series(history, "step", key)
        if xs:
            plot_series(ax, xs, ys, color(0))
        _label_panel(ax, key)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_beta_sweep(results: Mapping[float, ppo.PPOResult],
                    keys: Sequence[str] = ("objective/scores", "objective/gold", "objective/kl"),
                    title: str = "") -> plt.Figure:
    """One panel per metric, one colour per beta (e.g. proxy reward up, gold down, KL up as beta -> 0)."""
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for res in results.values() for r in res.history)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)) + 1.2, 3.3), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for i, beta in enumerate(sorted(results)):
            xs, ys = series(results[beta].history, "step", key)
            if xs:
                plot_series(ax, xs, ys, color(i), f"β = {beta:g}")
        _label_panel(ax, key)
    if keys:
        legend_outside(axes.flat[-1], title="KL coefficient")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_runs(runs: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str], title: str = "",
              legend_title: str = "run") -> plt.Figure:
    """One panel per metric (titled in words, :data:`METRIC_LABELS`), one colour per run (``{label: log
    records}``, e.g. a short run and the first updates of the course's main run): the comparisons of the
    exercises. Keys no run logged are left out."""
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for log in runs.values() for r in log)] or list(keys[:1])
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys) + 1.2, 3.3), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for i, (label, log) in enumerate(runs.items()):
            xs, ys = series(log, "step", key)
            if xs:
                plot_series(ax, xs, ys, color(i), label)
        _label_panel(ax, key)
    labelled = {}  # every run once, though a run may be missing from some panels
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    legend_outside(axes.flat[-1], list(labelled.values()), list(labelled), title=legend_title)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def start_and_end(runs: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str], last: int = 4) -> pd.DataFrame:
    """Where each run (``{label: log records}``) started and ended: for each of ``keys``, its value at the first
    update (the starting policy's own rollout) and its mean over the last ``last`` updates. Rows
    ``(label, "update 1")`` and ``(label, "last <last> updates")``, one column per key."""
    import pandas as pd

    rows = {}
    for label, log in runs.items():
        frame = pd.DataFrame(list(log)).reindex(columns=list(keys))
        rows[(label, "update 1")] = frame.iloc[0]
        rows[(label, f"last {last} updates")] = frame.tail(last).mean()
    return pd.DataFrame(rows).T


def replay_kl_controller(kls: Sequence[float], cfg: PPOConfig, episodes: int | None = None) -> list[float]:
    """The beta of each update (as logged, ``objective/beta``: the value the update's rewards used) that the KL
    controller of ``cfg`` (:func:`~rlhf_helpers.ppo.make_kl_controller`: Ziegler et al.'s when ``cfg.adaptive_kl``)
    picks for the measured ``kls`` (``objective/kl``, one per update), each update counting ``episodes`` answers
    (default ``cfg.batch_size``). Fed a run's own KLs it gives back its logged betas; fed another horizon or
    target, it shows how that controller would have moved beta for the same KLs (without the feedback: a
    smaller beta would have let the KL grow faster)."""
    ctl = ppo.make_kl_controller(cfg)
    betas = []
    for kl in kls:
        betas.append(ctl.value)
        ctl.update(float(kl), episodes or cfg.batch_size)
    return betas


# =====================================================================================================
# The course's stages for PPO
# =====================================================================================================
@dataclass
class PPOStages:
    """What PPO needs from the earlier notebooks."""

    policy: Any
    ref_policy: Any
    tokenizer: Any
    reward_source: Any
    prompts: list[str]
    cfg: PPOConfig
    out_dir: Path
    length_report: str = ""  # the data's answer lengths and the rollout length chosen (fit_response_length)
    starts_from: str | None = None  # weights digest of the SFT policy and reward model (see Checkpoint)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`train_ppo`."""
        return {"policy": self.policy, "ref_policy": self.ref_policy, "tokenizer": self.tokenizer,
                "reward_source": self.reward_source, "prompts": self.prompts, "cfg": self.cfg,
                "out_dir": self.out_dir, "starts_from": self.starts_from}

    def short_run(self, cfg: PPOConfig, out_dir: str | Path, policy: Any = None, reward_source: Any = None,
                  prompts: Sequence[str] | None = None,
                  extra_metrics: Mapping[str, ppo.ExtraMetric] | None = None) -> ppo.PPOResult:
        """An exercise's run (:func:`train_ppo`): a copy of ``policy`` (default: the SFT policy, never changed)
        trained with ``cfg`` against ``reward_source`` (default: the course's) on ``prompts`` (default: all),
        with this frozen reference; checkpointed in ``out_dir`` and started over there (no resume: the run shown
        is always the one the settings give), without live plot, printed samples or progress bar."""
        return train_ppo(copy.deepcopy(self.policy if policy is None else policy), self.ref_policy, self.tokenizer,
                         self.reward_source if reward_source is None else reward_source,
                         self.prompts if prompts is None else prompts, cfg, out_dir=out_dir, callbacks=[],
                         resume=False, extra_metrics=extra_metrics, progress=False)


def load_course_stages(profile: Profile, reward_source: Any | None = None) -> PPOStages:
    """Policy = the ``sft_full`` checkpoint (float32: accelerate handles mixed precision), reference = a
    frozen copy of it, reward = ``reward.load_reward_source(profile)`` unless given, prompts = the unique
    preference-train prompts of ``data_prep.load_prepared(profile)``; out_dir = ``checkpoints/ppo``, resumed only
    when it started from these weights (of the SFT policy, and of the reward model unless one is given)."""
    sft_dir = profile.paths.require("sft_full")
    policy, tokenizer = load_model(sft_dir, "float32")
    if reward_source is None:
        from . import reward

        reward_source = reward.load_reward_source(profile)
        starts_from = weights_digest(sft_dir, profile.paths.require("reward"))
    else:
        starts_from = weights_digest(sft_dir) + f"+{getattr(reward_source, 'name', type(reward_source).__name__)}"
    prep = data_prep.load_prepared(profile)
    cfg, report = rollout_config(profile.ppo, tokenizer, prep)
    return PPOStages(policy, frozen_copy(policy), tokenizer, reward_source, data_prep.rl_prompts(prep), cfg,
                     profile.paths.checkpoint("ppo"), report, starts_from)


def rollout_config(cfg: PPOConfig, tokenizer: Any, prep: data_prep.PreparedData) -> tuple[PPOConfig, str]:
    """:func:`fit_response_length` on the chosen answers of ``prep``'s preference training split, in ``tokenizer``'s
    tokens (EOS included): PPO's rollout settings, and notebook 07's answer budget for RLOO and GRPO."""
    lengths = np.array([len(ids) + 1 for ids in tokenizer(list(prep.preferences["train"]["chosen"]),
                                                           add_special_tokens=False)["input_ids"]])
    return fit_response_length(cfg, lengths)


def fit_response_length(cfg: PPOConfig, lengths: np.ndarray, multiple: int = 8) -> tuple[PPOConfig, str]:
    """``(cfg, report)`` for answers of ``lengths`` tokens (EOS included): with ``cfg.fit_response_length``, the
    rollout length becomes their 95th percentile rounded up to ``multiple``, at most ``cfg.response_length``; where
    the length left covers fewer than 95% of the answers the missing-EOS penalty is turned off (it would punish
    the data's normal answers and teach truncation). Without it ``cfg`` is kept; the report says what it covers."""
    if len(lengths) == 0:
        raise ValueError("fit_response_length: no answer lengths (empty preference training split)")
    p50, p95 = np.percentile(lengths, [50, 95])
    head = f"chosen answers: median {p50:.0f} tokens, 95th percentile {p95:.0f} (n = {len(lengths):,})"
    if cfg.fit_response_length:
        length = min(cfg.response_length, multiple * math.ceil(p95 / multiple))
        covered = float((lengths <= length).mean())
        penalty = cfg.missing_eos_penalty if covered >= 0.95 else None
        cfg = dataclasses.replace(cfg, response_length=length, missing_eos_penalty=penalty, fit_response_length=False)
        why = "" if covered >= 0.95 else (f"; missing-EOS penalty off: the cap leaves {1 - covered:.0%} of the "
                                          "answers unfinished, and the penalty would teach the policy to cut them")
        return cfg, f"{head}; response_length fitted: {length} tokens, covers {covered:.0%}{why}"
    covered = float((lengths <= cfg.response_length).mean())
    return cfg, f"{head}; response_length = {cfg.response_length} (set), covers {covered:.0%}"

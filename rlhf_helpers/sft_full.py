"""Stage 1 of RLHF: supervised fine-tuning (SFT) with TRL's ``SFTTrainer`` -- full SFT (notebook 02) and what
both SFT notebooks share (notebook 03's QLoRA builds on it: :mod:`rlhf_helpers.sft_qlora`).

Notebook 02 uses :func:`train_full` (every weight of the profile's base model trains; saved to checkpoint
``sft_full``), :func:`plot_losses`, :func:`heldout_answers` and :func:`save_report`; its exercises
:func:`training_kwargs`. Notebook 03 uses :func:`read_history`, :func:`eval_curves`, :func:`plot_losses`,
:func:`load_sft`, :func:`heldout_answers` and :func:`save_report` from here. The later stages start from
:func:`load_sft` (reward model, PPO, evaluation).

The loss is the next-token cross-entropy **on the response only**. The data go to TRL in its conversational
form (``messages`` = user prompt + assistant response) with ``assistant_only_loss=True``: the course's chat
template (:data:`rlhf_helpers.core.chat.CHAT_TEMPLATE`) wraps ``" " + response + eos`` in ``{% generation %}``, so
TRL's labels are ``-100`` on the ``"\\n\\nHuman: ...\\n\\nAssistant:"`` tokens and on padding, and the real token
ids on the response and its eos (the model learns to stop). Why not TRL's ``completion_only_loss`` on
prompt/completion pairs: it gives the same mask with this template, but the assistant mask comes from the very
template that formats the prompts at generation time, so training and inference cannot drift apart.

Each run (:func:`train_and_save`, shared by full SFT and QLoRA) saves to a temporary directory next to
``profile.paths.checkpoint(stage)`` and renames it into place at the end (model + tokenizer via
``save_pretrained``, ``log_history.json``, ``train_info.json``; QLoRA also ``merged/``): a half-finished run never
looks like a finished one, and no intermediate trainer checkpoints are written (``save_strategy="no"``).
Evaluation on the held-out prompts (ROUGE against the references) is here too: :func:`heldout_answers`,
:func:`save_report` (one row of notebook 03's comparison table per model).

Measurements (columns of the comparison table):

* *trainable / total parameters* -- :func:`rlhf_helpers.core.loading.parameter_counts` (4-bit weights at their
  logical size); *weights MB* -- :func:`rlhf_helpers.core.measure.weights_mb`: bytes of parameters + buffers as stored (4-bit
  packed weights and their quantization constants included).
* *peak memory* -- :class:`rlhf_helpers.core.measure.PeakMemory`: on CUDA ``torch.cuda.max_memory_allocated`` during ``train()``
  (every live tensor: weights, gradients, optimizer states, activations); on CPU the growth of the process's
  resident set size (RSS) during ``train()``, sampled every 5 ms by a background thread (psutil): gradients,
  optimizer states and activations, *not* the weights loaded before. Coarse on CPU -- the allocator keeps
  freed memory, so memory reused from before ``train()`` does not show up as growth.
* *seconds per step* -- mean wall time of an optimizer step (forward + backward + update), evaluation
  excluded, the first step (warm-up) left out.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core import artifacts, base_model, chat, distributed, loading
from .core.artifacts import LOG_HISTORY, METRICS, TRAIN_INFO
from .core.config import Profile, TrainSchedule
from .core.measure import PeakMemory, weights_mb

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset
    from matplotlib.figure import Figure
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .data_prep import PreparedData

STAGES = ("sft_full", "sft_qlora")
MERGED = "merged"  # sft_qlora's full-precision model with the adapters merged in (what the later stages load)

# peft (prepare_model_for_kbit_training, PeftModel.from_pretrained) reads transformers 5's deprecated
# `is_gradient_checkpointing`; the FutureWarning is about peft's code, not the learner's: hide that one message.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)


# ============================================================================================= data
def to_conversational(ds: Dataset) -> Dataset:
    """``prompt``/``response`` records -> TRL's conversational format: a single ``messages`` column.

    The other columns are dropped: a ``prompt`` column would make TRL treat the data as prompt-completion.
    """
    missing = [c for c in ("prompt", "response") if c not in ds.column_names]
    if missing:
        raise ValueError(f"SFT data needs prompt/response columns; missing {missing} (have {ds.column_names})")
    return ds.map(lambda r: {"messages": chat.messages(r["prompt"], r["response"])},
                  remove_columns=ds.column_names)


# =================================================================================== training arguments
def training_kwargs(cfg: TrainSchedule, output_dir: str | Path, progress: bool = True,
                    model_type: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``trl.SFTConfig`` for one run (see :func:`build_training_args`): the course's shared
    trainer settings (:func:`rlhf_helpers.core.loading.trainer_kwargs`: schedule, precision, optimizer, no
    intermediate checkpoints) plus the response-only loss (``assistant_only_loss``) and a periodic eval loss."""
    return {**loading.trainer_kwargs(cfg, output_dir, progress, model_type), "assistant_only_loss": True,
            "eval_strategy": "steps"}


def build_training_args(cfg: TrainSchedule, output_dir: str | Path, progress: bool = True,
                        model_type: str | None = None, overrides: Mapping[str, Any] | None = None):
    """``trl.SFTConfig`` (TRL's TrainingArguments) for one run, from :func:`training_kwargs` updated with
    ``overrides`` (e.g. ``{"assistant_only_loss": False}``: the loss on the whole sequence, notebook 02's exercise 1)."""
    from trl import SFTConfig as TrlSFTConfig

    return TrlSFTConfig(**{**training_kwargs(cfg, output_dir, progress, model_type), **(overrides or {})})


# ============================================================================================ measuring
def _step_timer():
    """A ``TrainerCallback`` recording the wall time of every optimizer step in ``.seconds``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    return StepTimer()


# ============================================================================================== training
@dataclass
class SFTRun:
    """One finished SFT run: the trained model (in eval mode), its tokenizer, the trainer's log history
    (training ``loss`` every ``logging_steps``, ``eval_loss`` at step 0 and every ``eval_steps``), the
    measurements (``info``) and the checkpoint directory it was saved to."""

    stage: str
    model: Any
    tokenizer: Any
    history: list[dict[str, float]]
    info: dict[str, Any]
    path: Path

    @property
    def eval_losses(self) -> list[tuple[int, float]]:
        """``[(step, eval_loss), ...]`` including step 0 (the model before training)."""
        return [(int(r["step"]), float(r["eval_loss"])) for r in self.history if "eval_loss" in r]


def _course_base(profile: Profile) -> Path | None:
    """An exercise's profile (``Paths.reads_from``: :func:`rlhf_helpers.notebook_setup.exercise_profile`) with no
    tiny base of its own: the course's base, if it was built with the same ModelConfig and seed (else ``None``:
    the exercise builds its own, under its own root, never over the course's)."""
    import dataclasses

    reads_from = profile.paths.reads_from
    if reads_from is None or profile.paths.checkpoint("base").exists():
        return None
    course = reads_from / profile.paths.checkpoint("base").relative_to(profile.paths.root)
    try:
        info = base_model.read_base_info(course)
    except (OSError, ValueError):
        return None
    same = info.get("model_config") == dataclasses.asdict(profile.model) and info.get("seed") == profile.seed
    return course if same else None


def base_source(profile: Profile) -> str | Path:
    """Where the profile's base model comes from: the tiny base's directory (built if missing; an exercise's
    profile reads the course's, :func:`_course_base`) or a Hub name."""
    if profile.model.name == "tiny":  # several processes: the main one builds it, the others then find it
        course = _course_base(profile)
        if course is not None:
            return course
        distributed.on_main_process(lambda: base_model.build_tiny_base(profile))
        return base_model.build_tiny_base(profile)
    return profile.model.name


def build_trainer(model: Any, tokenizer: Any, cfg: TrainSchedule, train: Dataset, eval: Dataset,
                  output_dir: str | Path, peft_config: Any = None, callbacks: Sequence[Any] = (),
                  progress: bool = True, overrides: Mapping[str, Any] | None = None):
    """TRL's ``SFTTrainer`` on ``prompt``/``response`` datasets with the loss on the response only (unless
    ``overrides`` of the training arguments say otherwise: :func:`build_training_args`).

    With ``peft_config`` the trainer wraps ``model`` in LoRA adapters (``trainer.model`` is the ``PeftModel``).
    """
    from trl import SFTTrainer

    args = build_training_args(cfg, output_dir, progress, model.config.model_type, overrides)
    with loading.quiet_datasets():
        return SFTTrainer(model=model, args=args, train_dataset=to_conversational(train),
                          eval_dataset=to_conversational(eval), processing_class=tokenizer,
                          peft_config=peft_config, callbacks=list(callbacks))


def train_and_save(
    stage: str,
    model: Any,
    tokenizer: Any,
    cfg: TrainSchedule,
    profile: Profile,
    prep: PreparedData,
    peft_config: Any = None,
    prepare: Callable[[Any], None] | None = None,
    extra: Callable[[Any, Path], dict[str, Any]] | None = None,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> SFTRun:
    """Train with SFTTrainer, evaluate before/during/after, save atomically to the stage's checkpoint.

    The run of both SFT notebooks. ``prepare(trainer)`` runs as soon as the trainer is built, before its optimizer
    exists (QLoRA: adapters kept in float32); ``extra(trained_model, tmp)`` runs after the model is saved to ``tmp``
    and its dict joins ``train_info.json`` (QLoRA: the merged model). ``overrides`` change single training
    arguments (:func:`build_training_args`); they are recorded in ``train_info.json``.
    """
    target = profile.paths.checkpoint(stage)
    timer = _step_timer()
    source = model.name_or_path

    def write(tmp: Path) -> None:
        nonlocal trainer_model, history, info
        trainer = build_trainer(model, tokenizer, cfg, prep.sft["train"], prep.sft["eval"], tmp / "_trainer",
                                peft_config, [timer], progress, overrides)
        if prepare is not None:
            prepare(trainer)
        args = trainer.args
        trainer_model = trainer.model
        trainable, total = loading.parameter_counts(trainer_model)
        initial = trainer.evaluate()  # the model before training: step 0 of the eval curve
        with PeakMemory() as memory:
            trainer.train()
        if trainer.state.global_step % cfg.eval_steps:  # make the last point of the eval curve the final model
            trainer.evaluate()
        history = [{"step": 0, **initial}] + list(trainer.state.log_history)
        steps = timer.seconds[1:] or timer.seconds
        evals = [r["eval_loss"] for r in history if "eval_loss" in r]
        info = {
            "stage": stage,
            "base": str(source),
            "trainable_params": trainable,
            "total_params": total,
            "weights_mb": weights_mb(trainer_model),
            "peak_memory_mb": memory.peak_mb,
            "memory_measure": memory.measure,
            "seconds_per_step": sum(steps) / max(1, len(steps)),
            "steps": trainer.state.global_step,
            "train_seconds": sum(timer.seconds),
            "initial_eval_loss": evals[0],
            "eval_loss": evals[-1],
            "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
            "optim": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
            "config": {k: v for k, v in vars(cfg).items()},
        }
        if overrides:
            info["overrides"] = dict(overrides)
        trainer_model.eval()
        shutil.rmtree(tmp / "_trainer", ignore_errors=True)
        if not distributed.is_main_process():  # several processes: the main one saves (artifacts.atomic_dir)
            return
        with loading.quiet_transformers():
            trainer_model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        if extra is not None:
            info.update(extra(trainer_model, tmp))
        artifacts.write_json(tmp / LOG_HISTORY, history)
        artifacts.write_json(tmp / TRAIN_INFO, info)  # written last

    trainer_model: Any = None
    history: list[dict[str, float]] = []
    info: dict[str, Any] = {}
    artifacts.atomic_dir(target, write, collective=True)  # every process trains; the main one saves
    return SFTRun(stage, trainer_model, tokenizer, history, info, target)


def train_full(profile: Profile, prep: PreparedData | None = None, progress: bool = True,
               overrides: Mapping[str, Any] | None = None) -> SFTRun:
    """Full SFT of the profile's base model on ``prep.sft`` (``profile.sft``); saved to checkpoint ``sft_full``.

    The weights train in float32 (mixed precision on a GPU keeps a float32 master copy: fp16 weights could not
    be unscaled by the fp16 loss scaler). ``overrides``: single training arguments changed
    (:func:`build_training_args`), e.g. ``{"assistant_only_loss": False}`` trains on the whole sequence.
    """
    from .data_prep import load_prepared

    prep = prep if prep is not None else load_prepared(profile)
    source = base_source(profile)
    model, tokenizer = loading.load_model(source, "float32")
    return train_and_save("sft_full", model, tokenizer, profile.sft, profile, prep, progress=progress,
                          overrides=overrides)


# ============================================================================================== loading
def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def load_sft(profile: Profile, stage: str = "sft_full") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A trained SFT policy as a plain causal LM (eval mode) + tokenizer; ``sft_qlora`` loads ``merged/``.

    This is what the later stages start from (reward model, PPO, evaluation)."""
    _check_stage(stage)
    path = profile.paths.finished(stage)
    return loading.load_model(path / MERGED if stage == "sft_qlora" else path, profile)


def read_history(profile: Profile, stage: str) -> list[dict[str, float]]:
    """The saved trainer log history of a finished run."""
    _check_stage(stage)
    return artifacts.read_json(profile.paths.finished(stage) / LOG_HISTORY)


# ================================================================================================ plots
def plot_losses(history: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """Training loss (every ``logging_steps``) and eval loss (step 0 = before training) over steps."""
    from .core.plots import plot_curves

    return plot_curves(history, ["loss", "eval_loss"], title=title, ylabel="cross-entropy per response token")


def eval_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], title: str = "eval loss") -> Figure:
    """The eval-loss curves of several runs on one plot: ``{"full SFT": history, "QLoRA": history}``."""
    from .core.plots import plot_curves

    # one record per eval point, its loss under the run's name: plot_curves draws one line per name
    records = [{"step": r["step"], name: r["eval_loss"]} for name, history in histories.items()
               for r in history if "eval_loss" in r]
    return plot_curves(records, list(histories), title=title, ylabel="eval cross-entropy per response token")


# =========================================================================================== evaluation
def heldout_answers(policies: Mapping[str, Any], tokenizer: Any, heldout: Dataset, profile: Profile
                    ) -> dict[str, list[str]]:
    """Greedy answers of each policy to every held-out prompt (``profile.generation``): ``{name: [answer]}``."""
    from .core.generation import generate

    prompts = list(heldout["prompt"])
    return {name: generate(model, tokenizer, prompts, profile.generation, desc=f"answers of {name}")
            for name, model in policies.items()}


def response_eval_loss(model: Any, tokenizer: Any, cfg: TrainSchedule, eval_ds: Dataset) -> float:
    """The SFT objective's eval loss -- mean cross-entropy on the response tokens (TRL's ``assistant_only_loss``,
    prompt and padding masked) -- of any causal LM on ``eval_ds`` (``prompt``/``response`` records), computed as
    :func:`train_and_save` computes a run's ``eval_loss``: a model trained with another loss (notebook 02's
    exercise 1: on the whole sequence) is compared on the same footing. Nothing is trained or saved."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, tokenizer, cfg, eval_ds, eval_ds, tmp, progress=False)
        return float(trainer.evaluate()["eval_loss"])


def _rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    from .core.text_metrics import rouge_scores

    return rouge_scores(predictions, references)


def _display_source(source: str) -> str:
    """A Hub name as it is; a local model directory as ``"<name> (local)"``."""
    path = Path(source)
    return f"{path.name} (local)" if path.is_dir() else source


def _row(info: Mapping[str, Any] | None, rouge: Mapping[str, float], eval_loss: float, gold: float,
         total: int | None = None, weights: float | None = None, source: str = "") -> dict[str, Any]:
    nan = float("nan")
    trainable = info["trainable_params"] if info else 0
    total = info["total_params"] if info else total
    return {
        "starts from": _display_source(info["base"] if info else source),
        "trainable params": trainable,
        "trainable %": 100.0 * trainable / total if total else nan,
        "total params": total,
        "weights MB": info["weights_mb"] if info else weights,
        "peak memory MB": info["peak_memory_mb"] if info else nan,
        "memory measure": info["memory_measure"] if info else "-",
        "s / step": info["seconds_per_step"] if info else nan,
        "step-0 eval loss": info["initial_eval_loss"] if info else eval_loss,
        "eval loss": eval_loss,
        "ROUGE-1": rouge["rouge1"],
        "ROUGE-L": rouge["rougeL"],
        "gold": gold,
    }


def save_report(profile: Profile, run: SFTRun, answers: Mapping[str, list[str]], heldout: Dataset,
                base_model: Any = None) -> pd.DataFrame:
    """Score each policy's held-out answers (ROUGE against the references, mean score of the profile's judge), build
    its row of the comparison table and save rows + answers as ``metrics.json`` in the run's checkpoint; return the
    rows as a table.

    ``answers`` holds ``run.stage`` and optionally ``"base"`` (then pass ``base_model``: its eval loss is step 0
    of ``run``'s eval curve, its size from the model). Notebook 03 assembles the full table from these files
    (:func:`rlhf_helpers.sft_qlora.comparison_table`) without retraining anything.
    """
    import pandas as pd

    from .judge import load_judge

    references, prompts = list(heldout["reference"]), list(heldout["prompt"])
    judge = load_judge(profile)
    rows: dict[str, dict[str, Any]] = {}
    for name, texts in answers.items():
        rouge = _rouge(list(texts), references)
        gold = float(judge.score(prompts, list(texts)).mean())
        if name == run.stage:
            rows[name] = _row(run.info, rouge, run.info["eval_loss"], gold)
        elif name == "base":
            if base_model is None:
                raise ValueError("answers has 'base': pass base_model too")
            _, total = loading.parameter_counts(base_model)
            rows[name] = _row(None, rouge, run.info["initial_eval_loss"], gold, total, weights_mb(base_model),
                              run.info["base"])
        else:
            raise ValueError(f"answers may hold 'base' and {run.stage!r}, got {name!r}")
    report = {"rows": rows, "prompts": list(heldout["prompt"]), "references": references,
              "answers": {k: list(v) for k, v in answers.items()}}
    artifacts.write_json(run.path / METRICS, report)
    return pd.DataFrame.from_dict(rows, orient="index")


__all__ = [
    "MERGED", "STAGES", "SFTRun", "base_source", "build_trainer", "build_training_args", "eval_curves",
    "heldout_answers", "load_sft", "plot_losses", "read_history", "response_eval_loss", "save_report",
    "to_conversational", "train_and_save", "train_full", "training_kwargs",
]

"""Stage 1 of RLHF: supervised fine-tuning (SFT) with TRL's ``SFTTrainer``, in full and as QLoRA.

* :func:`train_full` -- every weight of the profile's base model trains (notebook 02).
* :func:`train_qlora` -- the base is frozen and quantized to 4 bits (bitsandbytes nf4, double quantization);
  only LoRA adapters (PEFT) train (notebook 03). Where bitsandbytes cannot load 4-bit, plain LoRA on the
  full-precision base, with a printed warning (:func:`rlhf_helpers.loading.load_4bit` does the fallback).

The loss is the next-token cross-entropy **on the response only**. The data go to TRL in its conversational
form (``messages`` = user prompt + assistant response) with ``assistant_only_loss=True``: the course's chat
template (:data:`rlhf_helpers.chat.CHAT_TEMPLATE`) wraps ``" " + response + eos`` in ``{% generation %}``, so
TRL's labels are ``-100`` on the ``"\\n\\nHuman: ...\\n\\nAssistant:"`` tokens and on padding, and the real token
ids on the response and its eos (the model learns to stop). Why not TRL's ``completion_only_loss`` on
prompt/completion pairs: it gives the same mask with this template, but the assistant mask comes from the very
template that formats the prompts at generation time, so training and inference cannot drift apart.

Each run saves to a temporary directory next to ``profile.paths.checkpoint(stage)`` and renames it into place
at the end (model + tokenizer via ``save_pretrained``, ``log_history.json``, ``train_info.json``; QLoRA also
``merged/``): a half-finished run never looks like a finished one, and no intermediate trainer checkpoints
are written (``save_strategy="no"``). Evaluation on the held-out prompts (ROUGE against the references) and
the comparison table of notebook 03 are here too: :func:`heldout_answers`, :func:`save_report`,
:func:`comparison_table`.

Measurements (columns of the comparison table):

* *trainable / total parameters* -- :func:`rlhf_helpers.core.loading.parameter_counts` (4-bit weights at their
  logical size); *weights MB* -- ``get_memory_footprint()``: bytes of parameters + buffers as stored (4-bit
  packed weights and their quantization constants included).
* *peak memory* -- :class:`PeakMemory`: on CUDA ``torch.cuda.max_memory_allocated`` during ``train()``
  (every live tensor: weights, gradients, optimizer states, activations); on CPU the growth of the process's
  resident set size (RSS) during ``train()``, sampled every 5 ms by a background thread (psutil): gradients,
  optimizer states and activations, *not* the weights loaded before. Coarse on CPU -- the allocator keeps
  freed memory, so memory reused from before ``train()`` does not show up as growth.
* *seconds per step* -- mean wall time of an optimizer step (forward + backward + update), evaluation
  excluded, the first step (warm-up) left out.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core import artifacts, base_model, chat, loading
from .core.artifacts import MissingStageError
from .core.config import Profile, QLoRAConfig, SFTConfig

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset
    from matplotlib.figure import Figure
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .data_prep import PreparedData

STAGES = ("sft_full", "sft_qlora")
LOG_HISTORY = "log_history.json"
TRAIN_INFO = "train_info.json"
METRICS = "metrics.json"
MERGED = "merged"
PAGED_OR_8BIT = ("paged_", "_8bit", "bnb")  # optimizers of bitsandbytes that need a CUDA GPU

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
def optimizer_name(name: str, cuda: bool) -> str:
    """``name``, unless it is a bitsandbytes paged/8-bit optimizer and there is no CUDA GPU: then AdamW."""
    if not cuda and any(tag in name for tag in PAGED_OR_8BIT):
        print(f"Optimizer {name!r} needs a CUDA GPU: using 'adamw_torch' instead.")
        return "adamw_torch"
    return name


def training_kwargs(cfg: SFTConfig | QLoRAConfig, output_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``trl.SFTConfig`` for one run (see :func:`build_training_args`).

    Response-only loss (``assistant_only_loss``), periodic eval loss, no intermediate checkpoints
    (``save_strategy="no"``: the final model is saved by :func:`train_full` / :func:`train_qlora`), no
    reporting to wandb & co, no dataloader workers, gradient checkpointing as configured (TRL's default is on),
    mixed precision and optimizer per the hardware (:func:`loading.precision().trainer_flags`, :func:`optimizer_name`).
    """
    flags = loading.precision().trainer_flags()
    cuda = not flags["use_cpu"]
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a fraction of max_steps (transformers 5)
        weight_decay=cfg.weight_decay,
        optim=optimizer_name(cfg.optim, cuda),
        max_length=cfg.max_length,
        assistant_only_loss=True,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not progress,
        **flags,
    )
    if cfg.gradient_checkpointing:
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    return kwargs


def build_training_args(cfg: SFTConfig | QLoRAConfig, output_dir: str | Path, progress: bool = True):
    """``trl.SFTConfig`` (TRL's TrainingArguments) for one run, from :func:`training_kwargs`."""
    from trl import SFTConfig as TrlSFTConfig

    return TrlSFTConfig(**training_kwargs(cfg, output_dir, progress))


# ============================================================================================ measuring
class PeakMemory:
    """Peak memory while the ``with`` block runs, in MB (``.peak_mb``); ``.measure`` says what was measured.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` -- the peak of all live tensors
    (weights included). CPU: peak growth of the process's resident set size (RSS) over its value at entry,
    sampled every ``interval`` seconds by a daemon thread (psutil) -- training state and activations, not the
    weights loaded before; coarse (memory the allocator reuses does not show up as growth).
    """

    def __init__(self, interval: float = 0.005, cuda: bool | None = None):
        import torch

        self.interval = interval
        self.cuda = torch.cuda.is_available() if cuda is None else cuda
        self.peak_mb = float("nan")
        self.measure = "CUDA max allocated" if self.cuda else "CPU RSS growth"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, process: Any, start: int) -> None:
        peak = start
        while not self._stop.is_set():
            peak = max(peak, process.memory_info().rss)
            self._stop.wait(self.interval)
        peak = max(peak, process.memory_info().rss)
        self.peak_mb = (peak - start) / 2**20

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        try:
            import psutil
        except ImportError:  # psutil comes with accelerate; without it there is no cheap RSS reading
            self.measure = "unavailable (install psutil)"
            return self
        process = psutil.Process()
        self._thread = threading.Thread(target=self._sample, args=(process, process.memory_info().rss), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()


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


def weights_mb(model: Any) -> float:
    """Bytes of the model's parameters and buffers as stored (4-bit packing included), in MB."""
    seen: set[int] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
        state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit: absmax (+ nested constants)
        if state is not None:
            total += state.absmax.numel() * state.absmax.element_size()
            if getattr(state, "state2", None) is not None:
                total += state.state2.absmax.numel() * state.state2.absmax.element_size()
    return total / 2**20


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


def base_source(profile: Profile) -> str | Path:
    """Where the profile's base model comes from: the tiny base's directory (built if missing) or a Hub name."""
    if profile.model.name == "tiny":
        return base_model.build_tiny_base(profile)
    return profile.model.name


def qlora_source(profile: Profile) -> str | Path:
    """The model QLoRA quantizes: ``profile.qlora.base`` or else the profile's base model."""
    return profile.qlora.base or base_source(profile)


def _adapters_to_float32(model: Any) -> None:
    """TRL casts the adapters of a quantized model to bf16 (the QLoRA paper's choice on a bf16 GPU). Where the
    compute dtype is not bf16 (CPU float32, a T4's fp16 autocast) keep them in float32 instead: bf16 math is
    slow on CPU and its 8-bit mantissa rounds small updates away. Must run before the optimizer is built."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()


def build_trainer(model: Any, tokenizer: Any, cfg: SFTConfig | QLoRAConfig, train: Dataset, eval: Dataset,
                  output_dir: str | Path, peft_config: Any = None, callbacks: Sequence[Any] = (),
                  progress: bool = True):
    """TRL's ``SFTTrainer`` on ``prompt``/``response`` datasets with the loss on the response only.

    With ``peft_config`` the trainer wraps ``model`` in LoRA adapters (``trainer.model`` is the ``PeftModel``);
    on a 4-bit model the adapters are kept in float32 unless training in bf16 (:func:`_adapters_to_float32`).
    """
    from trl import SFTTrainer

    args = build_training_args(cfg, output_dir, progress)
    with loading.quiet_datasets():
        trainer = SFTTrainer(model=model, args=args, train_dataset=to_conversational(train),
                             eval_dataset=to_conversational(eval), processing_class=tokenizer,
                             peft_config=peft_config, callbacks=list(callbacks))
    if getattr(model, "is_loaded_in_4bit", False) and not args.bf16:
        _adapters_to_float32(trainer.model)
    return trainer


def _train(
    stage: str,
    model: Any,
    tokenizer: Any,
    cfg: SFTConfig | QLoRAConfig,
    profile: Profile,
    prep: PreparedData,
    peft_config: Any = None,
    extra: Callable[[Any, Path], dict[str, Any]] | None = None,
    progress: bool = True,
) -> SFTRun:
    """Train with SFTTrainer, evaluate before/during/after, save atomically to the stage's checkpoint."""
    target = profile.paths.checkpoint(stage)
    timer = _step_timer()
    source = model.name_or_path

    def write(tmp: Path) -> None:
        nonlocal trainer_model, history, info
        trainer = build_trainer(model, tokenizer, cfg, prep.sft["train"], prep.sft["eval"], tmp / "_trainer",
                                peft_config, [timer], progress)
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
        trainer_model.eval()
        shutil.rmtree(tmp / "_trainer", ignore_errors=True)
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
    artifacts.atomic_dir(target, write)
    return SFTRun(stage, trainer_model, tokenizer, history, info, target)


def train_full(profile: Profile, prep: PreparedData | None = None, progress: bool = True) -> SFTRun:
    """Full SFT of the profile's base model on ``prep.sft`` (``profile.sft``); saved to checkpoint ``sft_full``.

    The weights train in float32 (mixed precision on a GPU keeps a float32 master copy: fp16 weights could not
    be unscaled by the fp16 loss scaler).
    """
    from .data_prep import load_prepared

    prep = prep if prep is not None else load_prepared(profile)
    source = base_source(profile)
    tokenizer = loading.load_tokenizer(source)
    model = loading.load_causal_lm(source, "float32")
    loading.sync_special_tokens(model, tokenizer)
    return _train("sft_full", model, tokenizer, profile.sft, profile, prep, progress=progress)


def train_qlora(profile: Profile, prep: PreparedData | None = None, progress: bool = True) -> SFTRun:
    """QLoRA: the base (``profile.qlora.base`` or the profile's base) in 4-bit nf4, LoRA adapters on every
    linear layer (``profile.qlora``); saved to checkpoint ``sft_qlora`` -- the adapters, plus ``merged/``, a
    full-precision model with the adapters merged in (:func:`merge_adapters`) for the later stages.

    Falls back to plain LoRA on the full-precision base where bitsandbytes cannot load 4-bit (printed warning;
    ``run.info["quantized"]`` is False then).
    """
    from .data_prep import load_prepared

    cfg = profile.qlora
    prep = prep if prep is not None else load_prepared(profile)
    source = qlora_source(profile)
    tokenizer = loading.load_tokenizer(source)
    model = loading.load_4bit(source, cfg)
    loading.sync_special_tokens(model, tokenizer)
    quantized = bool(getattr(model, "is_loaded_in_4bit", False))
    if quantized:
        from peft import prepare_model_for_kbit_training

        # float32 norms/embeddings, input gradients; gradient checkpointing only if configured.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.load_in_4bit:
        print("QLoRA fell back to plain LoRA: the base stays in full precision (no 4-bit memory saving).")

    def merge(trained: Any, tmp: Path) -> dict[str, Any]:
        merged = merge_adapters(tmp, source, cfg, method="dequantized", device=loading.precision().device)
        with loading.quiet_transformers():
            merged.save_pretrained(tmp / MERGED)
            tokenizer.save_pretrained(tmp / MERGED)
        return {"quantized": quantized, "merge_method": "dequantized",
                "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha}

    return _train("sft_qlora", model, tokenizer, cfg, profile, prep, peft_config=loading.lora_config(cfg, model),
                  extra=merge, progress=progress)


# =========================================================================================== QLoRA export
def dequantized_base(source: str | Path, qlora_cfg: QLoRAConfig, dtype: Any = None, device: str = "cpu"):
    """The base in full precision whose quantized layers hold ``dequantize(quantize(W))`` -- exactly the weights
    the adapters saw during QLoRA training -- in the original architecture (GPT-2 keeps its Conv1D layers).

    nf4 quantization is deterministic, so quantizing the base again reproduces the training-time weights.
    Without 4-bit support (or ``load_in_4bit=False``) the plain base is returned: that is what LoRA trained on.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    dtype = dtype or torch.float32
    full = loading.load_causal_lm(source, dtype, device=device)
    quantized = loading.load_4bit(source, qlora_cfg, device=device) if qlora_cfg.load_in_4bit else None
    if quantized is None or not getattr(quantized, "is_loaded_in_4bit", False):
        return full
    bnb = loading.import_bitsandbytes()
    layers = dict(quantized.named_modules())
    with torch.no_grad():
        for name, module in full.named_modules():
            layer = layers.get(name)
            if isinstance(layer, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)  # [out, in]
                weight = weight.t() if isinstance(module, Conv1D) else weight  # Conv1D stores [in, out]
                module.weight.copy_(weight.to(dtype))
    del quantized
    return full


def merge_adapters(adapter_dir: str | Path, source: str | Path, qlora_cfg: QLoRAConfig,
                   method: str = "dequantized", dtype: Any = None, device: str = "cpu") -> PreTrainedModel:
    """A plain model with the LoRA update merged in: ``W_merged = W_base + (alpha / r) * B @ A``.

    Why not ``merge_and_unload()`` on the 4-bit training model: PEFT would dequantize each layer, add the
    update and *re-quantize* the sum to nf4 -- the result is a 4-bit model again (the later stages want to train
    a full-precision one), and rounding to nf4's 16 levels per block erases much of the small update ``B @ A``.
    So the base is reloaded in full precision and the update is added there. Which full-precision ``W_base``:

    * ``"dequantized"`` (default): ``dequantize(quantize(W))``, the weights the adapters were trained against
      (:func:`dequantized_base`). The merged model computes the same function as the 4-bit base + adapters.
    * ``"original"``: the original weights ``W``, as most tutorials do. Off from the trained model by the
      quantization error ``W - dequantize(quantize(W))``, which the adapters never saw.
    """
    import torch
    from peft import PeftConfig, PeftModel
    from transformers.pytorch_utils import Conv1D

    dtype = dtype or torch.float32
    if method == "dequantized":
        base = dequantized_base(source, qlora_cfg, dtype, device)
    elif method == "original":
        base = loading.load_causal_lm(source, dtype, device=device)
    else:
        raise ValueError(f"method must be 'dequantized' or 'original', got {method!r}")
    # Trained on Linear4bit layers (weight [out, in]); GPT-2's full-precision Conv1D stores [in, out]: say so.
    config = PeftConfig.from_pretrained(str(adapter_dir))
    config.fan_in_fan_out = any(isinstance(m, Conv1D) for m in base.modules())
    model = PeftModel.from_pretrained(base, str(adapter_dir), config=config).merge_and_unload()
    loading.set_causal_lm_loss(model)
    return model.eval()


# ============================================================================================== loading
def _require_finished(profile: Profile, stage: str) -> Path:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    path = profile.paths.require(stage)
    if not (path / TRAIN_INFO).exists():
        raise MissingStageError(f"Incomplete '{stage}' checkpoint at {path}: run its notebook again.")
    return path


def load_sft(profile: Profile, stage: str = "sft_full") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A trained SFT policy as a plain causal LM (eval mode) + tokenizer; ``sft_qlora`` loads ``merged/``.

    This is what the later stages start from (reward model, PPO, evaluation)."""
    path = _require_finished(profile, stage)
    path = path / MERGED if stage == "sft_qlora" else path
    tokenizer = loading.load_tokenizer(path)
    model = loading.load_causal_lm(path, profile)
    loading.sync_special_tokens(model, tokenizer)
    return model.eval(), tokenizer


def load_adapters(profile: Profile) -> tuple[Any, PreTrainedTokenizerBase]:
    """The QLoRA policy for inference as trained: the 4-bit base + the saved LoRA adapters (a ``PeftModel``)."""
    from peft import PeftModel

    path = _require_finished(profile, "sft_qlora")
    tokenizer = loading.load_tokenizer(path)
    base = loading.load_4bit(qlora_source(profile), profile.qlora)
    loading.sync_special_tokens(base, tokenizer)
    return PeftModel.from_pretrained(base, str(path)).eval(), tokenizer


def read_info(profile: Profile, stage: str) -> dict[str, Any]:
    """``train_info.json`` of a finished run."""
    return json.loads((_require_finished(profile, stage) / TRAIN_INFO).read_text())


def read_history(profile: Profile, stage: str) -> list[dict[str, float]]:
    """The saved trainer log history of a finished run."""
    return json.loads((_require_finished(profile, stage) / LOG_HISTORY).read_text())


# ============================================================================================ inspecting
def describe_layers(model: Any) -> pd.DataFrame:
    """Parameter tensors grouped by kind of layer, dtype and whether they train: which weights are 4-bit, which
    are LoRA adapters (``lora_A`` / ``lora_B``), what stays in full precision (embeddings, norms, biases)."""
    import pandas as pd

    rows: dict[tuple[str, str, str, bool], list[int]] = {}
    for name, p in model.named_parameters():
        module = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        kind = "LoRA adapter" if ".lora_" in name else type(module).__name__
        four_bit = p.__class__.__name__ == "Params4bit"
        dtype = "4-bit nf4 (packed uint8)" if four_bit else str(p.dtype).replace("torch.", "")
        n = math.prod(p.quant_state.shape) if getattr(p, "quant_state", None) is not None else p.numel()
        key = (kind, name.rsplit(".", 1)[-1], dtype, p.requires_grad)
        rows.setdefault(key, [0, 0])
        rows[key][0] += 1
        rows[key][1] += n
    table = pd.DataFrame([(*k, *v) for k, v in rows.items()],
                         columns=["layer", "tensor", "dtype", "trains", "tensors", "parameters"])
    return table.sort_values(["trains", "parameters"], ascending=False).reset_index(drop=True)


def logit_difference(a: Any, b: Any, tokenizer: Any, texts: Sequence[str]) -> float:
    """Max absolute difference of the next-token logits of models ``a`` and ``b`` over ``texts`` (padded)."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    mask = enc["attention_mask"].bool()
    with torch.no_grad():
        la = a(**enc.to(next(a.parameters()).device)).logits.float().cpu()
        lb = b(**enc.to(next(b.parameters()).device)).logits.float().cpu()
    return float((la - lb).abs()[mask].max())


def plot_losses(history: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """Training loss (every ``logging_steps``) and eval loss (step 0 = before training) over steps."""
    from .core.plots import plot_curves

    return plot_curves(history, ["loss", "eval_loss"], title=title, ylabel="cross-entropy per response token")


def eval_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], title: str = "eval loss") -> Figure:
    """The eval-loss curves of several runs on one plot: ``{"full SFT": history, "QLoRA": history}``."""
    from .core.plots import plot_curves

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


def _rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    from .core.text_metrics import rouge_scores

    return rouge_scores(predictions, references)


def _display_source(source: str) -> str:
    """A Hub name as it is; a local model directory as ``"<name> (local)"``."""
    path = Path(source)
    return f"{path.name} (local)" if path.is_dir() else source


def _row(info: Mapping[str, Any] | None, rouge: Mapping[str, float], eval_loss: float, total: int | None = None,
         weights: float | None = None, source: str = "") -> dict[str, Any]:
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
        "eval loss": eval_loss,
        "ROUGE-1": rouge["rouge1"],
        "ROUGE-L": rouge["rougeL"],
    }


def save_report(profile: Profile, run: SFTRun, answers: Mapping[str, list[str]], heldout: Dataset,
                base_model: Any = None) -> pd.DataFrame:
    """Score each policy's held-out answers (ROUGE against the references), build its row of the comparison
    table and save rows + answers as ``metrics.json`` in the run's checkpoint; return the rows as a table.

    ``answers`` holds ``run.stage`` and optionally ``"base"`` (then pass ``base_model``: its eval loss is step 0
    of ``run``'s eval curve, its size from the model). Notebook 03 assembles the full table from these files
    (:func:`comparison_table`) without retraining anything.
    """
    import pandas as pd

    references = list(heldout["reference"])
    rows: dict[str, dict[str, Any]] = {}
    for name, texts in answers.items():
        rouge = _rouge(list(texts), references)
        if name == run.stage:
            rows[name] = _row(run.info, rouge, run.info["eval_loss"])
        elif name == "base":
            if base_model is None:
                raise ValueError("answers has 'base': pass base_model too")
            _, total = loading.parameter_counts(base_model)
            rows[name] = _row(None, rouge, run.info["initial_eval_loss"], total, weights_mb(base_model),
                              run.info["base"])
        else:
            raise ValueError(f"answers may hold 'base' and {run.stage!r}, got {name!r}")
    report = {"rows": rows, "prompts": list(heldout["prompt"]), "references": references,
              "answers": {k: list(v) for k, v in answers.items()}}
    artifacts.write_json(run.path / METRICS, report)
    return pd.DataFrame.from_dict(rows, orient="index")


def _read_metrics(profile: Profile, stage: str) -> dict[str, Any]:
    path = _require_finished(profile, stage) / METRICS
    if not path.exists():
        raise MissingStageError(f"No held-out metrics at {path}: run notebook {stage} to the end (save_report).")
    return json.loads(path.read_text())


def comparison_table(profile: Profile, n_samples: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The base model, full SFT and QLoRA SFT side by side, from the saved reports of notebooks 02 and 03.

    Returns ``(table, samples)`` and saves them as ``results/sft_comparison.csv`` (one row per model) and
    ``results/sft_samples.csv`` (the first ``n_samples`` held-out prompts, reference and every model's answer).
    """
    import pandas as pd

    reports = [_read_metrics(profile, stage) for stage in STAGES]
    if reports[0]["prompts"] != reports[1]["prompts"]:
        raise ValueError("notebooks 02 and 03 answered different held-out prompts: re-run notebook 02")
    rows = {name: row for rep in reports for name, row in rep["rows"].items()}
    order = [n for n in ("base", *STAGES) if n in rows]
    table = pd.DataFrame.from_dict(rows, orient="index").loc[order]
    table.index.name = "model"
    answers = {name: texts for rep in reports for name, texts in rep["answers"].items()}
    samples = pd.DataFrame({"prompt": reports[0]["prompts"], "reference": reports[0]["references"],
                            **{n: answers[n] for n in order}}).head(n_samples)
    for frame, name in ((table, "sft_comparison.csv"), (samples, "sft_samples.csv")):
        artifacts.write_text(profile.paths.result(name), frame.to_csv(index=frame is table))
    return table, samples


__all__ = [
    "PeakMemory", "SFTRun", "STAGES", "base_source", "build_trainer", "build_training_args", "comparison_table", "dequantized_base",
    "describe_layers", "eval_curves", "heldout_answers", "load_adapters", "load_sft", "logit_difference", "merge_adapters",
    "optimizer_name", "plot_losses", "qlora_source", "read_history", "read_info", "save_report",
    "to_conversational", "train_full", "train_qlora", "training_kwargs", "weights_mb",
]

"""Loading models and tokenizers for every profile, and the course's one decision on device and precision.

* :func:`precision` -- **the** place where the device and number format are chosen; SFT, QLoRA's 4-bit
  compute dtype, the reward model, PPO and evaluation all ask it (:class:`Precision`).
* :func:`load_model` -- tokenizer (chat template applied) + causal LM + the pad/eos ids made to agree, the
  four-line recipe every stage needs; :func:`load_tokenizer`, :func:`load_causal_lm` are its parts.
* :func:`load_4bit` (bitsandbytes nf4, falls back to a plain model with a warning), :func:`lora_config` (the one
  way a ``peft.LoraConfig`` is built), :func:`quiet_transformers` / :func:`quiet_datasets` (no per-file
  progress bars in the notebooks).

torch/transformers are imported inside the functions so ``import rlhf_helpers`` stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .chat import apply_template
from .config import ModelConfig, Profile, QLoRAConfig, TrainSchedule, has_cuda
from .hub import offline_hint, resolve

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# bitsandbytes 0.50 logs a warning at import time on CPU about an optional `kernels` package (peft and TRL
# import bitsandbytes, so every notebook would show it). It is harmless: silence that one logger.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


# ------------------------------------------------------------------------------------- device and precision
NATIVE_BF16_CAPABILITY = (8, 0)  # CUDA compute capability from which bf16 is native (Ampere: A100, A10, L4, RTX 30xx)
# Model types (``config.model_type``) whose activations are known to overflow fp16's range (max 65504): NaN losses
# and broken generations. Where bf16 is not native they get float32 instead of fp16.
FP16_OVERFLOW_MODEL_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
                                       "t5", "mt5"})


@dataclass(frozen=True)
class Precision:
    """Where the course computes and in which number format (see :func:`precision`), and why."""

    device: str  # "cuda" or "cpu"
    dtype: torch.dtype  # weights of a loaded model, and the compute dtype of 4-bit layers
    mixed_precision: str  # accelerate's / the Trainer's setting: "bf16", "fp16" or "no"
    reason: str = ""  # the decision in words, e.g. "compute capability 7.5 < 8.0: bf16 only emulated, fp16"

    def trainer_flags(self) -> dict[str, bool]:
        """``TrainingArguments`` flags: ``bf16``, ``fp16`` and ``use_cpu`` (TRL would turn bf16 on by default)."""
        return {"bf16": self.mixed_precision == "bf16", "fp16": self.mixed_precision == "fp16",
                "use_cpu": self.device == "cpu"}


def precision(model_type: str | None = None) -> Precision:
    """The one decision on device and precision, by what the hardware really has:

    * a CUDA GPU of compute capability >= 8.0 -> bf16 (native there);
    * an older CUDA GPU (T4, V100: 7.x) -> fp16 with loss scaling. ``torch.cuda.is_bf16_supported()`` is True on a
      T4, where bf16 is only emulated (several times slower), so it is not asked. A ``model_type`` in
      :data:`FP16_OVERFLOW_MODEL_TYPES` (Qwen2, Gemma, T5...) gets float32 and no mixed precision instead;
    * no GPU -> float32 on the CPU, no mixed precision.
    """
    import torch

    if not torch.cuda.is_available():
        return Precision("cpu", torch.float32, "no", "no CUDA GPU: float32 on the CPU")
    major, minor = torch.cuda.get_device_capability(0)
    capability = f"compute capability {major}.{minor}"
    if (major, minor) >= NATIVE_BF16_CAPABILITY:
        return Precision("cuda", torch.bfloat16, "bf16", f"{capability} >= 8.0: native bf16")
    if model_type in FP16_OVERFLOW_MODEL_TYPES:
        return Precision("cuda", torch.float32, "no",
                         f"{capability}: bf16 only emulated, and {model_type} overflows in fp16: float32")
    return Precision("cuda", torch.float16, "fp16", f"{capability} < 8.0: bf16 only emulated, fp16 with loss scaling")


def model_type(path_or_name: str | Path) -> str | None:
    """``config.model_type`` of a local or Hub model (reads only its config), None where it cannot be read."""
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(resolve(path_or_name)).model_type
    except (OSError, ValueError):
        return None


def resolve_dtype(cfg: ModelConfig | str | torch.dtype = "auto", model_type: str | None = None) -> torch.dtype:
    """``"auto"``: :func:`precision`'s dtype (for a model of ``model_type``). Also accepts a ModelConfig (its
    ``dtype``), a name (``"float32"``, ``"bf16"``, ...) or a torch.dtype."""
    import torch

    value = cfg.dtype if isinstance(cfg, ModelConfig) else cfg
    if isinstance(value, torch.dtype):
        return value
    names = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
    if value == "auto":
        return precision(model_type).dtype
    if value not in names:
        raise ValueError(f"Unknown dtype {value!r}: use 'auto' or one of {', '.join(names)}.")
    return names[value]


PAGED_OR_8BIT = ("paged_", "_8bit", "bnb")  # optimizers of bitsandbytes that need a CUDA GPU


def optimizer_name(name: str, cuda: bool) -> str:
    """``name``, unless it is a bitsandbytes paged/8-bit optimizer and there is no CUDA GPU: then AdamW."""
    if not cuda and any(tag in name for tag in PAGED_OR_8BIT):
        print(f"Optimizer {name!r} needs a CUDA GPU: using 'adamw_torch' instead.")
        return "adamw_torch"
    return name


def trainer_kwargs(cfg: TrainSchedule, output_dir: str | Path, progress: bool = True,
                   model_type: str | None = None, trl: bool = True) -> dict[str, Any]:
    """The ``TrainingArguments`` every TRL trainer of the course shares (SFT, QLoRA, reward model): the schedule
    of ``cfg``, mixed precision and optimizer per :func:`precision` (for a model of ``model_type``), no intermediate
    checkpoints (each stage saves its final model itself), no reporting, no dataloader workers, gradient
    checkpointing only when configured (TRL's default is on, ~60% slower on tiny models). ``trl=False``: for
    transformers' own ``TrainingArguments`` (``Seq2SeqTrainer``, a classifier's ``Trainer``), without TRL's
    ``max_length``."""
    flags = precision(model_type).trainer_flags()
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
        optim=optimizer_name(cfg.optim, cuda=not flags["use_cpu"]),
        max_length=cfg.max_length,
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
    if not trl:
        del kwargs["max_length"]
    return kwargs


def make_accelerator(mixed_precision: str = "auto", gradient_accumulation_steps: int = 1,
                     model_type: str | None = None) -> Any:
    """An ``accelerate.Accelerator`` whose mixed precision follows :func:`precision` for a model of ``model_type``
    (``"auto"``) or the setting given (``no|fp16|bf16``). accelerate's state is per process and cannot change: if
    an earlier run in this process set another precision, that one is kept (with a note)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import GradientAccumulationPlugin

    mp: str | None = precision(model_type).mixed_precision if mixed_precision == "auto" else mixed_precision
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mp):
        print(f"note: accelerate already runs with mixed_precision={state['_mixed_precision']!r}; keeping it.")
        mp = None
    plugin = GradientAccumulationPlugin(num_steps=gradient_accumulation_steps, sync_with_dataloader=False)
    return Accelerator(mixed_precision=mp, gradient_accumulation_plugin=plugin)


# ------------------------------------------------------------------------------------------------ quiet
@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file progress bars ("Loading weights", "Writing model shards") for local I/O."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No per-``map`` progress bars of ``datasets`` (TRL's tokenize/EOS/filter passes) in the notebooks."""
    import datasets

    enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------------------------------- loading
@contextlib.contextmanager
def loading_from(path_or_name: str | Path) -> Iterator[None]:
    """Around a ``from_pretrained`` of ``path_or_name`` (resolved already): transformers' load report silenced for
    a local folder (expected missing/unused keys), and for a Hub id a failure that says what to do offline."""
    local = Path(str(path_or_name)).exists()
    with quiet_transformers() if local else contextlib.nullcontext(), offline_hint(path_or_name):
        yield


def load_tokenizer(path_or_name: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` with the course's chat template (and pad token) applied."""
    from transformers import AutoTokenizer

    path_or_name = resolve(path_or_name)
    with loading_from(path_or_name):
        return apply_template(AutoTokenizer.from_pretrained(path_or_name))


def load_causal_lm(
    path_or_name: str | Path,
    profile_or_dtype: Profile | ModelConfig | str | torch.dtype = "auto",
    device: str | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` in the resolved dtype, moved to ``device`` (default: cuda if
    available, else cpu). ``kwargs`` go to ``from_pretrained``; a Hub id goes through ``$RLHF_HUB_MAP``."""
    from transformers import AutoModelForCausalLM

    path_or_name = resolve(path_or_name)
    spec = profile_or_dtype.model if isinstance(profile_or_dtype, Profile) else profile_or_dtype
    auto = (spec.dtype if isinstance(spec, ModelConfig) else spec) == "auto"
    dtype = resolve_dtype(spec, model_type(path_or_name) if auto and has_cuda() else None)
    with loading_from(path_or_name):
        model = AutoModelForCausalLM.from_pretrained(str(path_or_name), dtype=dtype, **kwargs)
    if "device_map" not in kwargs:
        model.to(device or precision().device)
    set_causal_lm_loss(model)
    return model


def set_causal_lm_loss(model: Any) -> None:
    """GPT-2's class name (``GPT2LMHeadModel``) does not tell transformers 5 which loss to use, so it warns
    once ("loss_type=None ... unrecognized") and uses the causal-LM loss anyway: say so up front."""
    if getattr(model, "loss_type", "unset") is None:
        model.loss_type = "ForCausalLM"


def sync_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make the model's config/generation config agree with the tokenizer's pad/eos ids."""
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def load_model(
    path_or_name: str | Path,
    profile_or_dtype: Profile | ModelConfig | str | torch.dtype = "auto",
    device: str | None = None,
    **kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Tokenizer (course chat template) and causal LM from one folder or hub name, their pad/eos ids in
    agreement, the model in eval mode. ``kwargs`` go to ``from_pretrained``."""
    tokenizer = load_tokenizer(path_or_name)
    model = load_causal_lm(path_or_name, profile_or_dtype, device=device, **kwargs)
    sync_special_tokens(model, tokenizer)
    model.eval()
    return model, tokenizer


# ---------------------------------------------------------------------------------------- 4-bit and LoRA
def bnb_4bit_config(qlora_cfg: QLoRAConfig, compute_dtype: torch.dtype | None = None):
    """``BitsAndBytesConfig`` for QLoRA: nf4 (per ``qlora_cfg``), double quantization, compute dtype."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=qlora_cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=qlora_cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute_dtype or resolve_dtype("auto"),
    )


def import_bitsandbytes() -> Any:
    """Import bitsandbytes without its import-time warning about the optional `kernels` package."""
    loggers = [logging.getLogger(n) for n in ("bitsandbytes", "bitsandbytes.backends.cpu.ops")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import bitsandbytes

        return bitsandbytes
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def load_4bit(
    path_or_name: str | Path, qlora_cfg: QLoRAConfig, device: str | None = None, **kwargs: Any
) -> PreTrainedModel:
    """Load a causal LM with its linear layers quantized to 4 bits (bitsandbytes nf4 + double quant).

    Works on CPU with bitsandbytes >= 0.48 as well as on CUDA. Where bitsandbytes cannot load 4-bit (not
    installed, no supported device, ...) or ``qlora_cfg.load_in_4bit`` is False, a plain model in the
    resolved dtype is returned instead -- with a printed warning saying why in the first case -- so LoRA still
    works. Check ``getattr(model, "is_loaded_in_4bit", False)``. Only a missing or unusable bitsandbytes build falls
    back: any other error of the 4-bit load (out of memory, a model that cannot be found) is raised, since a silent
    fallback would load the full-precision model into the memory 4 bits were meant to save.

    On CPU the Linear4bit layers' AVX512-BF16 inference repacking is switched off: bitsandbytes 0.50 repacks
    the weights at the first eval-mode forward, and training after that (e.g. generate, then train) fails.
    """
    if not qlora_cfg.load_in_4bit:
        return load_causal_lm(path_or_name, "auto", device=device, **kwargs)
    from transformers import AutoModelForCausalLM

    path_or_name = resolve(path_or_name)
    device = device or precision().device
    dtype = resolve_dtype("auto", model_type(path_or_name))  # also the 4-bit layers' compute dtype
    try:
        bnb = import_bitsandbytes()
    except Exception as e:  # noqa: BLE001 - no usable bitsandbytes build (ImportError, a missing native backend...)
        print(
            f"WARNING: bitsandbytes cannot be used here ({type(e).__name__}: {e}), so {path_or_name} is not loaded\n"
            "         in 4 bits: the plain (non-quantized) model instead. LoRA still trains, without the memory saving."
        )
        return load_causal_lm(path_or_name, "auto", device=device, **kwargs)
    with loading_from(path_or_name):
        model = AutoModelForCausalLM.from_pretrained(
            str(path_or_name),
            quantization_config=bnb_4bit_config(qlora_cfg, dtype),
            dtype=dtype,
            device_map={"": device},
            **kwargs,
        )
    set_causal_lm_loss(model)
    if device == "cpu":
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
    return model


def lora_config(r: int, alpha: int, dropout: float = 0.0, target_modules: str | list[str] = "all-linear",
                model: Any = None, task_type: str = "CAUSAL_LM",
                modules_to_save: Sequence[str] = ()) -> LoraConfig:
    """The one ``peft.LoraConfig`` of the course (QLoRA, the LoRA reward model, LoRA PPO): rank ``r``, scale
    ``alpha / r``, no bias. ``modules_to_save``: modules trained in full beside the adapters (saved with them);
    ``ensure_weight_tying`` keeps a tied input embedding and output head one trained copy.

    ``target_modules="all-linear"`` works for every architecture here: peft 0.21 matches ``nn.Linear`` *and*
    transformers' ``Conv1D`` (GPT-2's c_attn/c_proj/c_fc), the output head excluded. Pass ``model`` to set
    ``fan_in_fan_out`` for Conv1D models (GPT-2) up front; else peft sets it itself, with a warning.
    """
    from peft import LoraConfig

    fan_in_fan_out = False
    if model is not None:
        from transformers.pytorch_utils import Conv1D

        fan_in_fan_out = any(isinstance(m, Conv1D) for m in model.modules())
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
        task_type=task_type,
        modules_to_save=list(modules_to_save) or None,
        ensure_weight_tying=bool(modules_to_save),
    )


def parameter_counts(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameters by transformers' ``num_parameters`` (a PeftModel passes it on to its
    base): tied weights counted once, 4-bit weights at their logical size (a packed uint8 holds two values)."""
    return model.num_parameters(only_trainable=True), model.num_parameters()


# ------------------------------------------------------------------------------------- model utilities
def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off in every layer (PPO: the rollout's and the update's log-probs must agree)."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def is_peft(model: Any) -> bool:
    """True for a peft ``PeftModel`` (a policy trained through LoRA adapters)."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A deep copy in eval mode with ``requires_grad=False`` (the reference policy)."""
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref

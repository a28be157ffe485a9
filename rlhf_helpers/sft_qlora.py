"""Stage 1 of RLHF, notebook 03: QLoRA -- the same supervised fine-tuning as :mod:`rlhf_helpers.sft_full`, with the
base frozen and quantized to 4 bits (bitsandbytes nf4, double quantization) and LoRA adapters (PEFT) training --
plus, with ``QLoRAConfig.train_embeddings`` (the tiny profile), the token embeddings, which adapters on the linear
layers cannot move.

Notebook 03 uses :func:`train_qlora` (saved to checkpoint ``sft_qlora``: the adapters, plus ``merged/``),
:func:`describe_layers` (which weights are 4-bit, which train), :func:`load_adapters`, :func:`merge_adapters`,
:func:`qlora_source` and :func:`logit_difference` (why the merge starts from the *dequantized* weights), and
:func:`comparison_table` (base, full SFT and QLoRA side by side, from the reports of notebooks 02 and 03). The
training run itself, the measurements, the loss plots and the held-out report are full SFT's
(:func:`rlhf_helpers.sft_full.train_and_save`, :func:`~rlhf_helpers.sft_full.save_report`, ...).

Where bitsandbytes cannot load 4-bit, QLoRA falls back to plain LoRA on the full-precision base, with a printed
warning (:func:`rlhf_helpers.core.loading.load_4bit` does the fallback).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sft_full
from .core import artifacts, loading
from .core.artifacts import METRICS, MissingStageError
from .core.config import Profile, QLoRAConfig

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .data_prep import PreparedData
    from .sft_full import SFTRun


# ============================================================================================== training
def qlora_source(profile: Profile) -> str | Path:
    """The model QLoRA quantizes: ``profile.qlora.base`` or else the profile's base model."""
    return profile.qlora.base or sft_full.base_source(profile)


def embedding_modules(model: Any) -> list[str]:
    """Names of the model's input embeddings and output head (GPT-2: ``["transformer.wte", "lm_head"]``), which
    ``QLoRAConfig.train_embeddings`` trains in full: both named, so PEFT keeps them one tied copy where the base
    ties them (it recognises a tied pair by the head) and trains both where it does not."""
    wanted = (model.get_input_embeddings(), model.get_output_embeddings())
    return [name for name, module in model.named_modules() if any(module is w for w in wanted)]


def _adapters_to_float32(model: Any) -> None:
    """TRL casts the adapters of a quantized model to bf16 (the QLoRA paper's choice on a bf16 GPU). Where the
    compute dtype is not bf16 (CPU float32, a T4's fp16 autocast) keep them in float32 instead: bf16 math is
    slow on CPU and its 8-bit mantissa rounds small updates away. Must run before the optimizer is built."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()


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

    def float32_adapters(trainer: Any) -> None:  # before the optimizer is built (see _adapters_to_float32)
        if getattr(model, "is_loaded_in_4bit", False) and not trainer.args.bf16:
            _adapters_to_float32(trainer.model)

    def merge(trained: Any, tmp: Path) -> dict[str, Any]:
        merged = merge_adapters(tmp, source, cfg, method="dequantized", device=loading.precision().device)
        with loading.quiet_transformers():
            merged.save_pretrained(tmp / sft_full.MERGED)
            tokenizer.save_pretrained(tmp / sft_full.MERGED)
        return {"quantized": quantized, "merge_method": "dequantized",
                "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha}

    peft_config = loading.lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules, model=model,
                                      modules_to_save=embedding_modules(model) if cfg.train_embeddings else ())
    return sft_full.train_and_save("sft_qlora", model, tokenizer, cfg, profile, prep, peft_config=peft_config,
                                   prepare=float32_adapters, extra=merge, progress=progress)


def train_variants(profile: Profile, prep: PreparedData, variants: Mapping[str, Mapping[str, Any]],
                   heldout: Dataset | None = None, progress: bool = False) -> tuple[pd.DataFrame, dict[str, SFTRun]]:
    """Notebook 03's exercises: one QLoRA run (:func:`train_qlora`) per variant, each ``profile.qlora`` with the
    variant's fields replaced (``{"r=4": {"lora_r": 4, "lora_alpha": 8}, "course": {}}``), in the same order.

    Returns a table (one row per variant: trainable params, weights MB, seconds per step, the eval loss at step
    0 and at the end, whether the base was 4-bit; with ``heldout``, also ROUGE-L against the references and the
    judge's mean score of the merged model's greedy answers) and the runs (their ``history`` for the curves).
    Every run saves to ``profile.paths.checkpoint("sft_qlora")``, the next replacing the last: pass an exercise's
    profile (:func:`rlhf_helpers.notebook_setup.exercise_profile`), never the course's.
    """
    import dataclasses

    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    runs: dict[str, SFTRun] = {}
    for name, changes in variants.items():
        prof = dataclasses.replace(profile, qlora=dataclasses.replace(profile.qlora, **changes))
        run = runs[name] = train_qlora(prof, prep, progress=progress)
        info = run.info
        rows[name] = {"trainable params": info["trainable_params"], "weights MB": info["weights_mb"],
                      "s / step": info["seconds_per_step"], "step-0 eval loss": info["initial_eval_loss"],
                      "eval loss": info["eval_loss"], "4-bit base": info["quantized"]}
        if heldout is not None:  # the merged model: the same function as 4-bit + adapters, faster to sample
            merged, tokenizer = sft_full.load_sft(prof, "sft_qlora")
            rows[name].update(_heldout_scores(prof, merged, tokenizer, heldout))
    return pd.DataFrame.from_dict(rows, orient="index"), runs


def _heldout_scores(profile: Profile, model: Any, tokenizer: Any, heldout: Dataset) -> dict[str, float]:
    """ROUGE-L and the judge's mean score of ``model``'s greedy answers to the held-out prompts."""
    from .core.generation import generate
    from .core.text_metrics import rouge_scores
    from .judge import load_judge

    prompts = list(heldout["prompt"])
    answers = generate(model, tokenizer, prompts, profile.generation, progress=False)
    return {"ROUGE-L": rouge_scores(answers, list(heldout["reference"]))["rougeL"],
            "gold": float(load_judge(profile).score(prompts, answers).mean())}


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
    tied = bool(base.config.tie_word_embeddings)
    with _saved_embeddings_quiet():
        model = PeftModel.from_pretrained(base, str(adapter_dir), config=config).merge_and_unload()
    head, embedding = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    if tied and head is not embedding:
        if not torch.equal(head, embedding):
            raise ValueError(f"{adapter_dir}: the merged input embeddings and output head differ; the base ties them")
        model.config.tie_word_embeddings = True
        model.tie_weights()
    loading.set_causal_lm_loss(model)
    return model.eval()


# ============================================================================================== loading
def load_adapters(profile: Profile) -> tuple[Any, PreTrainedTokenizerBase]:
    """The QLoRA policy for inference as trained: the 4-bit base + the saved LoRA adapters (a ``PeftModel``)."""
    from peft import PeftModel

    path = profile.paths.finished("sft_qlora")
    tokenizer = loading.load_tokenizer(path)
    base = loading.load_4bit(qlora_source(profile), profile.qlora)
    loading.sync_special_tokens(base, tokenizer)
    with _saved_embeddings_quiet():
        return PeftModel.from_pretrained(base, str(path)).eval(), tokenizer


@contextlib.contextmanager
def _saved_embeddings_quiet() -> Iterator[None]:
    """Loading adapters saved with ``train_embeddings``: PEFT saves GPT-2's tied pair as ``transformer.wte`` alone
    and, not knowing that name, warns that it cannot tie it, then that the merge unties it. The loaded head does
    use the trained copy (tests: the loaded and merged models reproduce the trained one; :func:`merge_adapters`
    ties the two again), so these warnings would only mislead a learner."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You have requested `ensure_weight_tying`", UserWarning)
        warnings.filterwarnings("ignore", "Input and output embeddings are no longer tied", UserWarning)
        yield


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


# =========================================================================================== comparison
def _read_metrics(profile: Profile, stage: str) -> dict[str, Any]:
    path = profile.paths.finished(stage) / METRICS
    if not path.exists():
        raise MissingStageError(f"No held-out metrics at {path}: run notebooks/{artifacts.notebook(stage)} to the end (save_report).")
    return artifacts.read_json(path)


def comparison_table(profile: Profile, n_samples: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The base model, full SFT and QLoRA SFT side by side, from the saved reports of notebooks 02 and 03.

    Returns ``(table, samples)`` and saves them as ``results/sft_comparison.csv`` (one row per model) and
    ``results/sft_samples.csv`` (the first ``n_samples`` held-out prompts, reference and every model's answer).
    """
    import pandas as pd

    reports = [_read_metrics(profile, stage) for stage in sft_full.STAGES]
    if reports[0]["prompts"] != reports[1]["prompts"]:
        raise ValueError("notebooks 02 and 03 answered different held-out prompts: re-run notebook 02")
    rows = {name: row for rep in reports for name, row in rep["rows"].items()}
    order = [n for n in ("base", *sft_full.STAGES) if n in rows]
    table = pd.DataFrame.from_dict(rows, orient="index").loc[order]
    table.index.name = "model"
    answers = {name: texts for rep in reports for name, texts in rep["answers"].items()}
    samples = pd.DataFrame({"prompt": reports[0]["prompts"], "reference": reports[0]["references"],
                            **{n: answers[n] for n in order}}).head(n_samples)
    for frame, name in ((table, "sft_comparison.csv"), (samples, "sft_samples.csv")):
        artifacts.write_csv(frame, profile.paths.result(name), index=frame is table)
    return table, samples


__all__ = [
    "comparison_table", "dequantized_base", "describe_layers", "embedding_modules", "load_adapters", "logit_difference",
    "merge_adapters", "qlora_source", "train_qlora", "train_variants",
]

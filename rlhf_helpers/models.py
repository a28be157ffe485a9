"""Models of the course: the tiny offline model, the chat format, and loading for every profile.

* **Tokenizer** -- :func:`train_tokenizer` trains a byte-level BPE tokenizer (``tokenizers`` library) on
  the course's own texts (:func:`course_texts`) and wraps it as a transformers
  ``PreTrainedTokenizerFast`` (in transformers 5 an alias of ``TokenizersBackend``). Specials:
  ``<|endoftext|>`` (bos = eos = unk) and ``<|pad|>`` (pad); ``padding_side="left"`` for generation.
  TRL's trainers do not care: their collators pad explicitly (SFT/reward pad right, prompts left).
* **Chat format** -- HH-RLHF style, the same for every model (tiny, gpt2, Qwen base)::

      "\\n\\nHuman: {prompt}\\n\\nAssistant:" + " {response}" + eos

  :data:`CHAT_TEMPLATE` is the Jinja version with ``{% generation %}`` around ``" {response}" + eos`` so
  TRL's ``assistant_only_loss=True`` trains on the response *and* the eos (the model learns to stop).
  :func:`format_prompt` / :func:`format_example` produce exactly what ``apply_chat_template`` renders.
* **Tiny model** -- :func:`build_tiny_model` (GPT-2 architecture from :class:`ModelConfig`),
  :func:`pretrain` (brief causal-LM pretraining on generic topic prose) and :func:`build_tiny_base`
  (tokenizer + model + pretraining, cached in ``outputs/checkpoints/base``).
* **Loading** -- :func:`load_base`, :func:`load_causal_lm`, :func:`load_4bit` (bitsandbytes nf4, falls back
  to a plain model with a warning), :func:`lora_config`, :func:`count_parameters`, :func:`resolve_dtype`.

torch/transformers are imported inside the functions so ``import rlhf_helpers`` stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ModelConfig, Profile, QLoRAConfig
from .data import atomic_dir

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
HUMAN_PREFIX = "\n\nHuman: "
ASSISTANT_PREFIX = "\n\nAssistant:"
BASE_INFO = "base_info.json"

# bitsandbytes 0.50 logs a warning at import time on CPU about an optional `kernels` package (peft and TRL
# import bitsandbytes, so every notebook would show it). It is harmless: silence that one logger.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# The one chat template of the course. The generation block holds " {response}" + eos, so TRL's
# `assistant_only_loss=True` (via `return_assistant_tokens_mask`) puts the response tokens and the eos in the
# loss. The string literals hold real newlines. Only user/assistant turns exist in HH-RLHF style.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '" + HUMAN_PREFIX + "' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '" + ASSISTANT_PREFIX + "' }}"
    "{%- generation -%}{{ ' ' + message['content'] + eos_token }}{%- endgeneration -%}"
    "{%- else -%}"
    "{{ raise_exception('Only user and assistant messages are supported (HH-RLHF format), got role '"
    " + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '" + ASSISTANT_PREFIX + "' }}{%- endif -%}"
)


# --------------------------------------------------------------------------------------------- chat format
def apply_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Put the course's chat template on ``tokenizer`` (in place, returned for chaining).

    Also sets a pad token where there is none (gpt2: pad = eos) and ``padding_side="left"`` (generation).
    """
    tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.eos_token is None:
        raise ValueError(f"Tokenizer {tokenizer.name_or_path!r} has no eos token; the chat format needs one.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """``"\\n\\nHuman: {prompt}\\n\\nAssistant:"`` -- what the model sees before it answers.

    Equal to ``tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
    add_generation_prompt=True)``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    return HUMAN_PREFIX + prompt + ASSISTANT_PREFIX


def format_example(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> str:
    """A full training example: ``format_prompt(...) + " " + response + eos``.

    Equal to ``apply_chat_template`` of the user/assistant pair (``tokenize=False``).
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    return format_prompt(tokenizer, prompt) + " " + response + tokenizer.eos_token


def messages(prompt: str, response: str | None = None) -> list[dict[str, str]]:
    """The conversational form of one example (TRL's "messages" format)."""
    out = [{"role": "user", "content": prompt}]
    if response is not None:
        out.append({"role": "assistant", "content": response})
    return out


# ------------------------------------------------------------------------------------------------- data
COURSE_FILES = ("sft.jsonl", "preferences.jsonl", "heldout.jsonl", "pretrain.jsonl")


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file, checking that ``fields`` are strings; errors name file, line and field."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            for name in fields:
                if not isinstance(record.get(name), str):
                    raise ValueError(f"{path}:{lineno}: field {name!r} missing or not a string")
            yield record


def _require_data(data_dir: Path, name: str) -> Path:
    path = Path(data_dir) / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found. Generate the course data first: `make data` "
            f"(or `python -m rlhf_helpers.course_data --out {data_dir}`)."
        )
    return path


def course_texts(data_dir: str | Path, include_heldout: bool = False) -> Iterator[str]:
    """Every training text of the course data, for training the tokenizer.

    SFT pairs and both answers of each preference pair are rendered in the chat format (without eos) so
    the scaffolding ``"\\n\\nHuman:"`` / ``"\\n\\nAssistant:"`` gets its own merges; then the pretraining
    paragraphs as they are. The held-out prompts are left out by default (they are meant to be unseen:
    even the tokenizer should not get merges for their words); ``include_heldout=True`` adds them.
    """
    data_dir = Path(data_dir)
    for rec in _read_jsonl(_require_data(data_dir, "sft.jsonl"), ("prompt", "response")):
        yield f"{HUMAN_PREFIX}{rec['prompt']}{ASSISTANT_PREFIX} {rec['response']}"
    for rec in _read_jsonl(_require_data(data_dir, "preferences.jsonl"), ("prompt", "chosen", "rejected")):
        yield f"{HUMAN_PREFIX}{rec['prompt']}{ASSISTANT_PREFIX} {rec['chosen']}"
        yield f"{HUMAN_PREFIX}{rec['prompt']}{ASSISTANT_PREFIX} {rec['rejected']}"
    if include_heldout:
        for rec in _read_jsonl(_require_data(data_dir, "heldout.jsonl"), ("prompt",)):
            yield f"{HUMAN_PREFIX}{rec['prompt']}{ASSISTANT_PREFIX}"
    yield from pretrain_texts(data_dir)


def pretrain_texts(data_dir: str | Path) -> Iterator[str]:
    """The ``text`` fields of ``data/pretrain.jsonl`` (generic prose about the topics, not chat)."""
    for rec in _read_jsonl(_require_data(Path(data_dir), "pretrain.jsonl"), ("text",)):
        yield rec["text"]


# -------------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, model_max_length: int = 256
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers, chat template included.

    ``vocab_size`` counts the 256 byte symbols and the two specials; a small corpus may give fewer tokens
    (use ``len(tokenizer)``). Deterministic for the same texts.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 2:
        raise ValueError(f"vocab_size={vocab_size} is too small: a byte-level BPE needs at least 258 tokens.")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # trim_offsets=False (as gpt2): a token's span includes its leading space, which the assistant mask of
    # `apply_chat_template(return_assistant_tokens_mask=True)` relies on (the generation block starts with " ").
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    count = 0

    def counted() -> Iterator[str]:
        nonlocal count
        for text in texts:
            count += 1
            yield text

    backend.train_from_iterator(counted(), trainer=trainer)
    if count == 0:
        raise ValueError("train_tokenizer got no texts.")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    return apply_template(tokenizer)


# ------------------------------------------------------------------------------------------- tiny model
def build_tiny_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> PreTrainedModel:
    """An untrained GPT-2-architecture causal LM sized by ``cfg`` (vocabulary = ``len(tokenizer)``).

    Dropout is off: the model is tiny, pretraining is short, and PPO wants train/eval log-probs to agree.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd={cfg.n_embd} must be divisible by n_head={cfg.n_head}")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    _set_causal_lm_loss(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def pack_texts(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], seq_len: int) -> torch.Tensor:
    """Tokenize ``texts``, join them with eos after each, cut into blocks: LongTensor ``[num_blocks, seq_len]``."""
    import torch

    texts = list(texts)
    if not texts:
        raise ValueError("pack_texts got no texts.")
    ids: list[int] = []
    for row in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(row)
        ids.append(tokenizer.eos_token_id)
    n_blocks = len(ids) // seq_len
    if n_blocks == 0:
        raise ValueError(f"Only {len(ids)} tokens of text: fewer than one block of seq_len={seq_len}.")
    return torch.tensor(ids[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len)


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    cfg: ModelConfig,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Brief causal-LM pretraining on plain prose, packed into ``cfg.pretrain_seq_len`` blocks.

    AdamW, linear warm-up (5% of the steps) then cosine decay, gradient clipping at 1.0; the blocks are
    visited in seeded random order, epoch after epoch. Returns ``{"losses": [float per step], "steps",
    "seconds", "tokens", "num_blocks", "final_loss"}`` (final_loss = mean of the last 10% of steps).

    A plain PyTorch loop on purpose: measured on 2 CPU cores, ``transformers.Trainer`` runs this at the
    same speed (~155-170 ms/step), so it buys nothing here, while the loop is 20 readable lines, needs no
    output directory, dataset conversion or log silencing, and is bit-for-bit deterministic for a seed.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    steps, bs = cfg.pretrain_steps, cfg.pretrain_batch_size
    if steps <= 0 or bs <= 0:
        raise ValueError(f"pretrain_steps ({steps}) and pretrain_batch_size ({bs}) must be positive")
    blocks = pack_texts(tokenizer, texts, cfg.pretrain_seq_len)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, betas=(0.9, 0.95), weight_decay=0.01)
    scheduler = get_cosine_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    was_training = model.training
    model.train()
    order, cursor = torch.randperm(len(blocks), generator=gen), 0
    if len(blocks) < bs:
        raise ValueError(f"Only {len(blocks)} blocks of {cfg.pretrain_seq_len} tokens: fewer than one batch of {bs}.")
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc="pretraining", disable=not progress, leave=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in bar:
            if cursor + bs > len(order):  # next epoch (a batch never spans two permutations)
                order, cursor = torch.randperm(len(blocks), generator=gen), 0
            batch = blocks[order[cursor : cursor + bs]].to(device)
            cursor += bs
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if step % 10 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.train(was_training)
    tail = losses[-max(1, steps // 10) :]
    return {
        "losses": losses,
        "steps": steps,
        "seconds": time.perf_counter() - t0,
        "tokens": steps * bs * cfg.pretrain_seq_len,
        "num_blocks": len(blocks),
        "final_loss": sum(tail) / len(tail),
    }


def build_tiny_base(profile: Profile, progress: bool = True) -> Path:
    """Build the tiny base model once (tokenizer + model + pretraining) and cache it; return its directory.

    The directory ``profile.paths.checkpoint("base")`` holds the model and tokenizer (``save_pretrained``)
    and ``base_info.json`` (parameter count, timings, loss curve, the ModelConfig used). It is written to a
    temporary directory and renamed into place. An existing base built with the same ModelConfig and seed
    is returned as is; otherwise it is rebuilt. (Regenerated data files are not detected: delete the
    directory, or ``make clean``, to rebuild after changing data/.)
    """
    cfg = profile.model
    if cfg.name != "tiny":
        raise ValueError(f"build_tiny_base is for the tiny profile; model {cfg.name!r} comes from the Hub.")
    target = profile.paths.checkpoint("base")
    info_path = target / BASE_INFO
    wanted = dataclasses.asdict(cfg)
    if info_path.exists():
        try:
            old = json.loads(info_path.read_text())
            built_with = (old["model_config"], old["seed"])
        except (json.JSONDecodeError, KeyError):
            built_with = None
        if built_with == (wanted, profile.seed):
            return target
        print(f"Rebuilding the tiny base at {target}: it was built with another ModelConfig or seed.")

    t0 = time.perf_counter()
    data_dir = profile.paths.data_dir
    tokenizer = train_tokenizer(course_texts(data_dir), cfg.vocab_size, cfg.n_positions)
    tok_seconds = time.perf_counter() - t0
    model = build_tiny_model(cfg, tokenizer, seed=profile.seed)
    history = pretrain(model, tokenizer, list(pretrain_texts(data_dir)), cfg, progress=progress, seed=profile.seed)
    model.eval()
    trainable, total = count_parameters(model)
    info = {
        "parameters": total,
        "vocab_size": len(tokenizer),
        "tokenizer_seconds": round(tok_seconds, 2),
        "pretrain_seconds": round(history["seconds"], 2),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "final_loss": history["final_loss"],
        "losses": history["losses"],
        "num_blocks": history["num_blocks"],
        "tokens": history["tokens"],
        "seed": profile.seed,
        "model_config": wanted,
    }

    def write(tmp: Path) -> None:
        with _quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        (tmp / BASE_INFO).write_text(json.dumps(info, indent=1))

    return atomic_dir(target, write)  # a stale or incomplete base: ours to replace


def read_base_info(path: str | Path) -> dict[str, Any]:
    """The ``base_info.json`` of a built tiny base (directory or file path)."""
    path = Path(path)
    return json.loads((path / BASE_INFO if path.is_dir() else path).read_text())


# ---------------------------------------------------------------------------------------------- loading
@contextlib.contextmanager
def _quiet_transformers():
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


def precision_flags() -> dict[str, bool]:
    """Trainer mixed precision for the hardware: CUDA with bf16 support (Ampere+) -> bf16; other CUDA GPUs (T4)
    -> fp16 (with loss scaling); CPU -> neither, and ``use_cpu=True`` (TRL would turn bf16 on by default)."""
    import torch

    if torch.cuda.is_available():
        bf16 = bool(torch.cuda.is_bf16_supported())
        return {"bf16": bf16, "fp16": not bf16, "use_cpu": False}
    return {"bf16": False, "fp16": False, "use_cpu": True}


def resolve_dtype(cfg: ModelConfig | str | torch.dtype = "auto") -> torch.dtype:
    """``"auto"``: bf16 on a CUDA GPU that supports it, fp16 on other CUDA GPUs, float32 on CPU.

    Also accepts a ModelConfig (its ``dtype``), a name (``"float32"``, ``"bf16"``, ...) or a torch.dtype.
    """
    import torch

    value = cfg.dtype if isinstance(cfg, ModelConfig) else cfg
    if isinstance(value, torch.dtype):
        return value
    names = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
    if value == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if value not in names:
        raise ValueError(f"Unknown dtype {value!r}: use 'auto' or one of {', '.join(names)}.")
    return names[value]


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(path_or_name: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` with the course's chat template (and pad token) applied."""
    from transformers import AutoTokenizer

    return apply_template(AutoTokenizer.from_pretrained(str(path_or_name)))


def load_causal_lm(
    path_or_name: str | Path,
    profile_or_dtype: Profile | ModelConfig | str | torch.dtype = "auto",
    device: str | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` in the resolved dtype, moved to ``device`` (default: cuda if
    available, else cpu). ``kwargs`` go to ``from_pretrained``."""
    from transformers import AutoModelForCausalLM

    spec = profile_or_dtype.model if isinstance(profile_or_dtype, Profile) else profile_or_dtype
    dtype = resolve_dtype(spec)
    local = Path(str(path_or_name)).exists()
    with _quiet_transformers() if local else contextlib.nullcontext():
        model = AutoModelForCausalLM.from_pretrained(str(path_or_name), dtype=dtype, **kwargs)
    if "device_map" not in kwargs:
        model.to(device or _default_device())
    _set_causal_lm_loss(model)
    return model


def _set_causal_lm_loss(model: Any) -> None:
    """GPT-2's class name (``GPT2LMHeadModel``) does not tell transformers 5 which loss to use, so it warns
    once ("loss_type=None ... unrecognized") and uses the causal-LM loss anyway: say so up front."""
    if getattr(model, "loss_type", "unset") is None:
        model.loss_type = "ForCausalLM"


def _sync_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make the model's config/generation config agree with the tokenizer's pad/eos ids."""
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def load_base(profile: Profile, progress: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The profile's base model and tokenizer (chat template applied), in eval mode.

    tiny: the cached base of :func:`build_tiny_base` (built first if missing); otherwise the Hub model
    ``profile.model.name``.
    """
    source: str | Path = build_tiny_base(profile, progress) if profile.model.name == "tiny" else profile.model.name
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, profile)
    _sync_special_tokens(model, tokenizer)
    model.eval()
    return model, tokenizer


def bnb_4bit_config(qlora_cfg: QLoRAConfig, compute_dtype: torch.dtype | None = None):
    """``BitsAndBytesConfig`` for QLoRA: nf4 (per ``qlora_cfg``), double quantization, compute dtype."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=qlora_cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=qlora_cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute_dtype or resolve_dtype("auto"),
    )


def _import_bitsandbytes():
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
    resolved dtype is returned instead -- with a printed warning in the first case -- so LoRA still works.
    Check ``getattr(model, "is_loaded_in_4bit", False)``.

    On CPU the Linear4bit layers' AVX512-BF16 inference repacking is switched off: bitsandbytes 0.50 repacks
    the weights at the first eval-mode forward, and training after that (e.g. generate, then train) fails.
    """
    if not qlora_cfg.load_in_4bit:
        return load_causal_lm(path_or_name, "auto", device=device, **kwargs)
    from transformers import AutoModelForCausalLM

    device = device or _default_device()
    try:
        bnb = _import_bitsandbytes()
        local = Path(str(path_or_name)).exists()
        with _quiet_transformers() if local else contextlib.nullcontext():
            model = AutoModelForCausalLM.from_pretrained(
                str(path_or_name),
                quantization_config=bnb_4bit_config(qlora_cfg),
                dtype=resolve_dtype("auto"),
                device_map={"": device},
                **kwargs,
            )
    except Exception as e:  # noqa: BLE001 - any failure of the 4-bit path means: fall back, loudly
        print(
            f"WARNING: bitsandbytes could not load {path_or_name} in 4 bits ({type(e).__name__}: {e}).\n"
            "         Falling back to the plain (non-quantized) model: LoRA still trains, without the memory saving."
        )
        return load_causal_lm(path_or_name, "auto", device=device, **kwargs)
    _set_causal_lm_loss(model)
    if device == "cpu":
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                module.support_avx512bf16_for_cpu = False
    return model


def lora_config(qlora_cfg: QLoRAConfig, model: Any = None, task_type: str = "CAUSAL_LM") -> LoraConfig:
    """``peft.LoraConfig`` from the QLoRA settings.

    ``target_modules="all-linear"`` works for every architecture here: peft 0.21 matches ``nn.Linear`` *and*
    transformers' ``Conv1D`` (GPT-2's c_attn/c_proj/c_fc), the output head excluded. Pass ``model`` to set
    ``fan_in_fan_out`` for Conv1D models (GPT-2) up front; else peft sets it itself, with a warning.
    """
    from peft import LoraConfig

    fan_in_fan_out = False
    if model is not None:
        from transformers.pytorch_utils import Conv1D

        fan_in_fan_out = any(isinstance(m, Conv1D) for m in model.modules())
    target = qlora_cfg.target_modules
    return LoraConfig(
        r=qlora_cfg.lora_r,
        lora_alpha=qlora_cfg.lora_alpha,
        lora_dropout=qlora_cfg.lora_dropout,
        target_modules=target if isinstance(target, str) else list(target),
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
        task_type=task_type,
    )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; tied weights counted once. 4-bit weights count their
    logical size (a packed uint8 tensor holds two 4-bit values)."""
    trainable = total = 0
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        n = param.numel()
        if param.__class__.__name__ == "Params4bit" or getattr(param, "quant_state", None) is not None:
            n = math.prod(param.quant_state.shape) if param.quant_state is not None else n * 2
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


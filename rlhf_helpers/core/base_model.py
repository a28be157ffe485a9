"""The base model of every profile: a hub model, or the tiny one built offline from the course data alone.

* :func:`load_base` -- the profile's base model and tokenizer (tiny: built first if missing; notebook 01).

* **Tokenizer** -- :func:`train_tokenizer` trains a byte-level BPE tokenizer (``tokenizers`` library) on
  the course's own texts (:func:`course_texts`) and wraps it as a transformers
  ``PreTrainedTokenizerFast``. Specials: ``<|endoftext|>`` (bos = eos = unk) and ``<|pad|>`` (pad);
  ``padding_side="left"`` for generation. TRL's collators pad explicitly (SFT/reward pad right, prompts left).
* **Model** -- :func:`build_tiny_model` (GPT-2 architecture from :class:`ModelConfig`), :func:`pretrain` (brief
  causal-LM pretraining on generic topic prose) and :func:`build_tiny_base` (tokenizer + model + pretraining,
  cached in ``outputs/checkpoints/base``).

torch/transformers are imported inside the functions so ``import rlhf_helpers`` stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import BASE_INFO, atomic_dir, read_json, write_json
from .chat import (
    ASSISTANT_PREFIX,
    EOS_TOKEN,
    HUMAN_PREFIX,
    PAD_TOKEN,
    apply_template,
    format_example,
    format_prompt,
)
from .config import ModelConfig, Profile
from .loading import load_model, quiet_transformers, set_causal_lm_loss

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

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
            f"(or `python -m rlhf_helpers.course_dataset --out {data_dir}`)."
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


def unseen_in_pretraining(tokenizer: PreTrainedTokenizerBase, data_dir: str | Path, prompts: Sequence[str],
                          responses: Sequence[str]) -> dict[str, float]:
    """Share of the prompt tokens and of the response tokens (occurrences, chat-formatted as SFT trains on
    them) whose ids never occur in the tiny base's pretraining text: tokens pretraining never fed to the model,
    whose input embeddings it never trained as inputs. ``{"prompt": share, "response": share}``."""
    seen = {tokenizer.eos_token_id}  # pretraining ends every text with eos (pack_texts)
    for row in tokenizer(list(pretrain_texts(data_dir)), add_special_tokens=False)["input_ids"]:
        seen.update(row)
    heads = tokenizer([format_prompt(tokenizer, p) for p in prompts], add_special_tokens=False)["input_ids"]
    fulls = tokenizer([format_example(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)],
                      add_special_tokens=False)["input_ids"]
    counts = {"prompt": [0, 0], "response": [0, 0]}  # [unseen, all]
    for head, full in zip(heads, fulls, strict=True):
        for part, ids in (("prompt", full[: len(head)]), ("response", full[len(head):])):
            counts[part][0] += sum(i not in seen for i in ids)
            counts[part][1] += len(ids)
    return {part: unseen / max(total, 1) for part, (unseen, total) in counts.items()}


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
        activation_function=cfg.activation_function,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    set_causal_lm_loss(model)
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
    output directory, dataset conversion or log silencing, and is bit-for-bit deterministic for a seed on one thread
    (on several, the order of float sums can vary between runs in the last bits, and the runs drift apart).
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
            old = read_json(info_path)
            built_with = (old["model_config"], old["seed"])
        except (ValueError, KeyError):
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
    info = {
        "parameters": model.num_parameters(),
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
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        write_json(tmp / BASE_INFO, info)

    return atomic_dir(target, write)  # a stale or incomplete base: ours to replace


def read_base_info(path: str | Path) -> dict[str, Any]:
    """The ``base_info.json`` of a built tiny base (directory or file path)."""
    path = Path(path)
    return read_json(path / BASE_INFO if path.is_dir() else path)



def load_base(profile: Profile, progress: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The profile's base model and tokenizer (chat template applied), in eval mode.

    tiny: the cached base of :func:`build_tiny_base` (built first if missing); otherwise the Hub model
    ``profile.model.name``.
    """
    source: str | Path = build_tiny_base(profile, progress) if profile.model.name == "tiny" else profile.model.name
    return load_model(source, profile)

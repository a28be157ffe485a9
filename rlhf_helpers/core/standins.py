"""Hub-shaped stand-ins, built offline from the course data, for running the Hub profiles' code paths without the Hub.

No machine of this project reaches the Hub. These stand-ins have the *shape* of what the ``colab`` profile loads
(not its knowledge): a GPT-2-architecture model whose tokenizer, like ``gpt2``'s, has no pad token and no chat
template; a DeBERTa-v2 sequence-classification model with one output, as the judge
``OpenAssistant/reward-model-deberta-v3-large-v2``; and a preference file shaped like
``Dahoas/synthetic-instruct-gptj-pairwise`` (``prompt``/``chosen``/``rejected`` and nothing else: none of the course
data's annotations). :func:`build` writes them and the ``$RLHF_HUB_MAP`` value that points the profile's Hub ids at
them (:mod:`rlhf_helpers.core.hub`). Their weights are random: they prove that the code paths run, not what they
learn.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .base_model import build_tiny_model, course_texts, train_tokenizer
from .config import EvalConfig, ModelConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

GPT2 = "gpt2"
DAHOAS = "Dahoas/synthetic-instruct-gptj-pairwise"
JUDGE = EvalConfig().hub_judge  # the colab profile's judge on Hub data


def course_tokenizer(data_dir: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (1024 tokens, ``<|endoftext|>`` and ``<|pad|>``) trained on the course texts."""
    return train_tokenizer(course_texts(data_dir), vocab_size=1024, model_max_length=1024)


def gpt2_standin(out: Path, tokenizer: PreTrainedTokenizerFast, cfg: ModelConfig | None = None,
                 seed: int = 0) -> Path:
    """Save (``save_pretrained``) a random GPT-2-architecture model sized by ``cfg`` (default: 2 layers of 64) with
    (a copy of) ``tokenizer`` (:func:`course_tokenizer`): ``<|endoftext|>`` is its bos/eos/unk, and as in ``gpt2`` it
    has no pad token and no chat template (the course's loaders add both)."""
    cfg = cfg or ModelConfig(n_embd=64, n_layer=2, n_head=2, n_positions=512)
    tokenizer = copy.deepcopy(tokenizer)
    model = build_tiny_model(cfg, tokenizer, seed)
    model.config.pad_token_id = model.generation_config.pad_token_id = None
    tokenizer.pad_token = None
    tokenizer.chat_template = None
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def judge_standin(out: Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Path:
    """Save a random DeBERTa-v2 ``ForSequenceClassification`` model with one output (2 layers of 64), the shape of
    the Hub judge, with (a copy of) ``tokenizer``: the real judge's sentencepiece tokenizer cannot be rebuilt
    offline, and the judge's code only needs (prompt, answer) text pairs in and one score out."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = None
    config = DebertaV2Config(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128, max_position_embeddings=512, num_labels=1,
                             pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DebertaV2ForSequenceClassification(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def dahoas_standin(out: Path, data_dir: Path, rows: int = 1000) -> Path:
    """Write the first ``rows`` course preference pairs as ``prompt``/``chosen``/``rejected`` JSON lines (the columns
    of ``Dahoas/synthetic-instruct-gptj-pairwise``), dropping the course's own columns (topic, failure, ...)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(data_dir) / "preferences.jsonl", encoding="utf-8") as f:
        pairs = [json.loads(line) for _, line in zip(range(rows), f, strict=False)]
    out.write_text("".join(json.dumps({k: p[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for p in pairs),
                   encoding="utf-8")
    return out


def build(out: Path, data_dir: Path, rows: int = 1000) -> str:
    """The three stand-ins under ``out``; returns the ``$RLHF_HUB_MAP`` value that maps ``gpt2``, the judge and the
    Dahoas id to them."""
    tokenizer = course_tokenizer(data_dir)
    model = gpt2_standin(Path(out) / "gpt2", tokenizer)
    judge = judge_standin(Path(out) / "judge", tokenizer)
    data = dahoas_standin(Path(out) / "dahoas.jsonl", data_dir, rows)
    return f"{GPT2}={model};{JUDGE}={judge};{DAHOAS}={data}"

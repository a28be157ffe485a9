"""Hub-shaped stand-ins, built offline from the course data, for running the Hub profiles' code paths without the Hub.

No machine of this project reaches the Hub. These stand-ins have the *shape* of what the ``colab`` and ``cpu``
profiles load (not its knowledge): GPT-2-architecture models whose tokenizer, like ``gpt2``'s and ``distilgpt2``'s,
has no pad token and no chat template; DeBERTa-v2 sequence-classification models with one output, as the judges
``OpenAssistant/reward-model-deberta-v3-large-v2`` and ``-base``; T5 encoder-decoders shaped as ``google/flan-t5-base``
and ``-small`` (notebook 10); for notebook 09's sentiment control, a GPT-2 stand-in for ``lvwerra/gpt2-imdb``, a
two-label DistilBERT classifier shaped as ``lvwerra/distilbert-imdb`` and reviews shaped as ``stanfordnlp/imdb``
(``text``, ``label``); and a preference file shaped like
``Dahoas/synthetic-instruct-gptj-pairwise`` (``prompt``/``chosen``/``rejected`` and nothing else: none of the course
data's annotations). For a user's own choices: a Qwen2-architecture model whose tokenizer has a ChatML template,
eos ``<|im_end|>`` and pad ``<|endoftext|>`` (as ``Qwen/Qwen2.5-0.5B-Instruct``), and chat-message preference pairs
shaped like ``trl-lib/ultrafeedback_binarized``. :func:`build` writes them all and the ``$RLHF_HUB_MAP`` value that
points those Hub ids at them (:mod:`rlhf_helpers.core.hub`). Their weights are random: they prove that the code
paths run, not what they learn.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .base_model import build_tiny_model, course_texts, train_tokenizer
from .config import IMDB_SENTIMENT, EvalConfig, ModelConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

GPT2 = "gpt2"
DISTILGPT2 = "distilgpt2"  # the cpu profile's model
DAHOAS = "Dahoas/synthetic-instruct-gptj-pairwise"
JUDGE = EvalConfig().hub_judge  # the colab profile's judge on Hub data
CPU_JUDGE = "OpenAssistant/reward-model-deberta-v3-base"  # the cpu profile's
QWEN2 = "Qwen/Qwen2.5-0.5B-Instruct"
FLAN_T5 = "google/flan-t5-base"  # the colab profile's encoder-decoder policy (notebook 10)
FLAN_T5_SMALL = "google/flan-t5-small"  # the cpu profile's
ULTRAFEEDBACK = "trl-lib/ultrafeedback_binarized"
GPT2_IMDB, DISTILBERT_IMDB, IMDB = IMDB_SENTIMENT.policy, IMDB_SENTIMENT.classifier, IMDB_SENTIMENT.dataset  # notebook 09
CHATML = ("{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}")


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


def qwen2_standin(out: Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Path:
    """Save a random Qwen2-architecture causal LM (2 layers of 64, grouped-query attention) with (a copy of)
    ``tokenizer`` made ChatML-shaped as ``Qwen/Qwen2.5-0.5B-Instruct``'s: ``<|im_start|>``/``<|im_end|>`` added,
    eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos, a ChatML chat template (the course replaces it with its own)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token = "<|im_end|>", "<|endoftext|>", None
    tokenizer.chat_template = CHATML
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def save_random(out: Path, model_class: type, config: object, tokenizer: PreTrainedTokenizerFast, seed: int) -> Path:
    """A ``model_class(config)`` with seeded random weights (the global RNG untouched), saved with ``tokenizer``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def t5_standin(out: Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Path:
    """Save a random T5 encoder-decoder (``T5ForConditionalGeneration``, 2 + 2 blocks of 64) with (a copy of)
    ``tokenizer`` made shaped as ``google/flan-t5-base``'s: pad ``<pad>`` (also the decoder's start token), eos
    ``</s>``, no bos, no chat template; gated-GELU feed-forward layers, as Flan-T5's."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_special_tokens({"pad_token": "<pad>", "eos_token": "</s>"})
    tokenizer.bos_token, tokenizer.chat_template = None, None
    config = T5Config(vocab_size=len(tokenizer), d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2,
                      num_decoder_layers=2, feed_forward_proj="gated-gelu",
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    return save_random(out, T5ForConditionalGeneration, config, tokenizer, seed)


def judge_standin(out: Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Path:
    """Save a random DeBERTa-v2 ``ForSequenceClassification`` model with one output (2 layers of 64), the shape of
    the Hub judge, with (a copy of) ``tokenizer``: the real judge's sentencepiece tokenizer cannot be rebuilt
    offline, and the judge's code only needs (prompt, answer) text pairs in and one score out."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = None
    config = DebertaV2Config(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128, max_position_embeddings=512, num_labels=1,
                             pad_token_id=tokenizer.pad_token_id)
    return save_random(out, DebertaV2ForSequenceClassification, config, tokenizer, seed)


def distilbert_standin(out: Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Path:
    """Save a random DistilBERT ``ForSequenceClassification`` model with the labels ``NEGATIVE`` / ``POSITIVE`` (2
    layers of 64), the shape of ``lvwerra/distilbert-imdb``, with (a copy of) ``tokenizer`` that, like DistilBERT's,
    gives no token type ids."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = None
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    labels = {0: "NEGATIVE", 1: "POSITIVE"}
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=64, n_layers=2, n_heads=2, hidden_dim=128,
                              max_position_embeddings=512, num_labels=2, id2label=labels,
                              label2id={v: k for k, v in labels.items()}, pad_token_id=tokenizer.pad_token_id)
    return save_random(out, DistilBertForSequenceClassification, config, tokenizer, seed)


def imdb_standin(out: Path, data_dir: Path, rows: int = 1000) -> Path:
    """``rows`` of the course's film reviews as IMDB has them: ``text`` and ``label`` (0 negative, 1 positive),
    nothing else (no ``opening``: prompts are then cut from the reviews' first tokens, as on IMDB)."""
    reviews = [json.loads(line) for line in (data_dir / "reviews.jsonl").read_text(encoding="utf-8").splitlines()]
    out.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in reviews[:rows]),
                   encoding="utf-8")
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


def ultrafeedback_standin(out: Path, data_dir: Path, rows: int = 1000) -> Path:
    """Write the first ``rows`` course preference pairs as chat-message pairs shaped like
    ``trl-lib/ultrafeedback_binarized``: ``chosen`` and ``rejected`` are ``[user, assistant]`` message lists, beside
    ``score_chosen`` and ``score_rejected`` (UltraFeedback's 1-10 ratings; here 10 and 1: the course pairs have none)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(data_dir) / "preferences.jsonl", encoding="utf-8") as f:
        pairs = [json.loads(line) for _, line in zip(range(rows), f, strict=False)]

    def chat(p: dict, answer: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p[answer]}]

    rows_out = [{"chosen": chat(p, "chosen"), "rejected": chat(p, "rejected"), "score_chosen": 10.0,
                 "score_rejected": 1.0} for p in pairs]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows_out), encoding="utf-8")
    return out


def build(out: Path, data_dir: Path, rows: int = 1000) -> str:
    """Every stand-in under ``out``; returns the ``$RLHF_HUB_MAP`` value that maps ``gpt2`` and ``distilgpt2``, both
    judges, the Qwen2 model, both Flan-T5 models, notebook 09's IMDB writer, classifier and reviews, and both
    preference datasets' ids to them."""
    out, tokenizer = Path(out), course_tokenizer(data_dir)
    model = gpt2_standin(out / "gpt2", tokenizer)
    judge = judge_standin(out / "judge", tokenizer)
    pairs = {GPT2: model, DISTILGPT2: gpt2_standin(out / "distilgpt2", tokenizer, seed=1),
             JUDGE: judge, CPU_JUDGE: judge_standin(out / "judge-base", tokenizer, seed=1),
             QWEN2: qwen2_standin(out / "qwen2", tokenizer), DAHOAS: dahoas_standin(out / "dahoas.jsonl", data_dir, rows),
             FLAN_T5: t5_standin(out / "flan-t5-base", tokenizer),
             FLAN_T5_SMALL: t5_standin(out / "flan-t5-small", tokenizer, seed=1),
             GPT2_IMDB: gpt2_standin(out / "gpt2-imdb", tokenizer, seed=2),
             DISTILBERT_IMDB: distilbert_standin(out / "distilbert-imdb", tokenizer),
             IMDB: imdb_standin(out / "imdb.jsonl", data_dir, rows),
             ULTRAFEEDBACK: ultrafeedback_standin(out / "ultrafeedback.jsonl", data_dir, rows)}
    return ";".join(f"{name}={path}" for name, path in pairs.items())

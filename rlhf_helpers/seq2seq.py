"""Notebook 10: an encoder-decoder (T5-architecture) policy through the course's SFT, PPO and evaluation.

The encoder reads the prompt in the course's chat format; the decoder writes the answer. Each stage is the course's
own, made to work for both architectures:

* **Start** -- :func:`load_start`: tiny, a small T5 built from :class:`~rlhf_helpers.core.config.Seq2SeqConfig`'s
  sizes with the tiny base's tokenizer (:func:`build_tiny_t5`; its token embeddings random, or the tiny GPT-2
  base's with ``embeddings_from_base``); elsewhere a Hub encoder-decoder (colab: ``google/flan-t5-base``).
* **SFT** -- :func:`train_sft`: ``transformers.Seq2SeqTrainer`` with ``DataCollatorForSeq2Seq`` on the course's SFT
  pairs (the loss is on the answer by construction: the answer is the decoder's target, the prompt the encoder's
  input). Not TRL's ``SFTTrainer``: it tokenizes prompt and answer into one causal sequence. Saved to checkpoint
  ``seq2seq_sft``.
* **PPO** -- :func:`train_ppo`: :class:`rlhf_helpers.ppo.PPOTrainerLite`, unchanged; the generation helper and
  ``lm_forward`` (:mod:`rlhf_helpers.core.generation`) put the query into the encoder and take log-probs and the
  value head's hidden states off the decoder. The reward is notebook 04's reward model: a decoder-only model that
  scores (prompt, answer) text, whoever wrote the answer. Saved to checkpoint ``seq2seq_ppo``.
* **Evaluation** -- :func:`evaluate`: before (SFT) and after PPO on the held-out prompts, with
  :func:`rlhf_helpers.core.compare.evaluate_policies`: the learned reward, ROUGE and BLEU against the references,
  the judge (gold rubric on the course data), the win rate and the KL to the SFT model; :func:`save_results` writes
  ``results/seq2seq.csv``.

The checkpoints and results have names of their own: nothing another notebook wrote is overwritten.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ppo
from .core import artifacts, base_model, loading
from .core.chat import format_prompt
from .core.config import PPOConfig, Profile, Seq2SeqConfig
from .core.hub import resolve

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from datasets import Dataset
    from matplotlib.figure import Figure
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .core.compare import Evaluation
    from .data_prep import Heldout, PreparedData

SFT_STAGE = "seq2seq_sft"  # checkpoint folders of this notebook's own
PPO_STAGE = "seq2seq_ppo"
RESULTS = "seq2seq.csv"
SFT_LABEL, PPO_LABEL = "T5 SFT", "T5 PPO"  # the rows of the results table
RESULT_COLUMNS = ("n", "reward_mean", "judge_mean", "win_rate", "win_low", "win_high", "kl", "rouge1", "rouge2",
                  "rougeL", "bleu", "words_mean", "cut_rate")


# =============================================================================================== the model
def build_tiny_t5(cfg: Seq2SeqConfig, tokenizer: PreTrainedTokenizerBase, embeddings: torch.Tensor | None = None,
                  seed: int = 0) -> PreTrainedModel:
    """A T5 (``T5ForConditionalGeneration``) sized by ``cfg``, vocabulary ``len(tokenizer)``, shaped as T5 is: pad is
    the decoder's start token, eos ends the answer, input and output embeddings tied. Dropout off (PPO wants the
    rollout's and the update's log-probs to agree). ``embeddings`` ``[V, d_model]`` (the tiny GPT-2 base's token
    embeddings) replace the random ones, rescaled to T5's initial scale (std 1: T5 does not scale its input
    embeddings, and its tied output head multiplies by ``d_model ** -0.5``)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=cfg.d_model, d_ff=cfg.d_ff, d_kv=cfg.d_kv,
                      num_heads=cfg.num_heads, num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers,
                      dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      bos_token_id=tokenizer.bos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                      tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    if embeddings is not None:
        if tuple(embeddings.shape) != (len(tokenizer), cfg.d_model):
            raise ValueError(f"embeddings {tuple(embeddings.shape)} do not fit vocabulary x d_model "
                             f"({len(tokenizer)}, {cfg.d_model})")
        with torch.no_grad():
            model.shared.weight.copy_(embeddings / embeddings.std())
    loading.sync_special_tokens(model, tokenizer)
    return model


def load_seq2seq(path_or_name: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """An encoder-decoder model in float32 on the course's device (eval mode) and its tokenizer with the course's
    chat template, from a folder or a Hub name. Float32: T5 overflows in fp16 (``loading.precision``); training
    uses mixed precision where the GPU has bf16."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    tokenizer = loading.load_tokenizer(path_or_name)
    source = resolve(path_or_name)
    with loading.loading_from(source):
        model = AutoModelForSeq2SeqLM.from_pretrained(str(source), dtype=torch.float32)
    loading.sync_special_tokens(model, tokenizer)
    return model.to(loading.precision().device).eval(), tokenizer


def load_start(profile: Profile) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy before SFT: tiny, :func:`build_tiny_t5` with the tiny base's tokenizer (and, with
    ``embeddings_from_base``, its token embeddings); otherwise the Hub model ``profile.seq2seq.model``."""
    cfg = profile.seq2seq
    if cfg.model != "tiny":
        return load_seq2seq(cfg.model)
    base, tokenizer = base_model.load_base(profile)
    embeddings = base.get_input_embeddings().weight.detach() if cfg.embeddings_from_base else None
    return build_tiny_t5(cfg, tokenizer, embeddings, cfg.seed).to(loading.precision().device), tokenizer


# ==================================================================================================== SFT
def sft_features(pairs: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """``prompt``/``response`` pairs -> ``input_ids``/``attention_mask`` (the formatted prompt, its last
    ``max_length`` tokens: the end holds the ``Assistant:`` cue) and ``labels`` (``" " + response``, cut to
    ``max_length - 1`` tokens, then eos: the model learns to stop)."""

    def encode(row: dict[str, str]) -> dict[str, list[int]]:
        source = tokenizer(format_prompt(tokenizer, row["prompt"]), add_special_tokens=False)["input_ids"]
        target = tokenizer(" " + row["response"], add_special_tokens=False)["input_ids"][: max_length - 1]
        source = source[-max_length:]
        return {"input_ids": source, "attention_mask": [1] * len(source),
                "labels": target + [tokenizer.eos_token_id]}

    with loading.quiet_datasets():
        return pairs.map(encode, remove_columns=pairs.column_names)


@dataclass
class Seq2SeqRun:
    """An SFT run: the trained model, its tokenizer, the trainer's log (step 0 = before training), a summary."""

    model: Any
    tokenizer: Any
    history: list[dict[str, float]]
    info: dict[str, Any]
    path: Path


def train_sft(profile: Profile, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              prep: PreparedData | None = None, progress: bool = True) -> Seq2SeqRun:
    """SFT of ``model`` on the course's SFT pairs with ``Seq2SeqTrainer`` (``profile.seq2seq``'s schedule, the
    course's precision and optimizer), the eval loss before, during and after; saved atomically to checkpoint
    ``seq2seq_sft`` (model, tokenizer, ``log_history.json``, ``train_info.json`` last)."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from .data_prep import load_prepared

    prep = prep if prep is not None else load_prepared(profile)
    cfg = profile.seq2seq
    train, evaluation = (sft_features(prep.sft[s], tokenizer, cfg.max_length) for s in ("train", "eval"))
    # the labels must be padded on the right (the decoder reads them left to right); the course's tokenizers pad
    # on the left, for generation
    right = copy.deepcopy(tokenizer)
    right.padding_side = "right"
    collator = DataCollatorForSeq2Seq(right, model=model, label_pad_token_id=-100)

    def write(tmp: Path) -> None:
        nonlocal history, info
        kwargs = loading.trainer_kwargs(cfg, tmp / "_trainer", progress, model.config.model_type, trl=False)
        args = Seq2SeqTrainingArguments(**kwargs, eval_strategy="steps")  # sft_features cuts to cfg.max_length
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train, eval_dataset=evaluation,
                                 data_collator=collator, processing_class=tokenizer)
        initial = trainer.evaluate()
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        if trainer.state.global_step % cfg.eval_steps:  # the last point of the eval curve: the final model
            trainer.evaluate()
        history = [{"step": 0, **initial}, *trainer.state.log_history]
        evals = [r["eval_loss"] for r in history if "eval_loss" in r]
        info = {"stage": SFT_STAGE, "base": cfg.model, "parameters": model.num_parameters(),
                "initial_eval_loss": evals[0], "eval_loss": evals[-1], "train_seconds": seconds,
                "steps": trainer.state.global_step, "config": dataclasses.asdict(cfg)}
        model.eval()
        with loading.quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        artifacts.write_json(tmp / artifacts.LOG_HISTORY, history)
        artifacts.write_json(tmp / artifacts.TRAIN_INFO, info)  # written last

    history: list[dict[str, float]] = []
    info: dict[str, Any] = {}
    path = artifacts.atomic_dir(profile.paths.checkpoint(SFT_STAGE), write)
    return Seq2SeqRun(model, tokenizer, history, info, path)


# ==================================================================================================== PPO
def ppo_config(profile: Profile) -> PPOConfig:
    """Notebook 05's PPO settings (``profile.ppo``) with the seq2seq run's updates, batch, learning rate and beta."""
    cfg = profile.seq2seq
    return dataclasses.replace(profile.ppo, total_updates=cfg.ppo_updates, batch_size=cfg.ppo_batch_size,
                               learning_rate=cfg.ppo_learning_rate, kl_coef=cfg.ppo_kl_coef)


def train_ppo(profile: Profile, sft: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, reward_source: Any,
              prompts: Sequence[str], extra_metrics: Mapping[str, ppo.ExtraMetric] | None = None,
              callbacks: Iterable[ppo.Callback | Callable[[dict[str, Any]], None]] | None = None,
              progress: bool = True) -> ppo.PPOResult:
    """PPO (:func:`rlhf_helpers.ppo.train_ppo`, :func:`ppo_config`) of a copy of ``sft`` against ``reward_source``;
    ``sft`` itself is the frozen reference. The final policy, its tokenizer and the log (``log.jsonl``) are saved
    atomically to checkpoint ``seq2seq_ppo``. The trainer freezes ``sft`` (its reference); the copy is made
    trainable, so a second run from the same ``sft`` (an exercise's) trains as the first did."""
    policy = copy.deepcopy(sft).requires_grad_(True)
    result = ppo.train_ppo(policy, sft, tokenizer, reward_source, prompts, ppo_config(profile),
                           callbacks=callbacks, extra_metrics=extra_metrics, progress=progress)

    def write(tmp: Path) -> None:
        with loading.quiet_transformers():
            result.policy.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        artifacts.write_jsonl(result.history, tmp / artifacts.PPO_LOG)

    artifacts.atomic_dir(profile.paths.checkpoint(PPO_STAGE), write)
    return result


def plot_ppo(result: ppo.PPOResult) -> Figure:
    """The run's learned reward, KL, answer length and (when logged) judge score per update."""
    from .ppo_runs import plot_history

    return plot_history(result.history, ["objective/scores", "objective/kl", "val/response_length", "objective/gold"],
                        ncols=4, title="PPO of the T5 policy against the learned reward model")


# ============================================================================================= evaluation
def evaluate(profile: Profile, sft: PreTrainedModel, trained: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
             held: Heldout, reward_source: Any, judge: Any, progress: bool = False) -> Evaluation:
    """The SFT model (before) and the PPO policy (after) on the first ``profile.seq2seq.eval_prompts`` held-out
    prompts, greedy (``profile.eval``): learned reward, ROUGE/BLEU against the references, the judge, the win rate
    and KL against the SFT model (:func:`rlhf_helpers.core.compare.evaluate_policies`)."""
    from .core import compare

    n = min(profile.seq2seq.eval_prompts, len(held.prompts))
    policies = {SFT_STAGE: compare.Policy(SFT_STAGE, SFT_LABEL, sft, tokenizer),
                PPO_STAGE: compare.Policy(PPO_STAGE, PPO_LABEL, trained, tokenizer)}
    cfg = dataclasses.replace(profile.eval, reference_policy=SFT_STAGE)
    return compare.evaluate_policies(policies, held.prompts[:n], held.references[:n], reward_source, judge, cfg,
                                     progress=progress, splits=held.splits[:n])


def save_results(ev: Evaluation, profile: Profile, ppo_seconds: float) -> pd.DataFrame:
    """The before/after table (one row per policy: :data:`RESULT_COLUMNS` and PPO's seconds per update), written
    atomically to ``results/seq2seq.csv``; returned."""
    from .evaluation import markdown_table

    table = ev.results[list(RESULT_COLUMNS)].assign(s_per_update=[None, ppo_seconds])
    artifacts.write_csv(table, profile.paths.result(RESULTS))
    before, after = table.loc[SFT_LABEL], table.loc[PPO_LABEL]
    text = ["# A seq2seq policy: T5 through SFT, PPO and the evaluation (notebook 10)", "",
            "_Generated by `notebooks/10_seq2seq_policy.ipynb` (`rlhf_helpers.seq2seq.save_results`)._ "
            f"The held-out prompts answered greedily by the T5 after SFT and after PPO against notebook 04's reward model: "
            f"learned reward {before.reward_mean:.3f} -> {after.reward_mean:.3f}, judge {before.judge_mean:.3f} -> "
            f"{after.judge_mean:.3f}, ROUGE-L {before.rougeL:.3f} -> {after.rougeL:.3f}, BLEU {before.bleu:.3f} -> "
            f"{after.bleu:.3f}, KL to SFT {after.kl:.2f} nats.", "", markdown_table(table.drop(columns="s_per_update")),
            ""]
    artifacts.write_text(profile.paths.result("seq2seq.md"), "\n".join(text))
    return table


# ============================================================================================= exercises
class RougeReward:
    """A reward source (``score(prompts, responses)``) whose reward is the ROUGE-L F1 of each answer against the
    reference answer of its prompt (notebook 10, exercise 4): a reward that pays for the reference's words."""

    name = "rougeL"

    def __init__(self, references: Mapping[str, str]):
        if not references:
            raise ValueError("RougeReward needs at least one prompt -> reference pair")
        self.references = dict(references)

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """``[N]`` ROUGE-L F1 in ``[0, 1]``; a prompt without a reference raises ``KeyError``, naming it."""
        import torch

        from .core.text_metrics import rouge_per_example

        missing = [p for p in prompts if p not in self.references]
        if missing:
            raise KeyError(f"no reference for prompt {missing[0]!r} ({len(missing)} prompt(s) without one)")
        refs = [self.references[p] for p in prompts]
        return torch.tensor(rouge_per_example(list(responses), refs)["rougeL"], dtype=torch.float32)


def beam_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                 num_beams: int, max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """The answers of an encoder-decoder ``model`` to ``prompts`` (each in the course's chat format, as
    :func:`rlhf_helpers.core.generation.generate` formats them) by beam search with ``num_beams`` beams
    (``num_beams=1``: greedy), at most ``max_new_tokens`` tokens, special tokens dropped."""
    import torch

    device = next(model.parameters()).device
    out: list[str] = []
    model.eval()
    for i in range(0, len(prompts), batch_size):
        texts = [format_prompt(tokenizer, p) for p in prompts[i : i + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            ids = model.generate(**enc, num_beams=num_beams, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out

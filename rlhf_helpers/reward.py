"""Stage 2 of RLHF: a reward model -- one scalar per (prompt, response) that predicts which answer people prefer --
and every other kind of reward, behind one interface for PPO.

**Training** (:func:`train_reward_model`). The backbone (the SFT checkpoint ``sft_full`` by default, any causal LM,
or on Colab a separate encoder) gets a linear scalar head (``AutoModelForSequenceClassification``, ``num_labels=1``)
and is trained with TRL's ``RewardTrainer`` on the Bradley-Terry loss
``-log sigmoid(r(x, y_chosen) - r(x, y_rejected) [- margin])``; optionally with LoRA adapters (merged before saving).
How TRL's trainer sees the text, and how we match it:

* it joins ``prompt + chosen`` as *strings*, appends EOS when missing, and tokenizes with ``tokenizer(text)``. We
  hand it ``prompt = format_prompt(...)`` and ``chosen = " " + answer + eos``, so it tokenizes exactly
  :func:`rlhf_helpers.core.chat.format_example` -- the text :class:`RewardModelSource` scores;
* it **drops** pairs longer than ``max_length`` tokens (it never truncates): :func:`train_reward_model` reports how
  many (``RewardRun.dropped``);
* its collator pads on the **right**; the head reads the hidden state of the *last non-pad token* (GPT-2 style
  sequence classification locates it through ``config.pad_token_id``), i.e. the EOS. So the pad token must differ
  from EOS: for tokenizers where pad == eos (gpt2) :func:`load_backbone` adds a ``<|pad|>`` token -- otherwise the
  EOS itself would count as padding and the score would be read one token earlier.

**Scoring** (:class:`RewardModelSource`): batched, no grad, right padding, the same text (EOS included). A text
longer than the scorer's ``max_length`` (default: the model's position limit) is cut on the **left**, so the end of
the answer and its EOS -- where the score is read -- are kept; ``num_truncated`` counts such texts.

**Evaluation** (:func:`score_pairs`, :func:`accuracy_table`, :func:`gold_agreement`): pairwise accuracy on held-out
pairs before training (same backbone, fresh random head = chance level: a head ``w`` and its mirror ``-w`` are
equally likely and their accuracies add up to 100%) and after, on clean-label pairs, all pairs and per failure
type; agreement with the gold judge. :func:`fit_normalization` shifts/scales scores so the held-out *reference*
answers score mean 0 and standard deviation 1 -- PPO's rewards are then on a known scale.

**Reward sources** (the interface PPO and the evaluation consume)::

    class RewardSource(Protocol):
        name: str
        def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor: ...  # [B] float32, CPU

:class:`RewardModelSource` (the learned reward model), programmatic rewards (:class:`LengthReward`,
:class:`LexiconSentimentReward`, :class:`PolitenessReward`, :class:`RepetitionPenalty`,
:class:`WordFrequencyReward`), :class:`WeightedSum` of sources, and :class:`ClassifierSource` (a text classifier's
log-odds: ``lvwerra/distilbert-imdb`` in the IMDB sentiment-control experiments, notebook 09's tiny one offline).
:func:`load_reward_source` loads the trained reward model from checkpoint ``reward``.

**Regression variant** (:func:`train_regression_model`): for data with a scalar rating per response (scored
records), an MSE loss on the same scalar head. TRL has no regression reward trainer, so it is written small on
``transformers.Trainer`` (a ``num_labels=1`` sequence-classification model with float labels computes the MSE
itself).

**Blind spots** (:func:`fool_variants`, :func:`fool_table`): long, repeated, flattering, polite-but-empty,
keyword-stuffed and off-topic answers, scored by the reward model and by the gold judge.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from . import judge
from .core import artifacts, chat, loading
from .core.artifacts import LOG_HISTORY, REWARD_INFO, STAGES
from .core.config import Profile, RewardConfig
from .core.hub import resolve
from .sft_full import MERGED

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from datasets import Dataset
    from matplotlib.figure import Figure
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PAD_TOKEN = chat.PAD_TOKEN


# ============================================================================================ interface
@runtime_checkable
class RewardSource(Protocol):
    """Anything PPO can be rewarded by: ``score(prompts, responses) -> Tensor[B]`` (float32, CPU)."""

    name: str

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor: ...


def _check_batch(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"score() got {len(prompts)} prompts but {len(responses)} responses")
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if not isinstance(p, str) or not isinstance(r, str):
            raise TypeError(f"score(): item {i} must be two strings, got {type(p).__name__}, {type(r).__name__}")


def _tensor(values: Sequence[float]) -> torch.Tensor:
    import torch

    return torch.tensor(list(values), dtype=torch.float32)


# ======================================================================================= the backbone
def backbone_source(profile: Profile, base: str | None = None) -> str | Path:
    """Where the reward model's backbone comes from: a stage name (``"sft_full"``, ``"base"``...) -> that
    stage's checkpoint (``MissingStageError`` names the notebook to run first); anything else is a local path or
    a Hub model name (e.g. ``"distilroberta-base"``: a separate encoder)."""
    base = base or profile.reward.base
    if base in STAGES:
        path = profile.paths.require(base)
        merged = path / MERGED  # a QLoRA stage keeps its full model there
        return merged if merged.is_dir() else path
    return base


def load_reward_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer with the course's chat template, an EOS (encoders without one use their SEP/CLS
    token) and a pad token *different from* EOS (``<|pad|>`` is added where pad == eos, as for gpt2).

    Not :func:`rlhf_helpers.core.loading.load_tokenizer`: its chat template needs an EOS, which an encoder
    gets only here, before the template is applied."""
    from transformers import AutoTokenizer

    source = resolve(source)
    with loading.loading_from(source):
        tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.eos_token is None:  # BERT-style encoders: their end-of-text token is [SEP]
        tokenizer.eos_token = tokenizer.sep_token or tokenizer.cls_token
    chat.apply_template(tokenizer)  # sets pad = eos when there is no pad
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return tokenizer


def load_backbone(
    profile: Profile, base: str | Path | None = None, seed: int | None = None, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Backbone + a fresh scalar head: ``AutoModelForSequenceClassification(num_labels=1)`` in float32, on
    ``device`` (default cuda if available), in eval mode, with its tokenizer (:func:`load_reward_tokenizer`).

    The head is initialised from ``seed`` (default ``profile.reward.seed``): before training its scores are
    random projections of the backbone's features, i.e. chance level for ranking pairs. The causal LM's
    ``lm_head`` is not used (TRL's ``suppress_seqcls_warning`` hides the expected missing/unexpected keys).
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    source = resolve(base if base is not None else backbone_source(profile))  # a Hub id: via $RLHF_HUB_MAP
    tokenizer = load_reward_tokenizer(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(profile.reward.seed if seed is None else seed)
        with suppress_seqcls_warning(), loading.loading_from(source):
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1,
                                                                       dtype=torch.float32)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:  # the added <|pad|> token
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last token that is not padding
    model.to(device or loading.precision().device)
    return model.eval(), tokenizer


# ========================================================================================= scoring
@dataclass
class Normalization:
    """``(score - mean) / std``: ``mean``/``std`` of the raw scores of ``n`` reference answers."""

    mean: float
    std: float
    n: int = 0
    fitted_on: str = ""

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores - self.mean) / self.std


class RewardModelSource:
    """The learned reward model as a reward source.

    ``score(prompts, responses)`` -> ``Tensor[B]`` float32 on CPU: the model's scalar for
    ``chat.format_example(tokenizer, prompt, response)`` (chat format + EOS -- exactly what the RewardTrainer
    saw), computed in batches of ``batch_size`` without gradients, padded on the right (as TRL's collator), texts
    sorted by length inside a call to waste little padding. With ``normalization`` set (and ``normalize`` True)
    the scores are ``(raw - mean) / std`` (see :func:`fit_normalization`). Texts over ``max_length`` tokens
    (default: the model's position limit) keep their *last* ``max_length`` tokens; ``num_truncated`` counts them.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        normalization: Normalization | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        name: str = "reward_model",
        normalize: bool = True,
    ):
        if model.config.pad_token_id is None or model.config.pad_token_id != tokenizer.pad_token_id:
            raise ValueError("model.config.pad_token_id must be the tokenizer's pad token id "
                             f"({tokenizer.pad_token_id}); got {model.config.pad_token_id}")
        if tokenizer.pad_token_id == tokenizer.eos_token_id:
            raise ValueError("pad token == eos token: the head would read the score before the EOS. "
                             "Load the tokenizer with reward.load_reward_tokenizer (adds <|pad|>).")
        self.model = model
        self.tokenizer = tokenizer
        self.normalization = normalization
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_length = max_length or model.config.max_position_embeddings  # GPT-2: n_positions (attribute_map)
        self.name = name
        self.num_truncated = 0

    def texts(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        """What the model reads: the chat format with EOS."""
        return [chat.format_example(self.tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as TRL's trainer makes them (``tokenizer(text)``), left-truncated to ``max_length``."""
        ids = self.tokenizer(list(texts))["input_ids"]
        self.num_truncated += sum(len(x) > self.max_length for x in ids)
        return [x[-self.max_length :] for x in ids]

    def raw_scores_of_ids(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Unnormalised scores ``[B]`` (float32, CPU) of token id lists."""
        import torch
        from torch.nn.utils.rnn import pad_sequence

        if not ids:
            return torch.zeros(0)
        device = next(self.model.parameters()).device
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = torch.empty(len(ids), dtype=torch.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    seqs = [torch.tensor(ids[i], dtype=torch.long) for i in idx]
                    input_ids = pad_sequence(seqs, batch_first=True, padding_value=self.tokenizer.pad_token_id)
                    mask = pad_sequence([torch.ones_like(s) for s in seqs], batch_first=True, padding_value=0)
                    logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                    out[idx] = logits[:, 0].float().cpu()
        finally:
            self.model.train(was_training)
        return out

    def raw_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Scores ``[B]`` before normalisation."""
        _check_batch(prompts, responses)
        return self.raw_scores_of_ids(self.encode(self.texts(prompts, responses)))

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """``[B]`` float32 CPU; normalised when ``normalization`` is set and ``normalize`` is True."""
        scores = self.raw_scores(prompts, responses)
        if self.normalize and self.normalization is not None:
            scores = self.normalization.apply(scores)
        return scores


def fit_normalization(source: RewardModelSource, prompts: Sequence[str], references: Sequence[str],
                      fitted_on: str = "heldout references") -> Normalization:
    """Mean and (population) standard deviation of the raw scores of reference answers; set on ``source``.

    Afterwards ``source.score`` gives the references mean 0 and std 1: a reward of +1 means "one standard
    deviation better than a typical reference answer", whatever scale the head happened to learn.
    """
    raw = source.raw_scores(prompts, references).double()
    if len(raw) < 2:
        raise ValueError("fit_normalization needs at least two reference answers")
    std = float(raw.std(unbiased=False))
    if not std > 0:
        raise ValueError("the reference answers all get the same score: cannot normalise (is the head trained?)")
    source.normalization = Normalization(float(raw.mean()), std, len(raw), fitted_on)
    return source.normalization


# ========================================================================================= training
def trainer_dataset(pairs: Dataset, tokenizer: PreTrainedTokenizerBase, margin_column: str | None = None) -> Dataset:
    """Preference records -> the columns RewardTrainer reads: ``prompt`` = ``format_prompt(prompt)``,
    ``chosen``/``rejected`` = ``" " + answer + eos`` (so ``prompt + chosen == format_example(...)``), and
    ``margin`` (from ``margin_column``) when given. Other columns are dropped."""
    missing = [c for c in ("prompt", "chosen", "rejected", *([margin_column] if margin_column else []))
               if c not in pairs.column_names]
    if missing:
        raise ValueError(f"preference data needs columns {missing}; it has {pairs.column_names}")
    eos = tokenizer.eos_token

    def convert(r: Mapping[str, Any]) -> dict[str, Any]:
        out = {"prompt": chat.format_prompt(tokenizer, r["prompt"]),
               "chosen": " " + r["chosen"] + eos, "rejected": " " + r["rejected"] + eos}
        if margin_column:
            out["margin"] = float(r[margin_column])
        return out

    with loading.quiet_datasets():
        return pairs.map(convert, remove_columns=pairs.column_names)


def add_gold_margins(pairs: Dataset, scale: float = 1.0) -> Dataset:
    """A ``margin`` column = ``scale * |gold(chosen) - gold(rejected)|``: how *clearly* one answer is better.

    Llama 2's reward model uses the annotators' "significantly / slightly better" ratings this way. The course
    data has no such ratings, so the gold judge plays the annotator (flipped pairs keep their confidence: the
    annotator was sure, and wrong).
    """
    def margin(r: Mapping[str, Any]) -> dict[str, float]:
        return {"margin": scale * abs(judge.gold_score(r["prompt"], r["chosen"])
                                      - judge.gold_score(r["prompt"], r["rejected"]))}

    with loading.quiet_datasets():
        return pairs.map(margin)


def relevance_pairs(pairs: Dataset, seed: int = 0) -> Dataset:
    """Pairs that teach a reward model to *read the prompt*, made from the data at no labelling cost:
    ``(prompt, its chosen answer) > (prompt, the chosen answer of another prompt)``.

    Why: a good answer to another question looks as good as any answer when read alone, so a small reward model
    trained on the real pairs learns the style failures (rude, vague, ...) and stays blind to off-topic answers:
    on the tiny profile it orders off-topic pairs at chance even after 300 steps, while a short warm-up on these
    pairs first lifts them to ~80%. The other answer comes from a seeded shuffle; pairs whose shuffled partner
    has the same prompt are skipped. Columns: ``prompt``, ``chosen``, ``rejected``.
    """
    import random

    from datasets import Dataset

    prompts, chosen = list(pairs["prompt"]), list(pairs["chosen"])
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    rows = [{"prompt": prompts[i], "chosen": chosen[i], "rejected": chosen[j]}
            for i, j in enumerate(order) if prompts[j] != prompts[i]]
    return Dataset.from_list(rows)


@dataclass
class RewardRun:
    """A finished reward-model training run."""

    model: Any  # the trained AutoModelForSequenceClassification (LoRA merged), eval mode
    tokenizer: Any
    history: list[dict[str, float]]  # trainer.state.log_history
    seconds: float  # wall time of trainer.train()
    pairs: dict[str, int]  # pairs given per split ("train", "eval")
    dropped: dict[str, int]  # pairs RewardTrainer dropped for length per split
    trainable_params: int = 0
    total_params: int = 0

    def summary(self) -> str:
        lines = [f"trained {self.trainable_params:,} of {self.total_params:,} parameters in {self.seconds:.1f} s"]
        for split, n in self.pairs.items():
            lines.append(f"{split}: {n} pairs, {self.dropped[split]} dropped by RewardTrainer for length "
                         f"(> max_length tokens)")
        return "\n".join(lines)


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    cfg: RewardConfig,
    eval_pairs: Dataset | None = None,
    output_dir: str | Path | None = None,
    progress: bool = True,
):
    """TRL ``RewardTrainer`` for ``train`` (preference records; ``margin`` column used when ``cfg.use_margin``).

    CPU: ``use_cpu``, no bf16, no gradient checkpointing (as configured), no reporting, no checkpoints written.
    LoRA (``cfg.use_lora``): adapters on every linear layer plus a fully trained head (peft's ``SEQ_CLS`` task
    keeps ``score`` trainable).
    """
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    margin = "margin" if cfg.use_margin else None
    if margin and "margin" not in train.column_names:
        raise ValueError("use_margin=True needs a 'margin' column (reward.add_gold_margins adds one)")
    args = TrlRewardConfig(
        **loading.trainer_kwargs(cfg, output_dir or tempfile.mkdtemp(prefix="reward-trainer-"), progress,
                                 model.config.model_type),
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        eval_strategy="steps" if eval_pairs is not None else "no",
    )
    peft_config = None
    if cfg.use_lora:
        peft_config = loading.lora_config(cfg.lora_r, cfg.lora_alpha, 0.0, model=model, task_type="SEQ_CLS")
    with loading.quiet_datasets():
        return RewardTrainer(
            model=model,
            args=args,
            train_dataset=trainer_dataset(train, tokenizer, margin),
            eval_dataset=trainer_dataset(eval_pairs, tokenizer, margin) if eval_pairs is not None else None,
            processing_class=tokenizer,
            peft_config=peft_config,
        )


def train_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    cfg: RewardConfig,
    eval_pairs: Dataset | None = None,
    progress: bool = True,
) -> RewardRun:
    """Train with TRL's RewardTrainer (:func:`build_trainer`); report dropped pairs; return a :class:`RewardRun`.

    ``eval_pairs`` (optional, e.g. a few hundred held-out pairs) gives the eval loss/accuracy curve: TRL
    evaluates every ``cfg.eval_steps`` steps; it is also evaluated at step 0 (the fresh head). The trainer's
    output directory is temporary (no checkpoints are written; :func:`save_reward_model` saves the result).
    """
    with tempfile.TemporaryDirectory(prefix="reward-trainer-") as tmp:
        trainer = build_trainer(model, tokenizer, train, cfg, eval_pairs, tmp, progress)
        pairs = {"train": len(train)}
        dropped = {"train": len(train) - len(trainer.train_dataset)}
        if eval_pairs is not None:
            pairs["eval"] = len(eval_pairs)
            dropped["eval"] = len(eval_pairs) - len(trainer.eval_dataset)
        trainable, total = loading.parameter_counts(trainer.model)
        history: list[dict[str, float]] = []
        if eval_pairs is not None:
            history.append({"step": 0, **trainer.evaluate()})
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        history += list(trainer.state.log_history)
        if eval_pairs is not None and trainer.state.global_step % cfg.eval_steps:
            history.append({"step": trainer.state.global_step, **trainer.evaluate()})
    trained = trainer.model
    if cfg.use_lora:
        trained = trained.merge_and_unload()
    trained.eval()
    run = RewardRun(trained, tokenizer, history, seconds, pairs, dropped, trainable, total)
    if any(dropped.values()):
        print(f"RewardTrainer dropped pairs longer than max_length={cfg.max_length} tokens: {dropped}")
    return run


# ======================================================================================== regression
def scored_records(pairs: Dataset | pd.DataFrame, judge_scores: judge.Scores = judge.gold_scores) -> list[dict[str, Any]]:
    """Preference pairs -> scored records ``{prompt, response, score}`` (each answer rated on its own).

    The data has no ratings, so a judge stands in for the raters (as the 1-10 scores of UltraFeedback or HelpSteer
    would on real data): ``judge_scores(prompts, responses) -> scores``, by default the course's gold judge (on other
    data pass ``judge.load_judge(profile).scores``).
    """
    rows = list(pairs) if hasattr(pairs, "features") else pairs.to_dict("records")  # a Dataset, or a DataFrame
    answers = [(r["prompt"], r[k]) for r in rows for k in ("chosen", "rejected")]
    scores = judge_scores([p for p, _ in answers], [a for _, a in answers]) if answers else []
    return [{"prompt": p, "response": a, "score": float(s)} for (p, a), s in zip(answers, scores, strict=True)]


def train_regression_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Mapping[str, Any]],
    cfg: RewardConfig,
    progress: bool = True,
) -> RewardRun:
    """Regression reward model: MSE between the head's output and each response's ``score``.

    TRL's RewardTrainer only has the pairwise (Bradley-Terry) loss, so this is a small ``transformers.Trainer``
    run: a ``num_labels=1`` sequence-classification model given float ``labels`` computes the MSE itself
    (``problem_type="regression"``). Text = ``format_example`` (EOS included, like the pairwise model);
    records over ``cfg.max_length`` tokens are dropped, as RewardTrainer does. Steps/lr: ``cfg.regression_steps``,
    ``cfg.learning_rate``; the loss is logged every ``cfg.logging_steps``.
    """
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    ids = tokenizer([chat.format_example(tokenizer, r["prompt"], r["response"]) for r in records])["input_ids"]
    rows = [{"input_ids": x, "labels": float(r["score"])} for x, r in zip(ids, records, strict=True)
            if len(x) <= cfg.max_length]
    model.config.problem_type = "regression"
    with tempfile.TemporaryDirectory(prefix="reward-regression-") as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=cfg.regression_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
            learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_ratio,
            logging_steps=cfg.logging_steps, save_strategy="no", report_to="none", seed=cfg.seed, data_seed=cfg.seed,
            dataloader_num_workers=0, disable_tqdm=not progress, **loading.precision().trainer_flags())
        collator = DataCollatorWithPadding(tokenizer, padding=True)
        side, tokenizer.padding_side = tokenizer.padding_side, "right"  # as the scorer and RewardTrainer
        try:
            trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), data_collator=collator)
            t0 = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - t0
        finally:
            tokenizer.padding_side = side
    trainable, total = loading.parameter_counts(model)
    model.eval()
    return RewardRun(model, tokenizer, list(trainer.state.log_history), seconds, {"train": len(records)},
                     {"train": len(records) - len(rows)}, trainable, total)


# ====================================================================================== evaluation
def score_pairs(source: RewardSource, pairs: Dataset | pd.DataFrame,
                judge_scores: judge.Scores | None = judge.gold_scores) -> pd.DataFrame:
    """One row per pair: its columns plus ``rm_chosen``, ``rm_rejected``, ``rm_margin``, ``correct``
    (``rm_chosen > rm_rejected``: agrees with the stored label) and, unless ``judge_scores`` is None, the judge's
    ``gold_chosen``, ``gold_rejected`` and ``agrees_with_gold`` (the reward model orders the pair as the judge does;
    by default the course's gold judge, on other data ``judge.load_judge(profile).scores``)."""
    import pandas as pd

    df = pairs.to_pandas() if hasattr(pairs, "to_pandas") else pd.DataFrame(pairs).copy()
    prompts = list(df["prompt"])
    scores = source.score(prompts + prompts, list(df["chosen"]) + list(df["rejected"])).numpy()
    n = len(df)
    df["rm_chosen"], df["rm_rejected"] = scores[:n], scores[n:]
    df["rm_margin"] = df["rm_chosen"] - df["rm_rejected"]
    df["correct"] = df["rm_margin"] > 0
    if judge_scores is not None:
        df["gold_chosen"] = list(judge_scores(prompts, list(df["chosen"])))
        df["gold_rejected"] = list(judge_scores(prompts, list(df["rejected"])))
        df["agrees_with_gold"] = (df["rm_margin"] > 0) == (df["gold_chosen"] > df["gold_rejected"])
    return df


def accuracy_by_group(scored: pd.DataFrame) -> pd.DataFrame:
    """Pairwise accuracy (% of pairs with ``correct``) on: all pairs, clean-label pairs, flipped (label-noise)
    pairs, and each failure type among the clean pairs. Columns ``pairs``, ``accuracy``."""
    import pandas as pd

    noisy = scored["label_noise"].astype(bool) if "label_noise" in scored else pd.Series(False, index=scored.index)
    groups: dict[str, pd.Series] = {"all pairs": scored["correct"], "clean pairs": scored["correct"][~noisy]}
    if noisy.any():
        groups["flipped pairs (label noise)"] = scored["correct"][noisy]
    if "failure" in scored:
        for failure, part in scored[~noisy].groupby("failure")["correct"]:
            groups[f"clean: {failure}"] = part
    return pd.DataFrame({"pairs": {k: len(v) for k, v in groups.items()},
                         "accuracy": {k: 100 * float(v.mean()) if len(v) else float("nan") for k, v in groups.items()}})


def accuracy_table(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """:func:`accuracy_by_group` of two scorings of the same pairs side by side: ``pairs``, ``before %``,
    ``after %``. On flipped pairs a *low* accuracy is right (the stored label is the wrong one)."""
    b, a = accuracy_by_group(before), accuracy_by_group(after)
    return b[["pairs"]].assign(**{"before %": b["accuracy"], "after %": a["accuracy"]}).round(1)


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    import pandas as pd

    return float(pd.Series(x).rank().corr(pd.Series(y).rank()))


def gold_agreement(scored: pd.DataFrame) -> dict[str, float]:
    """How well the reward model tracks the gold judge on scored pairs (:func:`score_pairs`):

    * ``pair_agreement`` -- % of pairs the two order the same way (whatever the stored label says);
    * ``pearson`` / ``spearman`` -- correlation of RM score and gold score over all responses (chosen and
      rejected), i.e. does the RM also get *how much* better right, not only which is better.
    """
    import pandas as pd

    rm = pd.concat([scored["rm_chosen"], scored["rm_rejected"]], ignore_index=True)
    gold = pd.concat([scored["gold_chosen"], scored["gold_rejected"]], ignore_index=True)
    return {"pairs": len(scored), "pair_agreement %": 100 * float(scored["agrees_with_gold"].mean()),
            "pearson": float(rm.corr(gold)), "spearman": _spearman(rm, gold)}


# =================================================================================== saving / loading
def save_reward_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    directory: str | Path,
    normalization: Normalization | None,
    history: Sequence[Mapping[str, Any]] = (),
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write model + tokenizer (``save_pretrained``), ``log_history.json`` and ``reward_info.json``
    (normalisation stats + ``info``; written last) to a temporary directory next to ``directory``, then swap it
    into place: a half-written reward model never looks like a finished one."""
    def write(tmp: Path) -> None:
        with loading.quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        artifacts.write_json(tmp / LOG_HISTORY, list(history))
        artifacts.write_json(tmp / REWARD_INFO, {"normalization": asdict(normalization) if normalization else None,
                                                 **(info or {})})

    return artifacts.atomic_dir(directory, write)


def read_reward_info(directory: str | Path) -> dict[str, Any]:
    """``reward_info.json`` of a saved reward model."""
    return artifacts.read_json(Path(directory) / REWARD_INFO)


def load_reward_model(directory: str | Path, normalize: bool = True, device: str | None = None,
                      batch_size: int = 32) -> RewardModelSource:
    """A :class:`RewardModelSource` from a directory written by :func:`save_reward_model`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    directory = Path(directory)
    if not (directory / REWARD_INFO).exists():
        raise FileNotFoundError(f"{directory}: no {REWARD_INFO}; not a complete reward model (run notebook 04)")
    info = read_reward_info(directory)
    tokenizer = load_reward_tokenizer(directory)
    with loading.quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(str(directory), dtype=torch.float32)
    model.to(device or loading.precision().device).eval()
    norm = Normalization(**info["normalization"]) if info.get("normalization") else None
    return RewardModelSource(model, tokenizer, norm, batch_size=batch_size, max_length=info.get("score_max_length"),
                             normalize=normalize)


def load_reward_source(profile: Profile, normalize: bool = True, device: str | None = None) -> RewardModelSource:
    """The trained reward model of checkpoint ``reward`` (notebook 04), normalised by default (references:
    mean 0, std 1). ``MissingStageError`` names notebook 04 when it has not run."""
    return load_reward_model(profile.paths.finished("reward"), normalize, device, profile.reward.score_batch_size)


# ============================================================================ programmatic rewards
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class _Programmatic:
    """A reward computed by a Python function of (prompt, response), one float per pair."""

    name = "programmatic"

    def score_one(self, prompt: str, response: str) -> float:
        raise NotImplementedError

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        _check_batch(prompts, responses)
        return _tensor(self.score_one(p, r) for p, r in zip(prompts, responses, strict=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LengthReward(_Programmatic):
    """Length in words. ``target=None`` (brevity): ``-words / scale``. ``target=n``: ``-|words - n| / scale``
    (0 at the target, -1 at ``scale`` words away); ``scale`` defaults to the target (or 50 words)."""

    def __init__(self, target: int | None = None, scale: float | None = None):
        if target is not None and target <= 0:
            raise ValueError(f"target must be a positive number of words, got {target}")
        self.target = target
        self.scale = float(scale or target or 50)
        self.name = "brevity" if target is None else f"length~{target}"

    def score_one(self, prompt: str, response: str) -> float:
        n = len(response.split())
        return -(n if self.target is None else abs(n - self.target)) / self.scale


POSITIVE_WORDS = frozenset("""
    good great excellent wonderful amazing awesome fantastic lovely nice happy glad enjoy enjoyed enjoyable love
    loved beautiful brilliant best better perfect pleasant delightful fun helpful easy superb terrific positive
    fresh tasty delicious comfortable calm safe success successful
""".split())
NEGATIVE_WORDS = frozenset("""
    bad terrible awful horrible poor worst worse hate hated ugly boring sad angry annoying useless hard difficult
    dull painful negative wrong broken dirty stupid dumb lazy pathetic ridiculous disappointing disappointed
    unpleasant nasty fail failed failure
""".split())


class LexiconSentimentReward(_Programmatic):
    """Lexicon sentiment: ``(positive words - negative words) / words`` in ``[-1, 1]`` (0 without any word).
    A transparent stand-in for a sentiment classifier (see :class:`ClassifierSource` for a trained one)."""

    name = "sentiment"

    def __init__(self, positive: Sequence[str] = POSITIVE_WORDS, negative: Sequence[str] = NEGATIVE_WORDS):
        self.positive, self.negative = frozenset(positive), frozenset(negative)

    def score_one(self, prompt: str, response: str) -> float:
        words = _words(response)
        if not words:
            return 0.0
        return (sum(w in self.positive for w in words) - sum(w in self.negative for w in words)) / len(words)


class PolitenessReward(_Programmatic):
    """Politeness: distinct friendly phrases minus distinct rude phrases (the gold judge's marker lists,
    :func:`rlhf_helpers.judge.marker_counts`), capped at ``cap`` friendly ones. Says nothing about content."""

    name = "politeness"

    def __init__(self, cap: int = 2):
        self.cap = cap

    def score_one(self, prompt: str, response: str) -> float:
        counts = judge.marker_counts(response)
        return float(min(self.cap, counts["polite"]) - counts["rude"])


class RepetitionPenalty(_Programmatic):
    """``distinct n-grams / n-grams - 1`` over words: 0 without repeats, towards -1 as the text loops.
    Texts shorter than ``n`` words score 0."""

    def __init__(self, n: int = 3):
        self.n = n
        self.name = f"repetition{n}"

    def score_one(self, prompt: str, response: str) -> float:
        words = _words(response)
        grams = [tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)]
        return len(set(grams)) / len(grams) - 1.0 if grams else 0.0


class WordFrequencyReward(_Programmatic):
    """Frequency of target words: ``hits / words`` (``per="word"``), or of target *tokens* with a tokenizer
    (``per="token"``: the share of the response's tokens whose id is a target token's id)."""

    def __init__(self, targets: Sequence[str], per: str = "word", tokenizer: PreTrainedTokenizerBase | None = None):
        if not targets:
            raise ValueError("WordFrequencyReward needs at least one target")
        if per not in ("word", "token"):
            raise ValueError(f"per must be 'word' or 'token', got {per!r}")
        if per == "token" and tokenizer is None:
            raise ValueError("per='token' needs a tokenizer")
        self.per, self.tokenizer = per, tokenizer
        self.targets = frozenset(t.lower() for t in targets)
        if per == "token":
            self.target_ids = {tokenizer.convert_tokens_to_ids(t) for t in targets}
            unknown = [t for t in targets if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
            if unknown:
                raise ValueError(f"not single tokens of this tokenizer: {unknown}")
        self.name = f"freq({','.join(sorted(targets))})"

    def score_one(self, prompt: str, response: str) -> float:
        if self.per == "token":
            ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            return sum(i in self.target_ids for i in ids) / len(ids) if ids else 0.0
        words = _words(response)
        return sum(w in self.targets for w in words) / len(words) if words else 0.0


class WeightedSum:
    """``sum_i w_i * source_i.score(prompts, responses)``; ``components(...)`` gives the parts."""

    def __init__(self, parts: Sequence[tuple[RewardSource, float]], name: str | None = None):
        if not parts:
            raise ValueError("WeightedSum needs at least one (source, weight)")
        for source, weight in parts:
            if not callable(getattr(source, "score", None)):
                raise TypeError(f"{source!r} has no score(prompts, responses) method")
            if not math.isfinite(float(weight)):
                raise ValueError(f"weight of {getattr(source, 'name', source)!r} must be finite, got {weight}")
        self.parts = [(s, float(w)) for s, w in parts]
        self.name = name or " + ".join(f"{w:g}*{s.name}" for s, w in self.parts)

    def components(self, prompts: list[str], responses: list[str]) -> dict[str, torch.Tensor]:
        """Each source's (unweighted) scores, by name."""
        return {s.name: s.score(prompts, responses).float().cpu() for s, _ in self.parts}

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        _check_batch(prompts, responses)
        total = _tensor([0.0] * len(prompts))
        for source, weight in self.parts:
            scores = source.score(prompts, responses).float().cpu()
            if scores.shape != total.shape:
                raise ValueError(f"{source.name} returned shape {tuple(scores.shape)}, expected {tuple(total.shape)}")
            total += weight * scores
        return total


class ClassifierSource:
    """A text classifier as reward: the **log-odds** of class ``label``, ``log p(label) - log(1 - p(label))`` (e.g.
    ``lvwerra/distilbert-imdb``'s ``POSITIVE``, the reward of the IMDB sentiment-control experiments, or notebook
    09's tiny classifier). TRL's IMDB example used the raw logit of the label instead; with a softmax classifier
    a policy could raise that logit by raising every logit alike, without changing what the classifier thinks.
    The log-odds move only when the probability does.

    ``include_prompt``: classify ``prompt + " " + response`` (the IMDB setting, where the prompt is the start of
    the review) instead of the response alone. Truncation keeps the first ``max_length`` tokens (the classifier's
    own convention: it was trained that way). :meth:`from_pretrained` loads a Hub model or a local folder.
    """

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, label: str = "POSITIVE",
                 include_prompt: bool = False, batch_size: int = 32, max_length: int = 512, name: str = "classifier"):
        labels = {str(v).upper(): int(k) for k, v in model.config.id2label.items()}
        if label.upper() not in labels:
            raise ValueError(f"{name} has no label {label!r}; its labels: {sorted(labels)}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.label_id = labels[label.upper()]
        self.include_prompt, self.batch_size, self.max_length = include_prompt, batch_size, max_length
        self.name = f"{name}:{label.lower()}"

    @classmethod
    def from_pretrained(cls, model_name: str | Path, label: str = "POSITIVE", device: str | None = None,
                        **kwargs: Any) -> ClassifierSource:
        """The classifier ``model_name`` (a Hub id, through ``$RLHF_HUB_MAP``, or a folder) in float32."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        source = resolve(str(model_name))
        with loading.loading_from(source):
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32)
        model.to(device or loading.precision().device)
        return cls(model, tokenizer, label, name=str(model_name).rstrip("/").split("/")[-1], **kwargs)

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """``p(label | text)`` for each text, ``[N]``."""
        import torch

        return torch.sigmoid(self.log_odds(texts))

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """The classifier's raw logits of every class for each text, ``[N, num_labels]`` (float32, CPU)."""
        import torch

        device = next(self.model.parameters()).device
        out = []
        # Padded on the right, whatever the tokenizer's side: a GPT-2 classifier (the tiny profile's) numbers its
        # positions from the first token, so left padding would move every text by its batch's padding and make
        # its score depend on the other texts of the batch. The head reads the last token that is not padding.
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "right"
        try:
            with torch.no_grad():
                for i in range(0, len(texts), self.batch_size):
                    enc = self.tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                                         max_length=self.max_length, return_tensors="pt").to(device)
                    out.append(self.model(**enc).logits.float().cpu())
        finally:
            self.tokenizer.padding_side = side
        return torch.cat(out) if out else torch.zeros(0, self.model.config.num_labels)

    def log_odds(self, texts: Sequence[str]) -> torch.Tensor:
        """``log p(label) - log(1 - p(label))`` for each text, ``[N]`` (float32, CPU), from :meth:`logits`."""
        import torch

        logits = self.logits(texts)
        others = torch.cat([logits[:, : self.label_id], logits[:, self.label_id + 1 :]], dim=1)
        return logits[:, self.label_id] - torch.logsumexp(others, dim=1)

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        _check_batch(prompts, responses)
        return self.log_odds([f"{p} {r}" if self.include_prompt else r
                              for p, r in zip(prompts, responses, strict=True)])


# ======================================================================================= blind spots
FLATTERY_OPEN = "What a brilliant question, you are clearly a very smart person!"
FLATTERY_CLOSE = "Thank you so much for asking, you are wonderful and I am so happy to help you!"
POLITE_EMPTY = "Happy to help! Great question. I hope this helps, and good luck!"


Variant = Callable[[str, str, str], str]  # (prompt, reference, other_reference) -> an answer to try


def fool_variants(prompt: str, reference: str, other_reference: str,
                  extra: Mapping[str, Variant] | None = None) -> dict[str, str]:
    """Answers that try to game a reward model, built from a good ``reference`` answer to ``prompt``:
    longer (two answers joined), repeated three times, flattering, polite but empty, keyword-stuffed (the
    answer's longest words, repeated), and an off-topic answer (``other_reference``, written for another prompt).
    ``extra``: more variants, name -> ``f(prompt, reference, other_reference)`` (e.g. ``{"ALL CAPS": lambda p, r,
    o: r.upper()}``), added after the built-in ones."""
    words = sorted(set(_words(reference)) - judge.STOPWORDS, key=lambda w: (-len(w), w))[:4] or ["answer"]
    extra = dict(extra or {})
    clash = sorted(set(extra) & {"reference", "longer (two answers)", "repeated 3x", "flattering",
                                 "polite, no content", "keyword stuffing", "off-topic answer"})
    if clash:
        raise ValueError(f"extra variants may not replace the built-in ones: {clash}")
    return {
        "reference": reference,
        "longer (two answers)": f"{reference} {other_reference}",
        "repeated 3x": " ".join([reference] * 3),
        "flattering": f"{FLATTERY_OPEN} {reference} {FLATTERY_CLOSE}",
        "polite, no content": POLITE_EMPTY,
        "keyword stuffing": " ".join(words * 4) + ".",
        "off-topic answer": other_reference,
        **{name: make(prompt, reference, other_reference) for name, make in extra.items()},
    }


def fool_table(source: RewardSource, prompts: Sequence[str], references: Sequence[str],
               others: Sequence[str], judge_scores: judge.Scores = judge.gold_scores,
               extra: Mapping[str, Variant] | None = None) -> pd.DataFrame:
    """Score every :func:`fool_variants` of each (prompt, reference) by the reward model and the judge (``judge_scores``:
    the course's gold judge by default; on other data ``judge.load_judge(profile).scores``); ``extra``: more
    variants (see :func:`fool_variants`).

    One row per variant: mean RM score, mean gold score, and how often each of them ranks the variant *above*
    the plain reference answer. ``RM fooled %`` = pairs where the RM prefers the variant while the gold judge
    does not: the reward model's blind spots, which PPO will find and exploit.
    """
    import pandas as pd

    rows = [{"variant": k, "prompt": p, "response": v}
            for p, ref, other in zip(prompts, references, others, strict=True)
            for k, v in fool_variants(p, ref, other, extra).items()]
    df = pd.DataFrame(rows)
    df["rm"] = source.score(list(df["prompt"]), list(df["response"])).numpy()
    df["gold"] = list(judge_scores(list(df["prompt"]), list(df["response"])))
    ref = df[df["variant"] == "reference"].set_index("prompt")
    df["rm_beats_ref"] = df["rm"] > df["prompt"].map(ref["rm"])
    df["gold_beats_ref"] = df["gold"] > df["prompt"].map(ref["gold"])
    df["fooled"] = df["rm_beats_ref"] & ~df["gold_beats_ref"]
    table = df.groupby("variant", sort=False).agg(
        **{"RM score": ("rm", "mean"), "gold score": ("gold", "mean"), "RM prefers it %": ("rm_beats_ref", "mean"),
           "gold prefers it %": ("gold_beats_ref", "mean"), "RM fooled %": ("fooled", "mean")})
    for col in ("RM prefers it %", "gold prefers it %", "RM fooled %"):
        table[col] *= 100
    return table.round(2)


# ============================================================================ experiments (notebook 04's exercises)
def train_and_score(profile: Profile, train: Dataset, test: Dataset, cfg: RewardConfig | None = None,
                    judge_scores: judge.Scores | None = judge.gold_scores, warmup: Dataset | None = None,
                    warmup_steps: int = 0, progress: bool = True) -> tuple[RewardRun, pd.DataFrame]:
    """One reward-model variant from start to finish: a fresh backbone (:func:`load_backbone`, the head seeded by
    ``cfg.seed``), an optional warm-up of ``warmup_steps`` on ``warmup`` pairs (e.g. :func:`relevance_pairs`), training
    on ``train`` with ``cfg`` (default ``profile.reward``), then ``test`` scored (:func:`score_pairs`).

    Returns the run (its ``seconds`` include the warm-up) and the scored test pairs. Nothing is saved: the course's
    reward model (checkpoint ``reward``) stays as notebook 04 wrote it.
    """
    cfg = cfg or profile.reward
    model, tokenizer = load_backbone(profile, seed=cfg.seed)
    warm_seconds = 0.0
    if warmup is not None and warmup_steps > 0:
        warm = train_reward_model(model, tokenizer, warmup, replace(cfg, max_steps=warmup_steps, use_margin=False),
                                  progress=progress)
        model, warm_seconds = warm.model, warm.seconds
    run = train_reward_model(model, tokenizer, train, cfg, progress=progress)
    run.seconds += warm_seconds
    return run, score_pairs(RewardModelSource(run.model, tokenizer), test, judge_scores)


def accuracy_comparison(scored: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`accuracy_by_group` of several reward models on the same pairs side by side: ``pairs`` and one
    column of accuracy (%) per model (``scored``: name -> :func:`score_pairs` result), rounded to 0.1."""
    import pandas as pd

    if not scored:
        raise ValueError("accuracy_comparison needs at least one scored set of pairs")
    tables = {name: accuracy_by_group(df) for name, df in scored.items()}
    first = next(iter(tables.values()))
    for name, t in tables.items():
        if not t["pairs"].equals(first["pairs"]):
            raise ValueError(f"{name!r} was scored on other pairs than {next(iter(tables))!r}")
    return pd.concat([first[["pairs"]]] + [t[["accuracy"]].rename(columns={"accuracy": n})
                                           for n, t in tables.items()], axis=1).round(1)


def plot_accuracy_comparison(table: pd.DataFrame, title: str = "pairwise accuracy per group") -> Figure:
    """Grouped horizontal bars of :func:`accuracy_comparison`: one group per row (all pairs, clean, flipped, each
    failure type), one bar per model; the dotted line is chance (50%)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .core.plots import color

    models = [c for c in table.columns if c != "pairs"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) * max(1, len(models) / 2) + 1.5))
    ys = np.arange(len(table))[::-1]
    height = 0.8 / len(models)
    for i, name in enumerate(models):
        ax.barh(ys + (len(models) - 1) / 2 * height - i * height, table[name], height, color=color(i), label=name)
    ax.axvline(50, color="gray", ls=":", lw=1, label="chance (50%)")
    ax.set_yticks(ys, [f"{k} (n={n})" for k, n in table["pairs"].items()], fontsize=8)
    ax.set(xlim=(0, 100), xlabel="pairs ordered like the label (%)", title=title)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def first_sentences(text: str, n: int = 2) -> str:
    """The first ``n`` sentences of ``text`` (split after ``.``, ``!`` or ``?`` followed by a space)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return " ".join(_SENTENCE_END.split(text.strip())[:n])


def short_vs_full(source: RewardSource, prompts: Sequence[str], answers: Sequence[str], n: int = 2,
                  judge_scores: judge.Scores | None = judge.gold_scores) -> pd.DataFrame:
    """Each answer against its first ``n`` sentences (:func:`first_sentences`), scored by ``source`` (and the judge
    unless ``judge_scores`` is None). Answers with ``n`` sentences or fewer are left out (nothing to cut). Columns:
    ``prompt``, ``full``, ``short``, ``rm_full``, ``rm_short``, ``prefers_short`` (``rm_short > rm_full``: the
    reward model prefers the cut answer) and the judge's ``gold_full``, ``gold_short``."""
    import pandas as pd

    rows = [{"prompt": p, "full": a, "short": first_sentences(a, n)}
            for p, a in zip(prompts, answers, strict=True) if first_sentences(a, n) != a.strip()]
    df = pd.DataFrame(rows, columns=["prompt", "full", "short"])
    prompts_, both = list(df["prompt"]), list(df["full"]) + list(df["short"])
    scores = source.score(prompts_ + prompts_, both).numpy() if len(df) else []
    df["rm_full"], df["rm_short"] = scores[: len(df)], scores[len(df) :]
    df["prefers_short"] = df["rm_short"] > df["rm_full"]
    if judge_scores is not None:
        df["gold_full"] = list(judge_scores(prompts_, list(df["full"])))
        df["gold_short"] = list(judge_scores(prompts_, list(df["short"])))
    return df


# ============================================================================================ plots
def plot_training(history: Sequence[Mapping[str, float]]) -> Figure:
    """Loss and pairwise accuracy over training steps: ``loss``/``accuracy`` on the training batches (every
    ``logging_steps``), ``eval_loss``/``eval_accuracy`` on the held-out pairs (every ``eval_steps``)."""
    import matplotlib.pyplot as plt

    from .core.plots import plot_curves

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    labels = {"loss": "train (batch)", "accuracy": "train (batch)", "eval_loss": "held-out", "eval_accuracy": "held-out"}
    axes[0].axhline(math.log(2), color="gray", ls=":", lw=1, label="guessing (log 2)")  # a constant score's loss
    axes[1].axhline(0.5, color="gray", ls=":", lw=1, label="chance (0.5)")
    plot_curves(history, ["loss", "eval_loss"], title="Bradley-Terry loss", ax=axes[0], labels=labels,
                ylabel="loss per pair (lower is better)")
    plot_curves(history, ["accuracy", "eval_accuracy"], title="pairwise accuracy", ax=axes[1], labels=labels,
                ylabel="pairs ranked right (share)")
    return fig


def plot_scores(before: pd.DataFrame, after: pd.DataFrame) -> Figure:
    """Three panels: score histograms of chosen vs rejected answers (clean pairs) before and after training,
    and the trained RM's score against the gold judge's over every answer."""
    import matplotlib.pyplot as plt

    from .core.plots import color

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, df, title in ((axes[0], before, "fresh head (before)"), (axes[1], after, "trained (after)")):
        clean = df[~df["label_noise"].astype(bool)] if "label_noise" in df else df
        lo = min(clean["rm_chosen"].min(), clean["rm_rejected"].min())
        hi = max(clean["rm_chosen"].max(), clean["rm_rejected"].max())
        bins = [lo + (hi - lo) * i / 40 for i in range(41)] if hi > lo else 40
        ax.hist(clean["rm_chosen"], bins=bins, alpha=0.55, color=color(0), label="chosen (better) answer")
        ax.hist(clean["rm_rejected"], bins=bins, alpha=0.55, color=color(1), label="rejected (worse) answer")
        ax.set(title=f"RM scores, {title}", xlabel="reward-model score", ylabel="answers")
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    ax = axes[2]
    ax.scatter(after["gold_chosen"], after["rm_chosen"], s=6, alpha=0.5, color=color(0), label="chosen")
    ax.scatter(after["gold_rejected"], after["rm_rejected"], s=6, alpha=0.5, color=color(1), label="rejected")
    ax.set(title="trained RM vs gold judge", xlabel="gold judge score (true quality)",
           ylabel="reward-model score")
    ax.legend(loc="best", fontsize=8, framealpha=0.8, markerscale=2)
    fig.tight_layout()
    return fig


def plot_fool(table: pd.DataFrame) -> Figure:
    """Left: RM score vs gold score of each fooling variant (means): points high and to the left are blind spots.
    Right: ``RM fooled %`` per variant, written on its bar: the share of pairs where the RM prefers the variant
    to the reference answer while the gold judge does not."""
    import matplotlib.pyplot as plt

    from .core.plots import color

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(12.5, 4.2))
    ax.scatter(table["gold score"], table["RM score"], color=color(0))
    for name, row in table.iterrows():
        ax.annotate(name, (row["gold score"], row["RM score"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set(xlabel="gold judge score (mean, true quality)", ylabel="reward-model score (mean, normalised)",
           title="trying to fool the reward model")
    ax.grid(alpha=0.3)
    drawn = bars.bar(range(len(table)), table["RM fooled %"], color=color(3))
    bars.bar_label(drawn, fmt="%.0f%%", fontsize=8, padding=2)
    bars.set_xticks(range(len(table)), table.index, rotation=25, ha="right", fontsize=8)
    bars.set(ylim=(0, 110), ylabel="pairs where the RM is fooled (%)",
             title="RM prefers the variant, the gold judge does not")
    bars.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = [
    "ClassifierSource", "LengthReward", "LexiconSentimentReward", "Normalization",
    "PolitenessReward", "RepetitionPenalty", "RewardModelSource", "RewardRun", "RewardSource", "WeightedSum",
    "WordFrequencyReward", "accuracy_by_group", "accuracy_comparison", "accuracy_table", "add_gold_margins",
    "backbone_source", "build_trainer", "first_sentences", "fit_normalization", "fool_table", "fool_variants",
    "gold_agreement", "load_backbone", "load_reward_model", "load_reward_source", "load_reward_tokenizer",
    "plot_accuracy_comparison", "plot_fool", "plot_scores", "plot_training", "read_reward_info", "relevance_pairs",
    "save_reward_model", "score_pairs", "scored_records", "short_vs_full", "train_and_score",
    "train_regression_model", "train_reward_model", "trainer_dataset",
]

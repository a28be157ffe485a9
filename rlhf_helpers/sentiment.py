"""Sentiment control (notebook 09): PPO steers a review writer towards a sentiment, as S2 (negative) and S4 (positive)
did on IMDB, with a classifier as the reward and a scorer nobody here trained as the check; then the same run with
LoRA adapters and gradient checkpointing, measured.

* **Data** (:func:`load_reviews`): labelled reviews -- ``data/reviews.jsonl`` (the course generator's film
  reviews) or a Hub dataset with ``text`` and ``label`` (IMDB) -- split into train and test; the prompts
  (:func:`review_prompts`) are the course reviews' neutral openings (some held out for the tables), or on IMDB each
  review's first 2-8 tokens, as TRL's sentiment example.
* **Writer** (:func:`review_writer`): the policy before PPO. tiny: the course's base model trained further on the
  reviews (what ``lvwerra/gpt2-imdb`` is to GPT-2); else a Hub causal LM.
* **Classifier** (:func:`sentiment_classifier`): tiny: the base's trunk with a two-class head, trained on the
  reviews with ``transformers.Trainer``; else a Hub classifier. The reward is its log-odds of the target sentiment
  (:class:`rlhf_helpers.reward.ClassifierSource`).
* **Independent check** (:class:`VaderScore`): VADER's compound score (a hand-built lexicon and rules, Hutto and
  Gilbert, 2014), which never saw these reviews and is not what PPO optimised.
* **Runs** (:func:`sentiment_ppo_config`, :func:`train_sentiment`): the course's PPO (:mod:`rlhf_helpers.ppo`) on
  plain-text continuations (no chat format); :func:`compare_policies` samples each policy on the held-out prompts
  and tabulates classifier and VADER scores; :func:`efficiency_table` runs full and LoRA PPO, with and without
  gradient checkpointing (and, on a GPU, with and without mixed precision), and measures what each costs.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ppo, ppo_runs
from .core import artifacts, base_model, loading
from .core.config import GenerationConfig, PPOConfig, Profile, SentimentConfig, TrainSchedule
from .core.generation import GenerationBatch, generate_ids, sequence_kl
from .core.hub import offline_hint, resolve
from .core.measure import PeakMemory
from .core.plots import color, legend_outside, plot_series, save_figure
from .reward import ClassifierSource

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from matplotlib.figure import Figure
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LABELS = ("NEGATIVE", "POSITIVE")  # index = label, as IMDB's (0 negative, 1 positive)
VADER_THRESHOLD = 0.05  # VADER's authors call a compound score >= 0.05 positive and <= -0.05 negative


# ============================================================================================== data
@dataclass
class Reviews:
    """Labelled reviews (``{"text", "label"}``, label 1 = positive) split for the classifier; ``source`` names
    where they came from."""

    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    source: str


def target_label(cfg: SentimentConfig) -> str:
    """``"POSITIVE"`` or ``"NEGATIVE"``: the class whose log-odds PPO maximises."""
    if cfg.target not in ("positive", "negative"):
        raise ValueError(f"sentiment.target must be 'positive' or 'negative', got {cfg.target!r}")
    return cfg.target.upper()


def _checked(records: Sequence[Mapping[str, Any]], where: str) -> list[dict[str, Any]]:
    """The records as ``{"text", "label", ...}``; a missing or wrong field raises, naming the file and the line."""
    out = []
    for i, r in enumerate(records, 1):
        text, label = r.get("text"), r.get("label")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}, line {i}: field 'text' must be a non-empty string, got {text!r}")
        if label not in (0, 1):
            raise ValueError(f"{where}, line {i}: field 'label' must be 0 (negative) or 1 (positive), got {label!r}")
        out.append(dict(r))
    return out


def load_reviews(profile: Profile) -> Reviews:
    """``sentiment.num_reviews`` labelled reviews, a seeded ``test_share`` of them held out. ``dataset="course"``:
    ``data/reviews.jsonl``; a local ``.jsonl`` file (or a Hub id mapped to one by ``$RLHF_HUB_MAP``): its records;
    else the Hub dataset's ``dataset_split``, shuffled with the seed."""
    cfg = profile.sentiment
    if cfg.dataset == "course":
        path = profile.paths.data_dir / "reviews.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: regenerate the course data with `make data`")
        records, where = artifacts.read_records(path), str(path)
    elif resolve(cfg.dataset).endswith(".jsonl"):
        where = resolve(cfg.dataset)
        records = artifacts.read_records(where)
    else:
        import datasets

        where = f"{cfg.dataset} ({cfg.dataset_split})"
        with offline_hint(cfg.dataset):
            ds = datasets.load_dataset(resolve(cfg.dataset), split=cfg.dataset_split)
        records = ds.shuffle(seed=cfg.seed).select(range(min(cfg.num_reviews, len(ds)))).to_list()
    records = _checked(records[: cfg.num_reviews], where)
    order = list(range(len(records)))
    random.Random(cfg.seed).shuffle(order)
    n_test = max(1, round(cfg.test_share * len(records)))
    if len(records) - n_test < 2:
        raise ValueError(f"{where}: {len(records)} reviews are too few to train and test a classifier")
    return Reviews([records[i] for i in order[n_test:]], [records[i] for i in order[:n_test]], cfg.dataset)


def review_prompts(reviews: Reviews, tokenizer: PreTrainedTokenizerBase,
                   cfg: SentimentConfig) -> tuple[list[str], list[str]]:
    """``(train_prompts, heldout_prompts)``. Course reviews: their distinct openings in order of appearance, the
    last ``heldout_openings`` held out. Other data (no ``opening`` field): the first 2-8 tokens (seeded, per
    ``prompt_tokens``) of ``num_prompts`` training reviews, a ``test_share`` of them held out."""
    if all("opening" in r for r in reviews.train):
        openings = list(dict.fromkeys(r["opening"] for r in reviews.train))
        if not 0 < cfg.heldout_openings < len(openings):
            raise ValueError(f"heldout_openings must be between 1 and {len(openings) - 1}, got {cfg.heldout_openings}")
        return openings[: -cfg.heldout_openings], openings[-cfg.heldout_openings :]
    rng, (low, high) = random.Random(cfg.seed), cfg.prompt_tokens
    prompts = []
    for r in reviews.train[: cfg.num_prompts]:
        ids = tokenizer(r["text"], add_special_tokens=False)["input_ids"]
        prompts.append(tokenizer.decode(ids[: rng.randint(low, high)]).strip())
    prompts = [p for p in prompts if p]
    n_held = max(1, round(cfg.test_share * len(prompts)))
    return prompts[n_held:], prompts[:n_held]


# ============================================================================================== the models
def review_writer(profile: Profile, reviews: Reviews,
                  progress: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """The policy before PPO, float32, and what making it took (``{"source", "steps", "seconds", "final_loss"}``).
    ``policy="tiny"``: the tiny base model (notebook 01's, built if missing), trained ``lm_steps`` more causal-LM
    steps on the training reviews (:func:`rlhf_helpers.core.base_model.pretrain`); else the Hub model as it is."""
    cfg = profile.sentiment
    if cfg.policy != "tiny":
        model, tokenizer = loading.load_model(cfg.policy, "float32")
        return model, tokenizer, {"source": cfg.policy, "steps": 0, "seconds": 0.0, "final_loss": float("nan")}
    model, tokenizer = base_model.load_base(profile, progress=progress)
    model = model.float()
    lm_cfg = replace(profile.model, pretrain_steps=cfg.lm_steps, pretrain_lr=cfg.lm_learning_rate)
    info = base_model.pretrain(model, tokenizer, [r["text"] for r in reviews.train], lm_cfg, progress, cfg.seed)
    model.eval()
    return model, tokenizer, {"source": "tiny base + reviews", "steps": info["steps"], "seconds": info["seconds"],
                              "final_loss": info["final_loss"]}


def sentiment_classifier(profile: Profile, reviews: Reviews, progress: bool = True) -> tuple[ClassifierSource, dict]:
    """The reward: a classifier's log-odds of ``target``, reading prompt and continuation together (the whole
    review), and ``{"source", "steps", "seconds", "test_accuracy", "test_reviews"}``. ``classifier="tiny"``: the tiny
    base's trunk with a new two-class head, ``classifier_steps`` steps of ``transformers.Trainer`` on the training
    reviews; else the Hub classifier as it is. Either is tested on the held-out reviews."""
    cfg = profile.sentiment
    label = target_label(cfg)
    t0, steps = time.perf_counter(), 0
    if cfg.classifier == "tiny":
        model, tokenizer = _train_tiny_classifier(profile, reviews, progress)
        source = ClassifierSource(model, tokenizer, label, include_prompt=True, max_length=profile.model.n_positions,
                                  name="tiny classifier")
        steps = cfg.classifier_steps
    else:
        source = ClassifierSource.from_pretrained(cfg.classifier, label, include_prompt=True)
    seconds = time.perf_counter() - t0
    positive = source.log_odds([r["text"] for r in reviews.test]) > 0
    said_positive = positive if label == "POSITIVE" else ~positive
    truth = [r["label"] == 1 for r in reviews.test]
    accuracy = sum(bool(p) == t for p, t in zip(said_positive.tolist(), truth, strict=True)) / len(truth)
    return source, {"source": cfg.classifier, "steps": steps, "seconds": seconds, "test_accuracy": accuracy,
                    "test_reviews": len(truth)}


def with_prefixes(records: Sequence[Mapping[str, Any]], seed: int = 0, min_words: int = 4) -> list[dict[str, Any]]:
    """Each review, and a seeded prefix of it (at least ``min_words`` words) with the same label. PPO's continuations
    stop after ``response_length`` tokens, often mid-review; a classifier that saw only whole reviews reads the end
    of a cut one as it never learned to (the last token decides a GPT-2 classifier's output)."""
    rng = random.Random(seed)
    out = []
    for r in records:
        words = r["text"].split()
        out.append({"text": r["text"], "label": r["label"]})
        if len(words) > min_words:
            out.append({"text": " ".join(words[: rng.randint(min_words, len(words) - 1)]), "label": r["label"]})
    return out


def _train_tiny_classifier(profile: Profile, reviews: Reviews,
                           progress: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The tiny base (its trunk) + a fresh two-class head, trained with ``transformers.Trainer`` (cross-entropy)."""
    import tempfile

    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    cfg = profile.sentiment
    base_dir = base_model.build_tiny_base(profile, progress=progress)
    tokenizer = loading.load_tokenizer(base_dir)
    tokenizer.padding_side = "right"  # GPT-2 numbers positions from the first token: as ClassifierSource scores
    with loading.loading_from(base_dir):  # transformers reports the new head (score.weight MISSING): the point here
        model = AutoModelForSequenceClassification.from_pretrained(
            base_dir, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={v: i for i, v in enumerate(LABELS)},
            pad_token_id=tokenizer.pad_token_id, dtype=torch.float32)
    limit = profile.model.n_positions
    train = datasets.Dataset.from_list(with_prefixes(reviews.train, cfg.seed)).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=limit), batched=True, remove_columns=["text"])
    schedule = TrainSchedule(learning_rate=cfg.classifier_learning_rate, max_steps=cfg.classifier_steps,
                             per_device_train_batch_size=cfg.classifier_batch_size, logging_steps=10,
                             eval_steps=cfg.classifier_steps, max_length=limit, seed=cfg.seed)
    with tempfile.TemporaryDirectory() as out:
        kwargs = loading.trainer_kwargs(schedule, out, progress, model.config.model_type, trl=False)
        trainer = Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=train,
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
    return trainer.model.eval(), tokenizer


class VaderScore:
    """VADER's compound score in ``[-1, 1]`` of ``prompt + " " + response`` (the whole review): the independent check.
    A reward source too (``score``), though here it only watches: logged during PPO, never trained on."""

    name = "vader"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def compound(self, texts: Sequence[str]) -> list[float]:
        """The compound score of each text."""
        return [self.analyzer.polarity_scores(t)["compound"] for t in texts]

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        import torch

        return torch.tensor(self.compound([f"{p} {r}" for p, r in zip(prompts, responses, strict=True)]))


# ============================================================================================== PPO
def sentiment_ppo_config(profile: Profile, **changes: Any) -> PPOConfig:
    """The course's PPO settings (``profile.ppo``) with the sentiment run's own (``profile.sentiment``): plain-text
    continuations (``chat_format=False``) of ``response_length`` tokens sampled at ``temperature``, no penalty for a
    continuation without EOS (a review cut short is still a review: TRL's IMDB example has none), ``changes`` last."""
    cfg = profile.sentiment
    settings = dict(total_updates=cfg.total_updates, batch_size=cfg.batch_size, mini_batch_size=cfg.mini_batch_size,
                    learning_rate=cfg.learning_rate, kl_coef=cfg.kl_coef, adaptive_kl=False,
                    response_length=cfg.response_length, fit_response_length=False, temperature=cfg.temperature,
                    chat_format=False, missing_eos_penalty=None, sample_every=5, seed=cfg.seed)
    return replace(profile.ppo, **{**settings, **changes})


def train_sentiment(writer: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, reward: ClassifierSource,
                    prompts: Sequence[str], cfg: PPOConfig, callbacks: Sequence[Any] | None = None,
                    progress: bool = True) -> ppo.PPOResult:
    """PPO on a copy of ``writer`` (kept unchanged: it is the reference and the "before"), VADER's mean logged as
    ``objective/vader`` (watched, not optimised). ``callbacks``: default = printed samples (:func:`plot_training`
    draws the curves afterwards, with this task's labels)."""
    vader = VaderScore()
    if callbacks is None:
        callbacks = [ppo_runs.PrintSamples()]
    return ppo_runs.train_ppo(copy.deepcopy(writer), None, tokenizer, reward, prompts, cfg, callbacks=callbacks,
                              extra_metrics={"vader": lambda p, r: vader.score(p, r).tolist()}, progress=progress)


def sample_batch(policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                 cfg: SentimentConfig, n: int | None = None) -> GenerationBatch:
    """``n`` (default ``eval_samples``) continuations, the prompts taken in turn, sampled as the rollouts are
    (``temperature``, ``response_length``), seeded: every policy gets the same draw of the sampler."""
    n = cfg.eval_samples if n is None else n
    gen = GenerationConfig(max_new_tokens=cfg.response_length, do_sample=True, temperature=cfg.temperature,
                           top_k=0, top_p=1.0, batch_size=64, seed=cfg.seed + 1, chat_format=False)
    return generate_ids(policy, tokenizer, [prompts[i % len(prompts)] for i in range(n)], gen, progress=False)


def compare_policies(policies: Mapping[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase,
                     prompts: Sequence[str], reward: ClassifierSource, cfg: SentimentConfig,
                     reference: PreTrainedModel | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each policy's continuations of the held-out ``prompts`` scored by the classifier (the reward, and the share it
    calls the target sentiment) and by VADER (mean, median, the share it calls positive and negative), with the KL
    to the model ``reference`` (default: the first policy) on the same continuations. Returns ``(table, samples)``: one row per policy, and
    every (prompt, policy) continuation with its two scores."""
    import pandas as pd

    vader = VaderScore()
    ref = reference if reference is not None else next(iter(policies.values()))
    rows, samples = {}, []
    for name, policy in policies.items():
        sampled = sample_batch(policy, tokenizer, prompts, cfg)
        batch, texts = sampled.prompts, sampled.responses
        scores = reward.score(batch, texts)
        compound = pd.Series(vader.compound([f"{p} {t}" for p, t in zip(batch, texts, strict=True)]))
        kl = sequence_kl(policy, ref, sampled)[0].mean() if policy is not ref else 0.0
        rows[name] = {"reward_mean": float(scores.mean()), "reward_median": float(scores.median()),
                      f"classifier_{cfg.target}": float((scores > 0).float().mean()),
                      "vader_mean": compound.mean(), "vader_median": compound.median(),
                      "vader_positive": (compound >= VADER_THRESHOLD).mean(),
                      "vader_negative": (compound <= -VADER_THRESHOLD).mean(), "kl": float(kl), "n": len(texts)}
        samples += [{"policy": name, "prompt": p, "continuation": t, "reward": float(s), "vader": c}
                    for p, t, s, c in zip(batch, texts, scores.tolist(), compound, strict=True)]
    return pd.DataFrame.from_dict(rows, orient="index"), pd.DataFrame(samples)


def side_by_side(samples: pd.DataFrame, n: int = 6) -> pd.DataFrame:
    """The first ``n`` prompts' continuations, one column per policy (the same draw of the sampler for each)."""
    first = samples.groupby("policy", sort=False).head(n)
    table = first.assign(i=first.groupby("policy", sort=False).cumcount())
    return table.pivot(index=["i", "prompt"], columns="policy", values="continuation").droplevel(0)


# ============================================================================================== LoRA and checkpointing
@dataclass
class Variant:
    """One row of the efficiency table: LoRA or not, gradient checkpointing or not, the mixed precision asked."""

    name: str
    use_lora: bool
    gradient_checkpointing: bool
    mixed_precision: str = "auto"


def variants(cuda: bool) -> list[Variant]:
    """Full and LoRA, each without and with gradient checkpointing; on a GPU also both in float32 (no mixed
    precision), so the table shows what fp16/bf16 buys there."""
    out = [Variant("full", False, False), Variant("full + checkpointing", False, True),
           Variant("LoRA", True, False), Variant("LoRA + checkpointing", True, True)]
    if cuda:
        out += [Variant("full, float32", False, False, "no"), Variant("LoRA, float32", True, False, "no")]
    return out


def saved_activations_mb(trainer: ppo.PPOTrainerLite, rollout: ppo.Rollout) -> float:
    """MB of the tensors autograd keeps for the backward pass of one training forward on a minibatch of ``rollout``
    (the weights themselves left out): the memory gradient checkpointing trades for a second forward. Measured with
    ``torch.autograd.graph.saved_tensors_hooks`` -- exact, unlike the process's memory on a CPU."""
    import torch

    weights = {p.data_ptr() for p in trainer.model.parameters()}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.data_ptr() not in weights:
            total += t.numel() * t.element_size()
        return t

    n = trainer.cfg.mini_batch_size
    trainer.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, values = trainer.model(rollout.input_ids[:n], rollout.attention_mask[:n], rollout.response_len)
    del logits, values
    return total / 2**20


def efficiency_table(writer: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, reward: ClassifierSource,
                     prompts: Sequence[str], eval_prompts: Sequence[str], profile: Profile,
                     progress: bool = True, only: Sequence[str] | None = None) -> pd.DataFrame:
    """The same short sentiment run (``table_updates`` updates) once per :func:`variants` row, from the same writer:
    trainable parameters, whether PPO holds a second copy of the weights as its reference, peak memory during training, activations kept for backward (one minibatch), seconds per
    update (the first left out: warm-up), the classifier reward of the held-out continuations (gain over the writer)
    and their KL to it. LoRA runs at ``lora_learning_rate`` with rank ``lora_r``; its reference is the same model with
    the adapters off (no copy). ``only``: the names of the rows to run (default: every variant)."""
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    cfg = profile.sentiment
    writer_table, _ = compare_policies({"writer": writer}, tokenizer, eval_prompts, reward, cfg)
    before = writer_table.loc["writer", "reward_mean"]  # every variant's continuations are compared with these
    chosen = [v for v in variants(torch.cuda.is_available()) if only is None or v.name in only]
    if only is not None and len(chosen) != len(set(only)):
        known = [v.name for v in variants(torch.cuda.is_available())]
        raise ValueError(f"unknown variant(s) {sorted(set(only) - set(known))}; the variants: {known}")
    rows = {}
    for v in tqdm(chosen, desc="variants", disable=not progress):
        run_cfg = sentiment_ppo_config(profile, total_updates=cfg.table_updates, use_lora=v.use_lora,
                                       gradient_checkpointing=v.gradient_checkpointing, mixed_precision=v.mixed_precision,
                                       lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                       learning_rate=cfg.lora_learning_rate if v.use_lora else cfg.learning_rate)
        trainer = ppo.PPOTrainerLite(copy.deepcopy(writer), None, tokenizer, reward, prompts, run_cfg, progress=False)
        with PeakMemory() as memory:
            result = trainer.train()
        trainable, total = loading.parameter_counts(trainer.policy)
        seconds = [r["time/update_s"] for r in result.history[1:]] or [result.history[0]["time/update_s"]]
        activations = saved_activations_mb(trainer, trainer.make_rollout(list(prompts[: run_cfg.mini_batch_size])))
        table, _ = compare_policies({v.name: trainer.policy.eval()}, tokenizer, eval_prompts, reward, cfg,
                                    reference=writer)
        rows[v.name] = {"trainable_params": trainable, "trainable_share": trainable / total,
                        "reference_copy": trainer.ref_policy is not None,
                        "precision": trainer.accelerator.mixed_precision, "peak_memory_mb": memory.peak_mb,
                        "memory_measure": memory.measure, "activations_mb": activations,
                        "s_per_update": sum(seconds) / len(seconds), "reward_after": table.loc[v.name, "reward_mean"],
                        "reward_gain": table.loc[v.name, "reward_mean"] - before, "kl": table.loc[v.name, "kl"]}
    return pd.DataFrame.from_dict(rows, orient="index")


# ============================================================================================== exercises
def with_label(source: ClassifierSource, label: str,
               kind: type[ClassifierSource] = ClassifierSource) -> ClassifierSource:
    """The same classifier (the same weights, no copy) as a reward of ``label`` (``"POSITIVE"`` or
    ``"NEGATIVE"``), as a ``kind`` (:class:`ClassifierSource`: log-odds; :class:`RawLogitSource`: TRL's raw logit)."""
    return kind(source.model, source.tokenizer, label, include_prompt=source.include_prompt,
                batch_size=source.batch_size, max_length=source.max_length, name=source.name.split(":")[0])


class RawLogitSource(ClassifierSource):
    """TRL's IMDB reward: the raw logit of the label, not its log-odds. With a softmax head, raising every logit
    alike raises this reward without changing the classifier's belief (notebook 09, exercise 5)."""

    def log_odds(self, texts: Sequence[str]) -> torch.Tensor:
        """The label's raw logit for each text, ``[N]`` (what :meth:`score` returns as the reward)."""
        return self.logits(texts)[:, self.label_id]


def word_shift(samples: pd.DataFrame, before: str, after: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` words whose rate (per 1000 words of continuation) rose most from policy ``before`` to policy
    ``after`` in :func:`compare_policies`' ``samples``: columns ``before``, ``after`` (rates) and ``change``."""
    import re
    from collections import Counter

    import pandas as pd

    def rates(policy: str) -> pd.Series:
        words = [w for t in samples.loc[samples.policy == policy, "continuation"]
                 for w in re.findall(r"[a-z']+", t.lower())]
        if not words:
            raise ValueError(f"no continuation of policy {policy!r} in samples")
        return pd.Series(Counter(words), dtype=float) * 1000 / len(words)

    table = pd.DataFrame({"before": rates(before), "after": rates(after)}).fillna(0.0)
    table["change"] = table["after"] - table["before"]
    return table.sort_values(["change", "after"], ascending=False).head(n)


def unseen_word_share(texts: Sequence[str], known: Sequence[str]) -> float:
    """The share of the words of ``texts`` (lower-cased runs of letters and apostrophes) that occur nowhere in
    ``known`` (e.g. the training reviews): broken words such as ``"beautififul"`` count, real ones do not."""
    import re

    vocabulary = {w for t in known for w in re.findall(r"[a-z']+", t.lower())}
    words = [w for t in texts for w in re.findall(r"[a-z']+", t.lower())]
    if not words:
        raise ValueError("texts have no words")
    return sum(w not in vocabulary for w in words) / len(words)


# ============================================================================================== saving and plots
def save_results(paths: artifacts.Paths, tables: Mapping[str, pd.DataFrame]) -> list[Path]:
    """Each table as ``results/sentiment_<name>.csv`` (written atomically)."""
    return [artifacts.write_csv(t, paths.result(f"sentiment_{name}.csv")) for name, t in tables.items()]


def save_summary(paths: artifacts.Paths, table: pd.DataFrame, efficiency: pd.DataFrame, writer_info: Mapping[str, Any],
                 classifier_info: Mapping[str, Any], target: str) -> Path:
    """``results/sentiment.md``: the before/after and efficiency tables with this run's reading of them (which
    ``make course`` puts into the README)."""
    from .evaluation import markdown_table

    w, p = table.loc["writer"], table.loc["PPO"]
    other = "vader_negative" if target == "positive" else "vader_positive"
    text = ["# Sentiment control: a classifier's reward, VADER's check, LoRA and checkpointing (notebook 09)", "",
            "_Generated by `notebooks/09_sentiment_control.ipynb` (`rlhf_helpers.sentiment.save_summary`)._ "
            f"The writer: {writer_info['source']} ({writer_info['steps']} steps); the classifier: "
            f"{classifier_info['source']}, right on {classifier_info['test_accuracy']:.1%} of "
            f"{classifier_info['test_reviews']} held-out reviews. PPO towards '{target}', continuations of held-out "
            f"openings: reward {w.reward_mean:.3f} -> {p.reward_mean:.3f}; VADER's mean {w.vader_mean:+.3f} -> "
            f"{p.vader_mean:+.3f}, the share it calls the other sentiment {w[other]:.0%} -> {p[other]:.0%}; KL to the "
            f"writer {p.kl:.2f} nats.", "", markdown_table(table), "",
            "The same run, short, per variant (activations: kept for the backward pass of one minibatch):", "",
            markdown_table(efficiency.drop(columns=["memory_measure"])), "",
            "![classifier reward and VADER before and after PPO](../plots/sentiment_before_after.png)", ""]
    return artifacts.write_text(paths.result("sentiment.md"), "\n".join(text))


def plot_training(history: Sequence[Mapping[str, Any]], target: str) -> Figure:
    """Three panels over the updates: the classifier reward, VADER's mean compound score (watched, not optimised)
    and the KL to the writer; smoothed over faint raw curves."""
    import matplotlib.pyplot as plt

    panels = [("objective/scores", f"classifier log-odds of '{target}'"), ("objective/vader", "VADER compound (mean)"),
              ("objective/kl", "KL to the writer (nats)")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    steps = [r["step"] for r in history]
    for i, (ax, (key, label)) in enumerate(zip(axes, panels, strict=True)):
        ys = [r[key] for r in history]
        plot_series(ax, steps, ys, color(i))
        ax.set(xlabel="PPO update", ylabel=label, title=f"{label}\n{key}")
    fig.tight_layout()
    return fig


def plot_before_after(samples: pd.DataFrame, target: str) -> Figure:
    """Histograms of the classifier reward and of VADER's compound score, one colour per policy."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for i, (name, group) in enumerate(samples.groupby("policy", sort=False)):
        axes[0].hist(group.reward, bins=20, alpha=0.55, color=color(i), label=name)
        axes[1].hist(group.vader, bins=20, range=(-1, 1), alpha=0.55, color=color(i), label=name)
    axes[0].set(xlabel=f"classifier log-odds of '{target}' (the reward)", ylabel="continuations")
    axes[1].set(xlabel="VADER compound score (the independent check)", ylabel="continuations")
    legend_outside(axes[1])
    fig.tight_layout()
    return fig


def save_plot(fig: Figure, name: str, paths: artifacts.Paths) -> Path:
    """``plots/sentiment_<name>.png``."""
    return save_figure(fig, f"sentiment_{name}", paths)

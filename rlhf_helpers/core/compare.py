"""Policies compared on the same held-out prompts: the measurement behind notebook 05's PPO-vs-SFT table and
notebook 06's evaluation of every stage.

What is measured, per policy (one row of :attr:`Evaluation.results` each):

* **ROUGE-1/2/L/Lsum and BLEU** against the held-out references (:mod:`.text_metrics`): overlap with *one*
  reference answer, not preference.
* **Learned reward** (mean, median, std) -- the proxy PPO optimised (any reward source: ``score(prompts,
  responses) -> tensor [B]``).
* **Judge score** (mean, median, std) -- the gold judge on the course data, a stronger model elsewhere.
* **Win rate against the reference policy** -- per prompt the judge's score vs the reference's: win 1, tie 1/2,
  loss 0; the mean over prompts with a percentile-bootstrap interval (:func:`.text_metrics.win_rate`).
* **KL to the reference** -- on the policy's own responses, per prompt the k1 sum and the exact per-step sum
  (:func:`.generation.sequence_kl`), averaged over prompts. On greedy responses neither is an unbiased estimate
  of KL(pi || pi_ref) over sequences -- that needs samples (``EvalConfig.do_sample``) -- they measure how far the
  policy moved *along its own answers*.
* **Length and diversity** -- words and tokens per response, the share cut at ``max_new_tokens``, distinct-1/2.

Greedy decoding and a seeded bootstrap make the tables reproducible (:meth:`Evaluation.fingerprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifacts import notebook
from .config import EvalConfig, GenerationConfig
from .generation import sequence_kl
from .text_metrics import ROUGE_TYPES, bleu_score, distinct_n, rouge_per_example, win_rate

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Policy:
    """A loaded policy: ``key`` (registry name), ``label`` (row name in the tables), model and tokenizer;
    ``from_reference``: it was trained starting from the reference policy, so its KL to the reference measures how
    far training moved it (False, e.g. a model fine-tuned separately from the same base: no KL is reported)."""

    key: str
    label: str
    model: Any
    tokenizer: Any
    from_reference: bool = True


def generation_config(cfg: EvalConfig, base: GenerationConfig | None = None) -> GenerationConfig:
    """The decoding of the evaluation: ``base`` (default GenerationConfig) with the EvalConfig's length,
    greedy/sampling, temperature, batch size and seed."""
    return dataclasses.replace(base or GenerationConfig(), max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                               temperature=cfg.temperature, batch_size=cfg.batch_size, seed=cfg.seed)


def _same_vocab(a: Any, b: Any) -> bool:
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())


@dataclass
class PolicyRun:
    """One policy's answers and per-prompt measurements (arrays ``[N]``, one entry per held-out prompt).

    ``reward`` is None without a reward model; ``kl``/``kl_full`` are None without a comparable reference.
    """

    key: str
    label: str
    responses: list[str]
    judge: np.ndarray
    reward: np.ndarray | None
    kl: np.ndarray | None
    kl_full: np.ndarray | None
    tokens: np.ndarray  # response tokens, eos excluded
    cut: np.ndarray  # bool: no eos within max_new_tokens
    rouge: dict[str, np.ndarray]  # per-example F1 of each ROUGE type
    bleu: float  # corpus BLEU
    seconds: float

    @property
    def words(self) -> np.ndarray:
        return np.array([len(r.split()) for r in self.responses])


@dataclass
class Evaluation:
    """Everything :func:`evaluate_policies` measured: per-policy runs, the results frame and notes."""

    prompts: list[str]
    references: list[str]
    topics: list[str]
    runs: dict[str, PolicyRun]
    splits: list[str]  # per prompt: which slice it belongs to (course data: seen_task / unseen_task), else ""
    results: pd.DataFrame  # one row per policy (index = label); columns in RESULT_COLUMNS
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def per_prompt(self) -> pd.DataFrame:
        """Long table: one row per (policy, prompt) with the answer and its scores."""
        import pandas as pd

        rows = []
        for run in self.runs.values():
            for i, (prompt, answer) in enumerate(zip(self.prompts, run.responses, strict=True)):
                rows.append({"policy": run.label, "prompt_id": i, "topic": self.topics[i], "split": self.splits[i],
                             "prompt": prompt,
                             "answer": answer, "judge": run.judge[i],
                             "reward": run.reward[i] if run.reward is not None else math.nan,
                             "kl": run.kl[i] if run.kl is not None else math.nan,
                             "rougeL": run.rouge["rougeL"][i],
                             "tokens": int(run.tokens[i]), "cut": bool(run.cut[i])})
        return pd.DataFrame(rows)

    def by_split(self, cfg: EvalConfig | None = None) -> pd.DataFrame:
        """Judge mean and win rate against the reference (wins / ties / losses, interval) per slice of the prompts
        (``splits``) and policy: one row per (split, policy label). Empty without a reference run."""
        import pandas as pd

        cfg = cfg or EvalConfig()
        base = self.runs.get(self.meta.get("reference", ""))
        rows = []
        for split in dict.fromkeys(self.splits) if base is not None else ():
            idx = np.array([s == split for s in self.splits])
            for run in self.runs.values():
                w = win_rate(run.judge[idx], base.judge[idx], cfg.bootstrap_samples, cfg.seed, cfg.ci_level)
                rows.append({"split": split, "model": run.label, "n": int(idx.sum()),
                             "judge_mean": float(run.judge[idx].mean()),
                             "judge_gain": float((run.judge[idx] - base.judge[idx]).mean()),
                             "win_rate": w["win_rate"], "win_low": w["low"], "win_high": w["high"],
                             "wins": w["wins"], "ties": w["ties"], "losses": w["losses"]})
        return pd.DataFrame(rows)

    def qualitative(self, n: int = 6) -> pd.DataFrame:
        """The first ``n`` prompts answered by every policy, side by side (one column per policy)."""
        import pandas as pd

        table = {"prompt": self.prompts[:n], "reference": self.references[:n]}
        table.update({run.label: run.responses[:n] for run in self.runs.values()})
        return pd.DataFrame(table)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The display tables (see :func:`summary_tables`)."""
        return summary_tables(self.results, self.meta.get("reference_label", "SFT"))

    def fingerprint(self) -> str:
        """A short hash of the results table: equal for runs that reproduce the same numbers."""
        return hashlib.sha256(self.results.to_csv().encode()).hexdigest()[:12]


RESULT_COLUMNS = (
    "policy", "n", "reward_mean", "reward_median", "reward_std", "judge_mean", "judge_median", "judge_std",
    "win_rate", "win_low", "win_high", "wins", "ties", "losses", "kl", "kl_full",
    *ROUGE_TYPES, "bleu", "words_mean", "words_median", "tokens_mean", "cut_rate", "distinct_1", "distinct_2",
)  # no timings: the same checkpoints and seed must give byte-identical tables (timings are in Evaluation.meta)


def _run_policy(policy: Policy, prompts: list[str], references: list[str], gen_cfg: GenerationConfig,
                reward_source: Any | None, judge: Any, ref: Policy | None, progress: bool,
                text_metrics: bool = True) -> PolicyRun:
    from .generation import generate_ids

    t0 = time.perf_counter()
    batch = generate_ids(policy.model, policy.tokenizer, prompts, gen_cfg, desc=f"answers of {policy.label}",
                         progress=progress)
    responses = batch.responses
    kl = kl_full = None
    if ref is not None and policy.from_reference and _same_vocab(policy.tokenizer, ref.tokenizer):
        kl, kl_full = sequence_kl(policy.model, ref.model, batch, gen_cfg.batch_size)
    bs = gen_cfg.batch_size
    if text_metrics:
        rouge = {k: np.array(v) for k, v in rouge_per_example(responses, references).items()}
        bleu = bleu_score(responses, references)["bleu"]
    else:
        rouge, bleu = {k: np.full(len(responses), math.nan) for k in ROUGE_TYPES}, math.nan
    return PolicyRun(
        key=policy.key, label=policy.label, responses=responses,
        judge=_score(judge, prompts, responses, bs),
        reward=None if reward_source is None else _score(reward_source, prompts, responses, bs),
        kl=kl, kl_full=kl_full,
        tokens=(batch.response_mask.sum(1) - batch.eos_found.long()).numpy(),
        cut=(~batch.eos_found).numpy(),
        rouge=rouge,
        bleu=bleu,
        seconds=time.perf_counter() - t0,
    )


def _row(run: PolicyRun, baseline: PolicyRun | None, cfg: EvalConfig) -> dict[str, Any]:
    row: dict[str, Any] = {"policy": run.key, "n": len(run.responses)}
    for name, values in (("reward", run.reward), ("judge", run.judge)):
        row[f"{name}_mean"], row[f"{name}_median"], row[f"{name}_std"] = _stats(values)
    if baseline is not None:
        w = win_rate(run.judge, baseline.judge, cfg.bootstrap_samples, cfg.seed, cfg.ci_level)
        row.update(win_rate=w["win_rate"], win_low=w["low"], win_high=w["high"], wins=w["wins"], ties=w["ties"],
                   losses=w["losses"])
    else:
        row.update({k: math.nan for k in ("win_rate", "win_low", "win_high", "wins", "ties", "losses")})
    row["kl"] = float(np.mean(run.kl)) if run.kl is not None else math.nan
    row["kl_full"] = float(np.mean(run.kl_full)) if run.kl_full is not None else math.nan
    row.update({k: float(np.mean(v)) for k, v in run.rouge.items()})
    row["bleu"] = run.bleu
    words = run.words
    row.update(words_mean=float(words.mean()), words_median=float(np.median(words)),
               tokens_mean=float(run.tokens.mean()), cut_rate=float(run.cut.mean()),
               distinct_1=distinct_n(run.responses, 1), distinct_2=distinct_n(run.responses, 2))
    return row


def evaluate_policies(policies: Mapping[str, Policy], prompts: Sequence[str], references: Sequence[str],
                      reward_source: Any | None, judge: Any, cfg: EvalConfig | None = None,
                      topics: Sequence[str] | None = None, skipped: Mapping[str, str] | None = None,
                      gen_base: GenerationConfig | None = None, progress: bool = True,
                      splits: Sequence[str] | None = None, text_metrics: bool = True) -> Evaluation:
    """Answer ``prompts`` with every policy (greedy unless ``cfg.do_sample``; seeded) and measure everything.

    ``cfg.reference_policy`` (default ``sft_full``) is the win-rate baseline and the KL reference; when it is not
    among ``policies`` those columns are NaN, with a note. ``reward_source=None`` -> NaN reward columns (noted).
    ``skipped`` (policy name -> why it is missing, e.g. from ``evaluation.load_policies``) is copied into the notes.
    ``topics`` and ``splits`` (one per prompt) label the prompts for the per-topic and per-slice tables.
    ``text_metrics=False`` skips ROUGE and BLEU against the references (NaN columns, noted): ~0.8 s per policy on
    tiny, for a caller that does not report them.
    """
    import pandas as pd

    cfg = cfg or EvalConfig()
    prompts, references = list(prompts), list(references)
    if len(prompts) != len(references) or not prompts:
        raise ValueError(f"need as many references as prompts (and at least one): {len(prompts)} vs {len(references)}")
    if not policies:
        raise ValueError("no policy to evaluate: run the training notebooks first (see the skipped-stage notes)")
    gen_cfg = generation_config(cfg, gen_base)
    notes = [f"{name}: skipped -- {why}" for name, why in (skipped or {}).items()]
    ref_key = cfg.reference_policy
    ref = policies.get(ref_key)
    ref_label = ref.label if ref is not None else ref_key
    if ref is None:
        notes.append(f"Reference policy '{ref_key}' not evaluated: no win rates and no KL "
                     f"(run notebooks/{notebook(ref_key)}).")
    if not text_metrics:
        notes.append("ROUGE and BLEU not computed (text_metrics=False): those columns are empty.")
    if reward_source is None:
        notes.append(f"No learned reward model: reward columns empty (run notebooks/{notebook('reward')}).")
    runs: dict[str, PolicyRun] = {}
    # the reference first: the others' win rates compare with its judge scores
    for key in sorted(policies, key=lambda k: k != ref_key):
        p = policies[key]
        runs[key] = _run_policy(p, prompts, references, gen_cfg, reward_source, judge, ref, progress, text_metrics)
        if ref is not None and not p.from_reference:
            notes.append(f"{p.label}: no KL to {ref_label} -- not trained from it, so the KL would not measure a move.")
        elif ref is not None and not _same_vocab(p.tokenizer, ref.tokenizer):
            notes.append(f"{p.label}: no KL to {ref_label} -- different tokenizers, the log-probs do not compare.")
    runs = {k: runs[k] for k in policies}  # back to the registry order
    baseline = runs.get(ref_key)
    frame = pd.DataFrame([_row(run, baseline, cfg) for run in runs.values()],
                         index=pd.Index([r.label for r in runs.values()], name="model"), columns=list(RESULT_COLUMNS))
    meta = {"prompts": len(prompts), "decoding": "sampled" if cfg.do_sample else "greedy",
            "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed, "judge": getattr(judge, "name", str(judge)),
            "reward": getattr(reward_source, "name", None) if reward_source is not None else None,
            "reference": ref_key, "reference_label": ref_label, "bootstrap_samples": cfg.bootstrap_samples,
            "ci_level": cfg.ci_level, "seconds": {r.label: round(r.seconds, 1) for r in runs.values()}}
    blank = [""] * len(prompts)
    return Evaluation(prompts, references, list(topics) if topics is not None else blank, runs,
                      list(splits) if splits is not None else blank, frame, notes, meta)


def _score(source: Any, prompts: list[str], responses: list[str], batch_size: int) -> np.ndarray:
    """``source.score`` in batches, as a float64 array ``[N]``."""
    parts = [np.asarray(source.score(prompts[i : i + batch_size], responses[i : i + batch_size]).detach().cpu(),
                        dtype=float).reshape(-1) for i in range(0, len(prompts), batch_size)]
    scores = np.concatenate(parts) if parts else np.zeros(0)
    if scores.shape != (len(prompts),):
        raise ValueError(f"{getattr(source, 'name', source)!r} returned {scores.shape[0]} scores for "
                         f"{len(prompts)} responses")
    return scores


def _stats(values: np.ndarray | None) -> tuple[float, float, float]:
    """(mean, median, std) -- population std (ddof=0); NaNs when there are no values."""
    if values is None or len(values) == 0:
        return (math.nan,) * 3
    return float(np.mean(values)), float(np.median(values)), float(np.std(values))


def summary_tables(frame: pd.DataFrame, reference_label: str = "SFT (full)",
                   judge_label: str = "gold") -> dict[str, pd.DataFrame]:
    """The headline tables from a results frame (index = model, columns as :data:`RESULT_COLUMNS`):

    * ``rewards`` -- learned reward and judge (mean/median/std), win rate vs the reference with its CI, KL;
    * ``rouge`` -- ROUGE-1/2/L/Lsum and BLEU against the references;
    * ``length_diversity`` -- response lengths, share cut at max_new_tokens, distinct-1/2.
    """
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"results frame lacks columns {missing}")
    ref = reference_label
    rewards = frame[["reward_mean", "reward_median", "reward_std", "judge_mean", "judge_median", "judge_std",
                     "win_rate", "win_low", "win_high", "kl", "kl_full"]].copy()
    rewards.columns = ["reward mean", "reward median", "reward std", f"{judge_label} mean", f"{judge_label} median",
                       f"{judge_label} std", f"win rate vs {ref}", "CI low", "CI high", f"KL to {ref} (k1)",
                       f"KL to {ref} (exact/token)"]
    rouge = frame[[*ROUGE_TYPES, "bleu"]].copy()
    rouge.columns = ["ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum", "BLEU"]
    lengths = frame[["words_mean", "words_median", "tokens_mean", "cut_rate", "distinct_1", "distinct_2"]].copy()
    lengths.columns = ["words (mean)", "words (median)", "tokens (mean)", "cut at max tokens", "distinct-1",
                       "distinct-2"]
    return {"rewards": rewards, "rouge": rouge, "length_diversity": lengths}

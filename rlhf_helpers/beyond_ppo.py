"""Notebook 07: beyond PPO -- DPO, RLOO and GRPO from the same SFT model, on the same data, against one yardstick.

* **DPO** (:func:`train_dpo`, TRL's ``DPOTrainer``): the course's preference pairs, no reward model, no sampling;
  the sigmoid loss at each ``cfg.dpo_betas`` and the IPO loss at ``cfg.ipo_beta``.
* **RLOO** and **GRPO** (:func:`train_online`, TRL's ``RLOOTrainer`` / ``GRPOTrainer``): sampled answers to
  notebook 05's prompts, scored by notebook 04's learned reward model (the normalised scorer PPO uses, wrapped by
  :func:`reward_function`) or by any reward source (a programmatic one too).
* **One evaluation** (:func:`evaluate_methods`): every policy, PPO's from notebook 05 and SFT itself answer the
  held-out prompts greedily; :func:`method_table` gives per method the gold win rate against SFT with its
  interval, the gold and learned reward means, the KL to SFT (the same estimator for all), the answer length,
  and the training's wall time and peak memory. :func:`plot_frontier` draws gold and proxy against KL.

Each run is a :class:`MethodRun`: the trained policy (in memory: the notebook evaluates it right away), TRL's log
history, seconds and peak memory. The table and the logs are written to ``outputs/results/`` (:func:`save_results`).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .core import artifacts, loading
from .core.compare import Evaluation, Policy, evaluate_policies
from .core.config import BeyondPPOConfig, EvalConfig, Profile
from .core.plots import color, legend_outside

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset
    from matplotlib.figure import Figure

RESULTS_FILE = "beyond_ppo.csv"
LOGS_FILE = "beyond_ppo_logs.jsonl"
SUMMARY_FILE = "beyond_ppo.md"
METHODS = ("SFT", "PPO", "DPO", "IPO", "RLOO", "GRPO")  # the frontier's colours and the table's order


@dataclass
class MethodRun:
    """One trained policy: ``method`` (PPO, DPO, IPO, RLOO, GRPO), its ``beta``, the model (eval mode), its log
    history (TRL's, one dict per ``logging_steps``; PPO's, one per update), wall seconds of training and peak memory
    (MB; ``memory`` says what was measured). ``variant`` tells two runs of one method and beta apart (PPO's sweep)."""

    method: str
    beta: float
    model: Any
    history: list[dict[str, float]]
    seconds: float
    peak_memory_mb: float
    memory: str
    variant: str = ""

    @property
    def label(self) -> str:
        return f"{self.method}{' ' + self.variant if self.variant else ''} (beta={self.beta:g})"


# ================================================================================================== data
def preference_dataset(pairs: Dataset) -> Dataset:
    """TRL's conversational preference format from the course's ``prompt``/``chosen``/``rejected`` strings: the
    chat template then renders exactly the SFT format, eos included."""
    from datasets import Dataset as HFDataset

    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in pairs]
    return HFDataset.from_list(rows)


def prompt_dataset(prompts: Sequence[str]) -> Dataset:
    """TRL's conversational prompt-only format (one user turn per prompt), for RLOO and GRPO."""
    from datasets import Dataset as HFDataset

    return HFDataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])


def reward_function(source: Any, name: str = "reward_model") -> Callable[..., list[float]]:
    """A TRL reward function (``prompts``, ``completions`` -> one float each) from a course reward source
    (``score(prompts, responses) -> Tensor[B]``): the learned reward model, the gold judge, a programmatic reward.
    TRL logs its mean as ``rewards/<name>/mean``."""

    def reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        answers = [(c[-1]["content"] if isinstance(c, list) else c).strip() for c in completions]
        return [float(x) for x in source.score(texts, answers)]

    reward.__name__ = name
    return reward


# ================================================================================================ inputs
@dataclass
class Inputs:
    """What notebook 07 takes from the earlier notebooks: the SFT policy and tokenizer (02), the preference pairs
    and PPO's prompts (01), the learned reward (04), the judge, the held-out prompts, and PPO's policies (05: the
    main run and the beta sweep's, :func:`load_ppo_runs`; empty when notebook 05 has not run)."""

    sft: Any
    tokenizer: Any
    pairs: Dataset
    prompts: list[str]
    reward_source: Any
    judge: Any
    heldout: Any
    ppo_runs: list[MethodRun]
    completion_length: int  # tokens per RLOO/GRPO answer: cfg.max_completion_length, or PPO's rollout length


def load_inputs(profile: Profile) -> Inputs:
    """Load :class:`Inputs`; a missing SFT, data or reward stage raises ``MissingStageError`` naming its notebook.
    The pairs are the first ``dpo_max_steps x dpo_batch_size`` training pairs after a shuffle seeded by ``cfg.seed``
    (all that DPO's steps visit). RLOO and GRPO answer in ``cfg.max_completion_length`` tokens, by default PPO's
    rollout length (:func:`~rlhf_helpers.ppo_runs.rollout_config`): the same budget for every online method."""
    from . import data_prep, reward
    from .judge import load_judge
    from .ppo_runs import rollout_config

    cfg = profile.beyond
    prep = data_prep.load_prepared(profile)
    # float32 weights, as PPO's: the trainers' mixed precision (fp16/bf16 autocast) needs float32 master weights
    model, tokenizer = loading.load_model(profile.paths.finished("sft_full"), "float32")
    train = prep.preferences["train"].shuffle(seed=cfg.seed)
    pairs = train.select(range(min(len(train), cfg.dpo_max_steps * cfg.dpo_batch_size)))
    prompts = data_prep.rl_prompts(prep)  # the prompts PPO trained on
    length = cfg.max_completion_length or rollout_config(profile.ppo, tokenizer, prep)[0].response_length
    return Inputs(model, tokenizer, pairs, prompts, reward.load_reward_source(profile), load_judge(profile),
                  data_prep.heldout(profile), load_ppo_runs(profile), length)


def load_ppo_runs(profile: Profile) -> list[MethodRun]:
    """Notebook 05's PPO policies as runs: the main run (beta = its ``kl_coef``; the start value when adaptive) and
    each beta of the sweep whose final policy was saved (:func:`~rlhf_helpers.ppo_runs.sweep_policy_dir`, variant
    "sweep"). Seconds = the sum of the updates' wall time (``time/update_s``); memory was not measured there.
    Empty, with a note, when notebook 05 has not run."""
    from .core.artifacts import BETA_SWEEP_LOG, PPO_INFO, PPO_LOG, MissingStageError, read_json, read_records
    from .ppo_runs import load_ppo_policy, sweep_policy_dir

    try:
        path = profile.paths.finished("ppo")
    except MissingStageError as err:
        print(f"PPO: skipped -- {err}")
        return []
    cfg = read_json(path / PPO_INFO).get("config", {})
    found = [(float(cfg.get("kl_coef", math.nan)), "adaptive" if cfg.get("adaptive_kl") else "", path,
              read_records(path / PPO_LOG))]
    sweep = profile.paths.result(BETA_SWEEP_LOG)
    records = read_records(sweep) if sweep.exists() else []
    for beta in sorted({r["beta"] for r in records}):
        folder = sweep_policy_dir(profile.paths, beta)
        if (folder / "config.json").exists():
            found.append((beta, "sweep", folder, [r for r in records if r["beta"] == beta]))
    runs = []
    for beta, variant, folder, log in found:
        with loading.quiet_transformers():
            model = load_ppo_policy(folder).eval()
        times = [r["time/update_s"] for r in log if "time/update_s" in r]
        runs.append(MethodRun("PPO", beta, model, log, sum(times) if times else math.nan, math.nan,
                              "not measured in notebook 05", variant))
    return runs


# ============================================================================================== training
def _common_args(cfg: BeyondPPOConfig, output_dir: Path, progress: bool, model_type: str) -> dict[str, Any]:
    """The TrainingArguments every run shares: precision per :func:`loading.precision` (for the policy's model
    type), a constant learning rate, no checkpoints, no reports, dropout off, no activation checkpointing (TRL's
    default is on: ~60% slower on tiny models)."""
    flags = loading.precision(model_type).trainer_flags()
    return dict(output_dir=str(output_dir), logging_steps=cfg.logging_steps, save_strategy="no", report_to="none",
                gradient_checkpointing=False, disable_dropout=True, seed=cfg.seed, data_seed=cfg.seed,
                disable_tqdm=not progress, lr_scheduler_type="constant", **flags)


def _log_last_step() -> Any:
    """A ``TrainerCallback`` that logs the last step too (TRL logs every ``logging_steps`` only), so a run's log
    always ends with its final state."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def _snapshots(every: int, template: Any) -> Any:
    """A ``TrainerCallback`` keeping a frozen copy of the policy every ``every`` steps before the last, with the
    training seconds so far: ``.kept = [(step, seconds, model), ...]``. The weights are loaded into a copy of
    ``template`` (the SFT policy): a deep copy of the model under training also copied the trainer's wrapped
    ``forward``, which still ran the live model's weights."""
    from transformers import TrainerCallback

    class Snapshots(TrainerCallback):
        def __init__(self) -> None:
            self.kept: list[tuple[int, float, Any]] = []
            self.start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if every > 0 and step % every == 0 and step < state.max_steps:
                snapshot = loading.frozen_copy(template)
                snapshot.load_state_dict(model.state_dict())
                self.kept.append((step, time.perf_counter() - self.start, snapshot))

    return Snapshots()


def _timed_train(trainer: Any) -> tuple[float, float, str]:
    """Train; return (seconds, peak memory MB, what the memory figure measures)."""
    from .core.measure import PeakMemory

    start = time.perf_counter()
    with PeakMemory() as memory:
        trainer.train()
    return time.perf_counter() - start, memory.peak_mb, memory.measure


def train_dpo(profile: Profile, inputs: Inputs, beta: float, loss_type: str = "sigmoid",
              progress: bool = True) -> MethodRun:
    """DPO (``loss_type="sigmoid"``) or IPO (``"ipo"``) from a copy of the SFT policy, against another, frozen copy
    (the reference), on ``inputs.pairs``: ``cfg.dpo_max_steps`` steps of ``cfg.dpo_batch_size`` pairs."""
    from trl import DPOConfig, DPOTrainer

    cfg = profile.beyond
    model = loading.frozen_copy(inputs.sft).train().requires_grad_(True)
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(**_common_args(cfg, Path(tmp), progress, model.config.model_type), beta=beta, loss_type=[loss_type],
                         learning_rate=cfg.dpo_learning_rate, max_steps=cfg.dpo_max_steps,
                         per_device_train_batch_size=cfg.dpo_batch_size, max_length=profile.sft.max_length)
        with loading.quiet_datasets():
            trainer = DPOTrainer(model=model, ref_model=loading.frozen_copy(inputs.sft), args=args,
                                 train_dataset=preference_dataset(inputs.pairs), processing_class=inputs.tokenizer,
                                 callbacks=[_log_last_step()])
        seconds, peak, measure = _timed_train(trainer)
    method = "IPO" if loss_type == "ipo" else "DPO"
    return MethodRun(method, beta, trainer.model.eval(), _logs(trainer), seconds, peak, measure)


def train_online(profile: Profile, method: str, inputs: Inputs, beta: float, reward_source: Any | None = None,
                 progress: bool = True) -> list[MethodRun]:
    """RLOO or GRPO (``method``) from a copy of the SFT policy on PPO's prompts, rewarded by ``reward_source``
    (default: the learned reward model, normalised, as PPO): ``cfg.online_max_steps`` steps, each on
    ``cfg.prompts_per_step`` prompts x ``cfg.num_generations`` samples. Returns the policy every
    ``cfg.online_snapshot_every`` steps (variant ``"step k"``, its log up to step k), then the final one. With
    ``beta > 0`` TRL loads the reference again from the checkpoint the SFT policy came from
    (``config.name_or_path``): a policy built in memory has none (``ValueError``)."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    classes = {"RLOO": (RLOOConfig, RLOOTrainer), "GRPO": (GRPOConfig, GRPOTrainer)}
    if method not in classes:
        raise ValueError(f"method must be one of {sorted(classes)}, got {method!r}")
    config_class, trainer_class = classes[method]
    if beta > 0 and not inputs.sft.config.name_or_path:
        raise ValueError(f"{method} with beta={beta} needs a reference, which TRL loads from the SFT policy's "
                         "checkpoint; this policy was not loaded from one (save_pretrained it and load it from there)")
    cfg = profile.beyond
    model = loading.frozen_copy(inputs.sft).train().requires_grad_(True)
    source = inputs.reward_source if reward_source is None else reward_source
    batch = cfg.prompts_per_step * cfg.num_generations  # completions per optimizer step
    snapshots = _snapshots(cfg.online_snapshot_every, inputs.sft)
    with tempfile.TemporaryDirectory() as tmp:
        args = config_class(**_common_args(cfg, Path(tmp), progress, model.config.model_type), beta=beta,
                            learning_rate=cfg.online_learning_rate, max_steps=cfg.online_max_steps,
                            per_device_train_batch_size=batch, num_generations=cfg.num_generations,
                            max_completion_length=inputs.completion_length, temperature=cfg.temperature)
        with loading.quiet_datasets():
            trainer = trainer_class(model=model, reward_funcs=reward_function(source), args=args,
                                    train_dataset=prompt_dataset(inputs.prompts), processing_class=inputs.tokenizer,
                                    callbacks=[_log_last_step(), snapshots])
        seconds, peak, measure = _timed_train(trainer)
    log = _logs(trainer)
    kept = [MethodRun(method, beta, copy, [r for r in log if r["step"] <= step], secs, peak, measure, f"step {step}")
            for step, secs, copy in snapshots.kept]
    return [*kept, MethodRun(method, beta, trainer.model.eval(), log, seconds, peak, measure)]


def _logs(trainer: Any) -> list[dict[str, float]]:
    """TRL's log history without the final summary record."""
    return [r for r in trainer.state.log_history if "train_runtime" not in r]


SUMMARY_KEYS = ("rewards/margins", "rewards/accuracies", "reward", "kl", "completions/mean_length")


def training_summary(runs: Sequence[MethodRun]) -> pd.DataFrame:
    """Per run: seconds, peak memory, and each of TRL's :data:`SUMMARY_KEYS` it logged, at its first and last
    logged step (``"reward first"``, ``"reward last"``...; NaN where the trainer does not log the key)."""
    import pandas as pd

    if not runs:
        raise ValueError("training_summary needs at least one run")
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.label, "seconds": run.seconds, "peak memory MB": run.peak_memory_mb}
        for key in SUMMARY_KEYS:
            values = [h[key] for h in run.history if key in h]
            row[f"{key} first"] = values[0] if values else math.nan
            row[f"{key} last"] = values[-1] if values else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("run").dropna(axis=1, how="all")


# ============================================================================================ evaluation
def evaluate_methods(profile: Profile, inputs: Inputs, runs: Sequence[MethodRun], progress: bool = True) -> Evaluation:
    """SFT (the reference) and every run (PPO's from ``inputs.ppo_runs`` too, if you pass them) answer the held-out
    prompts of the slice ``cfg.eval_split`` (all of them if the data has no such slice), greedily; one
    :func:`~rlhf_helpers.core.compare.evaluate_policies` measures them all, KL to SFT included (ROUGE and BLEU are
    not: :func:`method_table` does not report them)."""
    tok = inputs.tokenizer
    policies = {"sft_full": Policy("sft_full", "SFT", inputs.sft, tok)}
    for run in runs:
        policies[run.label] = Policy(run.label, run.label, run.model, tok)
    cfg = dataclasses.replace(profile.eval, reference_policy="sft_full")
    held = inputs.heldout
    keep = held.indices(profile.beyond.eval_split)
    prompts, references, topics, splits = ([column[i] for i in keep] for column in
                                           (held.prompts, held.references, held.topics, held.splits))
    return evaluate_policies(policies, prompts, references, inputs.reward_source, inputs.judge, cfg, topics=topics,
                             gen_base=profile.generation, progress=progress, splits=splits, text_metrics=False)


def _interval(name: str, values: np.ndarray, level: float) -> dict[str, float]:
    """``{name_low, name_high}``: the normal-approximation interval of the mean, mean -/+ z * sd / sqrt(n)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * float(np.std(values, ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return {f"{name}_low": float(np.mean(values)) - half, f"{name}_high": float(np.mean(values)) + half}


def method_table(ev: Evaluation, runs: Sequence[MethodRun], split: str | None = None) -> pd.DataFrame:
    """One row per policy: method, beta, gold mean with its 95% interval, win rate against SFT (wins / ties /
    losses, interval), learned reward mean with its interval, KL to SFT (k1 summed over the greedy answer, nats per
    answer), words per answer, training seconds and peak memory. ``split`` (e.g. ``"seen_task"``, the headline
    slice) restricts every per-prompt column to that slice of the prompts (all of them by default)."""
    import pandas as pd

    if split and split not in ev.splits:
        raise ValueError(f"no held-out prompt of the slice {split!r} was evaluated; slices: {sorted(set(ev.splits))}")
    by_label = {r.label: r for r in runs}
    cfg = EvalConfig(bootstrap_samples=ev.meta["bootstrap_samples"], seed=ev.meta["seed"], ci_level=ev.meta["ci_level"])
    slices = ev.by_split(cfg).set_index(["split", "model"]) if split else None
    idx = np.array([s == split for s in ev.splits]) if split else np.ones(len(ev.prompts), bool)
    rows = []
    for run in ev.runs.values():
        trained = by_label.get(run.label)
        method = trained.method if trained else run.label
        win = ev.results.loc[run.label] if slices is None else slices.loc[(split, run.label)]
        reward = run.reward[idx] if run.reward is not None else np.full(int(idx.sum()), math.nan)
        seconds = trained.seconds if trained else math.nan
        rows.append({"method": method, "policy": run.label, "beta": trained.beta if trained else math.nan,
                     "gold": float(run.judge[idx].mean()), **_interval("gold", run.judge[idx], cfg.ci_level),
                     **{k: win[k] for k in ("win_rate", "win_low", "win_high", "wins", "ties", "losses")},
                     "reward": float(np.mean(reward)), **_interval("reward", reward, cfg.ci_level),
                     "kl": float(np.mean(run.kl[idx])) if run.kl is not None else math.nan,
                     "words": float(np.mean(run.words[idx])), "train_seconds": seconds,
                     "peak_memory_mb": trained.peak_memory_mb if trained else math.nan})
    return pd.DataFrame(rows).set_index("policy").astype({"wins": int, "ties": int, "losses": int})


SUMMARY_COLUMNS = ("method", "beta", "gold", "gold_low", "gold_high", "win_rate", "win_low", "win_high", "wins", "ties",
                   "losses", "reward", "kl", "words", "train_seconds", "peak_memory_mb")


def evaluated_prompts(ev: Evaluation) -> str:
    """Which prompts ``ev`` answered, in words: ``"160 seen-task held-out prompts"`` when they are one slice,
    else ``"220 held-out prompts"``."""
    kinds = set(ev.splits)
    kind = next(iter(kinds)).replace("_", "-") + " " if len(kinds) == 1 and "" not in kinds else ""
    return f"{len(ev.prompts)} {kind}held-out prompts"


def save_results(table: pd.DataFrame, runs: Sequence[MethodRun], paths: artifacts.Paths,
                 prompts: str = "held-out prompts") -> list[Path]:
    """Write, atomically: ``beyond_ppo.csv`` (the table), ``beyond_ppo_logs.jsonl`` (every run's TRL log, one
    record per logged step with its method and beta) and ``beyond_ppo.md`` (the table and its :func:`reading`, which
    ``make course`` puts into the README); ``prompts`` says which prompts (:func:`evaluated_prompts`)."""
    from .evaluation import markdown_table

    records = [{"method": r.method, "beta": r.beta, **entry} for r in runs for entry in r.history]
    out, logs, summary = paths.result(RESULTS_FILE), paths.result(LOGS_FILE), paths.result(SUMMARY_FILE)
    artifacts.write_csv(table, out)
    artifacts.write_jsonl(records, logs)
    text = ["# Beyond PPO: DPO, IPO, RLOO and GRPO (notebook 07)", "",
            "_Generated by `notebooks/07_beyond_ppo.ipynb` (`rlhf_helpers.beyond_ppo.save_results`)._ On "
            f"{prompts}: gold and learned reward means with 95% intervals, the gold win rate "
            "against SFT, KL to SFT (k1 summed over the greedy answer, nats per answer), words per answer; training "
            f"wall time in seconds and peak memory in MB ({runs[0].memory if runs else 'not measured'}).", "",
            markdown_table(table[list(SUMMARY_COLUMNS)]), "", reading(table), "",
            "![gold and learned reward against KL to SFT](../plots/beyond_frontier.png)", ""]
    artifacts.write_text(summary, "\n".join(text))
    return [out, logs, summary]


def reading(table: pd.DataFrame) -> str:
    """This run's reading of the :func:`method_table`, in sentences generated from the numbers: the best policy of
    each method, which ones beat SFT with the interval above 0.5, the highest gold, the smallest KL among the winners
    and the fastest."""
    trained = table[table.method != "SFT"]
    if trained.empty:
        raise ValueError("the table has no trained policy to read (only SFT)")
    lines = []
    for method in [m for m in METHODS if m in set(trained.method)]:
        part = trained[trained.method == method]
        best = part.gold.idxmax()
        r = part.loc[best]
        verdict = "beats SFT" if r.win_low > 0.5 else "does not clearly beat SFT"
        lines.append(f"- {best}: gold {r.gold:.3f} [{r.gold_low:.3f}, {r.gold_high:.3f}], win rate {r.win_rate:.3f} "
                     f"[{r.win_low:.3f}, {r.win_high:.3f}] ({int(r.wins)}/{int(r.ties)}/{int(r.losses)} "
                     f"wins/ties/losses), KL {r.kl:.2f}, {r.train_seconds:.0f} s: {verdict}.")
    winners = trained[trained.win_low > 0.5]
    top = trained.gold.idxmax()
    lines.append(f"Highest gold score: {top} ({trained.loc[top, 'gold']:.3f}, SFT "
                 f"{table[table.method == 'SFT'].gold.iloc[0]:.3f}).")
    if len(winners):
        near = winners.kl.idxmin()
        fast = winners.train_seconds.idxmin()
        kl = winners.loc[near, "kl"]
        why = ", below 0: the k1 estimate of a move this small can come out negative" if kl < 0 else ""
        lines.append(f"Of the {len(winners)} policies that beat SFT, {near} moved least (KL {kl:.2f}{why}) "
                     f"and {fast} trained fastest ({winners.loc[fast, 'train_seconds']:.0f} s).")
    return "\n".join(lines)


# ================================================================================================= plots
def _judge_label(judge_name: str) -> str:
    return "gold" if judge_name == "gold judge" else judge_name


def plot_frontier(table: pd.DataFrame, judge_name: str = "gold judge", prompts: str = "held-out prompts") -> Figure:
    """Gold (left) and learned reward (right) on ``prompts`` against KL to SFT: one point per policy with its 95%
    interval, one colour per method -- the reward-KL frontier of the DPO paper (Rafailov et al., 2023, fig. 2).
    The KL axis is symlog (linear below 0.1 nats, logarithmic above): the policies that barely moved stay apart from
    each other, and a k1 estimate below 0 still has a place."""
    import matplotlib.pyplot as plt

    judge_label = _judge_label(judge_name)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (col, name) in zip(axes, ((("gold", f"{judge_label} score (mean)")), ("reward", "learned reward (mean)")),
                               strict=True):
        for method in [m for m in METHODS if m in set(table.method)]:
            part = table[table.method == method]
            part = part.dropna(subset=["kl"])  # no KL (a policy not trained from SFT): no point to place
            kl = part.kl
            err = np.vstack([part[col] - part[f"{col}_low"], part[f"{col}_high"] - part[col]])
            ax.errorbar(kl, part[col], yerr=err, fmt="o", color=color(METHODS.index(method)), capsize=3,
                        label=method, markersize=7)
            for x, y, policy in zip(kl, part[col], part.index, strict=True):
                if policy != method:  # "DPO (beta=0.1)" -> "β=0.1", "RLOO step 8 (beta=0.05)" -> "step 8 β=0.05"
                    text = policy[len(method):].strip().replace("(beta=", "β=").rstrip(")")
                    ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set_xscale("symlog", linthresh=0.1, linscale=0.5)
        ax.margins(x=0.22)  # room for the labels of the rightmost points
        ax.set_xlabel("KL to SFT on its own greedy answers\n(nats per answer; log scale above 0.1)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{judge_label} score against KL to SFT\n({prompts})")
    axes[1].set_title(f"learned reward (the proxy) against KL to SFT\n({prompts})")
    legend_outside(axes[1])
    fig.tight_layout()
    return fig


def plot_time(table: pd.DataFrame, judge_name: str = "gold judge") -> Figure:
    """Gold score against training wall time (log scale), one colour per method."""
    import matplotlib.pyplot as plt

    judge_label = _judge_label(judge_name)
    fig, ax = plt.subplots(figsize=(7, 4))
    timed = table.dropna(subset=["train_seconds"])
    for method in [m for m in METHODS if m in set(timed.method)]:
        part = timed[timed.method == method]
        err = np.vstack([part.gold - part.gold_low, part.gold_high - part.gold])
        ax.errorbar(part.train_seconds, part.gold, yerr=err, fmt="o", capsize=3, markersize=7,
                    color=color(METHODS.index(method)), label=method)
    sft = table[table.method == "SFT"]
    if len(sft):
        ax.axhline(float(sft.gold.iloc[0]), color=color(0), linestyle="--", label="SFT (start)")
    ax.set_xscale("log")
    ax.set_xlabel("training wall time (s, log scale)")
    ax.set_ylabel(f"{judge_label} score (mean)")
    ax.set_title(f"{judge_label} score against training time")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_dpo_training(runs: Sequence[MethodRun]) -> Figure:
    """DPO/IPO runs: implicit reward margin (``rewards/margins``) and pair accuracy (``rewards/accuracies``) on
    the training batches, per logged step."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, run in enumerate(r for r in runs if r.method in ("DPO", "IPO")):
        logged = [h for h in run.history if "rewards/margins" in h]
        steps = [h["step"] for h in logged]
        style = {"marker": "o", "color": color(METHODS.index(run.method)), "linestyle": ("-", "--", ":")[i % 3],
                 "label": run.label}  # one colour per method (as on the frontier), one line style per run
        axes[0].plot(steps, [h["rewards/margins"] for h in logged], **style)
        axes[1].plot(steps, [h["rewards/accuracies"] for h in logged], **style)
    axes[0].set_ylabel("implicit reward margin\nβ·(log-ratio chosen − rejected)")
    axes[1].set_ylabel("pairs ordered right")
    for ax, key in zip(axes, ("rewards/margins", "rewards/accuracies"), strict=True):
        ax.set_xlabel("step")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    legend_outside(axes[1])
    fig.tight_layout()
    return fig



# ============================================================================================== exercises
def group_advantages(rewards: np.ndarray, method: str) -> np.ndarray:
    """The advantages TRL gives each answer of a group, from ``rewards`` (one row per prompt, one column per answer,
    ``k >= 2`` columns): ``"RLOO"`` -- the reward minus the mean of the *other* answers' rewards (TRL's
    ``RLOOTrainer``; its KL penalty, when ``beta > 0``, is already in the rewards); ``"GRPO"`` -- the reward minus
    the group's mean, divided by the group's standard deviation (Bessel-corrected) + 1e-4 (TRL's ``GRPOTrainer``
    with its default ``scale_rewards="group"``). Every token of an answer gets its answer's advantage."""
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, k) with k >= 2 answers per prompt, got shape {r.shape}")
    mean = r.mean(axis=1, keepdims=True)
    if method == "RLOO":
        return r - (r.sum(axis=1, keepdims=True) - r) / (r.shape[1] - 1)
    if method == "GRPO":
        return (r - mean) / (r.std(axis=1, ddof=1, keepdims=True) + 1e-4)
    raise ValueError(f"method must be 'RLOO' or 'GRPO', got {method!r}")


def merge_tables(*tables: pd.DataFrame) -> pd.DataFrame:
    """One :func:`method_table` from several evaluations of the same prompts (each with its own SFT row): SFT once,
    then every other policy once (the first table's row where a policy appears twice). SFT answers greedily, so its
    rows must agree; ``ValueError`` if their gold or win counts differ (the tables were not of the same prompts)."""
    import pandas as pd

    if not tables:
        raise ValueError("merge_tables needs at least one table")
    sft = [t.loc["SFT", ["gold", "reward", "wins", "ties", "losses"]] for t in tables if "SFT" in t.index]
    if any(not np.allclose(s.to_numpy(float), sft[0].to_numpy(float), equal_nan=True) for s in sft):
        raise ValueError("the tables' SFT rows differ: they were not evaluated on the same prompts")
    merged = pd.concat(tables)
    return merged[~merged.index.duplicated(keep="first")]


def efficiency(table: pd.DataFrame, min_kl: float = 0.1) -> pd.DataFrame:
    """Per trained policy of a :func:`method_table`: ``gold_gain`` (its gold mean minus SFT's), ``gain_per_second``
    (per second of training) and ``gain_per_nat`` (per nat of KL to SFT; NaN where the KL is below ``min_kl``: the
    k1 estimate of a move that small is noise, can be below 0, and dividing by it means nothing)."""
    if "SFT" not in table.index:
        raise ValueError("efficiency needs the table's SFT row (the reference of the gains)")
    out = table[table.method != "SFT"][["method", "beta", "gold", "win_rate", "win_low", "kl", "train_seconds"]].copy()
    out["gold_gain"] = out.gold - table.loc["SFT", "gold"]
    out["gain_per_second"] = out.gold_gain / out.train_seconds
    out["gain_per_nat"] = (out.gold_gain / out.kl).where(out.kl >= min_kl)
    return out

"""The course's stages from the command line, for runs bigger than a notebook:
``python -m rlhf_helpers STAGE [STAGE ...] [--profile P] [--set section.field=value ...]``.

Each stage calls the functions its notebook calls, in the notebook's order, and writes to the same artifact paths
(``outputs/`` or ``$RLHF_OUTPUT_DIR``), so a notebook opened afterwards finds what a command made, and the other
way round. Several stages run in order in one process (``sft reward ppo``). Under ``accelerate launch
--num_processes N`` every process runs the stage: the trainers split each batch between them (DDP, or DeepSpeed
ZeRO with its accelerate config; :mod:`rlhf_helpers.ppo` for PPO), the main process alone writes artifacts and
prints, and work that is not training (data preparation, evaluation, the reports) runs on the main process only
while the others wait. ``--help`` lists every setting with its documented default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .core import distributed
from .core.config import PROFILE_NAMES, Profile, apply_settings, describe_settings, get_profile


def _say(message: str) -> None:
    if distributed.is_main_process():
        print(message, flush=True)


# ============================================================================================== stages
def run_prepare(profile: Profile) -> None:
    """Notebook 01: the prepared data (splits, reports) and, on the tiny profile, the base model built from it."""
    from . import data_prep
    from .core import base_model

    def work() -> None:
        prep = data_prep.prepare_course_data(profile)
        _say(f"prepared data:\n{prep.sizes().to_string()}")
        model, tokenizer = base_model.load_base(profile)
        _say(f"base model: {model.num_parameters():,} parameters, vocabulary of {len(tokenizer):,} tokens")

    distributed.on_main_process(work)


def _sft_stage(profile: Profile, stage: str, train: Callable[..., Any]) -> None:
    """Notebooks 02 and 03: ``train(profile, prep)`` on every process, then (main process) the held-out report of
    the policy the later stages load (QLoRA's ``merged/``): ROUGE against the references and the judge's score."""
    from . import data_prep, sft_full
    from .core import base_model

    prep = data_prep.load_prepared(profile)
    run = train(profile, prep)
    _say(f"{stage}: eval loss {run.info['initial_eval_loss']:.3f} -> {run.info['eval_loss']:.3f}, trainable "
         f"{run.info['trainable_params']:,} of {run.info['total_params']:,}, {run.info['seconds_per_step']:.3f} s/step "
         f"-> {run.path}")

    def report() -> None:
        policies, base = {stage: sft_full.load_sft(profile, stage)[0]}, None
        if stage == "sft_full":  # notebook 02 reports the base model beside it (notebook 03's table reads that row)
            base = policies["base"] = base_model.load_base(profile)[0]
        answers = sft_full.heldout_answers(policies, run.tokenizer, prep.heldout, profile)
        table = sft_full.save_report(profile, run, answers, prep.heldout, base_model=base)
        _say(table[["eval loss", "ROUGE-L"]].to_string())

    distributed.on_main_process(report)


def run_sft(profile: Profile) -> None:
    """Notebook 02: full SFT of the base model (checkpoint ``sft_full``), then its held-out report."""
    from . import sft_full

    _sft_stage(profile, "sft_full", sft_full.train_full)


def run_qlora(profile: Profile) -> None:
    """Notebook 03: QLoRA (4-bit base + LoRA adapters; checkpoint ``sft_qlora`` with ``merged/``), its report."""
    from . import sft_qlora

    _sft_stage(profile, "sft_qlora", sft_qlora.train_qlora)


def run_reward(profile: Profile) -> None:
    """Notebook 04: the reward model from the SFT model (Bradley-Terry, TRL's RewardTrainer), its test accuracy,
    its normalisation on the held-out references; saved to checkpoint ``reward``."""
    from . import data_prep, judge, reward
    from .core.artifacts import write_csv

    prep = data_prep.load_prepared(profile)
    train_pairs, test_pairs = prep.preferences["train"], prep.preferences["test"]
    model, tokenizer = reward.load_backbone(profile)
    the_judge = judge.load_judge(profile)
    before = (reward.score_pairs(reward.RewardModelSource(model, tokenizer), test_pairs, the_judge.scores)
              if distributed.is_main_process() else None)  # the fresh head's accuracy, for the report
    cfg = profile.reward
    if cfg.relevance_steps:
        warmup = reward.relevance_pairs(train_pairs, seed=cfg.seed)
        model = reward.train_reward_model(model, tokenizer, warmup, dataclasses.replace(cfg, max_steps=cfg.relevance_steps)).model
    eval_pairs = test_pairs.select(range(min(cfg.eval_pairs, len(test_pairs))))
    run = reward.train_reward_model(model, tokenizer, train_pairs, cfg, eval_pairs=eval_pairs)
    _say(run.summary())

    def evaluate_and_save() -> None:
        source = reward.RewardModelSource(run.model, tokenizer)
        after = reward.score_pairs(source, test_pairs, the_judge.scores)
        accuracy = reward.accuracy_table(before, after)
        write_csv(accuracy, profile.paths.result("reward_accuracy.csv"))
        agreement = reward.gold_agreement(after)
        norm = reward.fit_normalization(source, prep.heldout["prompt"], prep.heldout["reference"])
        info = {"accuracy": accuracy.to_dict(), "gold_agreement": agreement, "train_seconds": run.seconds}
        path = reward.save_reward_model(run.model, tokenizer, profile.paths.checkpoint("reward"), norm, run.history,
                                        info)
        _say(f"{accuracy.to_string()}\nagreement with the {the_judge.name}: {agreement['pair_agreement %']:.1f}% "
             f"of pairs -> {path}")

    distributed.on_main_process(evaluate_and_save)


def run_ppo(profile: Profile) -> None:
    """Notebook 05's main run: PPO of the SFT policy against the reward model (checkpoint ``ppo``, resumed from
    when it holds one), with the gold judge's score logged as ``objective/gold``."""
    from . import judge, ppo_runs

    stages = ppo_runs.load_course_stages(profile)
    _say(stages.length_report)
    the_judge = judge.load_judge(profile)
    result = ppo_runs.train_ppo(**stages.kwargs(), callbacks=[ppo_runs.PrintSamples(n=1)],
                                extra_metrics={"gold": the_judge.scores})
    last = result.history[-1] if result.history else {}
    _say(f"ppo: {len(result.history)} updates; last: score {last.get('objective/scores', float('nan')):.3f}, "
         f"KL {last.get('objective/kl', float('nan')):.2f}, gold {last.get('objective/gold', float('nan')):.3f} "
         f"-> {stages.out_dir}")


def run_dpo(profile: Profile) -> None:
    """Notebook 07's DPO (and IPO) runs from the SFT policy; each policy is saved to checkpoint
    ``dpo/<method>_beta<beta>`` (the notebook keeps them in memory)."""
    from . import beyond_ppo
    from .core import artifacts, loading

    inputs = beyond_ppo.load_inputs(profile)
    runs = [beyond_ppo.train_dpo(profile, inputs, beta) for beta in profile.beyond.dpo_betas]
    if profile.beyond.ipo_beta > 0:
        runs.append(beyond_ppo.train_dpo(profile, inputs, profile.beyond.ipo_beta, loss_type="ipo"))
    for run in runs:
        def write(tmp: Any, model: Any = run.model) -> None:
            with loading.quiet_transformers():
                model.save_pretrained(tmp)
                inputs.tokenizer.save_pretrained(tmp)

        path = artifacts.atomic_dir(profile.paths.checkpoint("dpo") / f"{run.method.lower()}_beta{run.beta:g}", write)
        _say(f"{run.label}: {run.seconds:.0f} s -> {path}")


def run_evaluate(profile: Profile) -> None:
    """Notebook 06: every trained policy on the held-out prompts (reward, judge, win rates with intervals, KL,
    ROUGE), its plots and ``results/README.md``."""
    from . import data_prep, evaluation
    from .core import compare
    from .judge import load_judge

    def work() -> None:
        loaded = evaluation.load_policies(profile)
        held = data_prep.heldout(profile)
        result = compare.evaluate_policies(loaded.policies, held.prompts, held.references,
                                           evaluation.load_reward(profile), load_judge(profile), profile.eval,
                                           held.topics, loaded.skipped, profile.generation, splits=held.splits)
        readme = evaluation.write_summary(result, profile.paths, plots=evaluation.make_plots(result, profile.paths))
        _say(f"{result.tables()['rewards'].round(3).to_string()}\n-> {readme}")

    distributed.on_main_process(work)


STAGES: dict[str, Callable[[Profile], None]] = {
    "prepare": run_prepare, "sft": run_sft, "qlora": run_qlora, "reward": run_reward, "ppo": run_ppo,
    "dpo": run_dpo, "evaluate": run_evaluate,
}


# ================================================================================================= CLI
def settings_text(profile: Profile) -> str:
    """Every setting of ``profile``: ``section.field = value``, the dataclass default where the profile differs,
    and the setting's documentation."""
    lines = []
    for key, value, default, doc in describe_settings(profile):
        differs = "" if value == default else f"  (default {default!r})"
        lines.append(f"  {key} = {value!r}{differs}\n      {doc}")
    return "\n".join(lines)


def parser(profile_name: str | None) -> argparse.ArgumentParser:
    """The command's parser; its help ends with every setting of the profile ``profile_name`` (None: the one
    ``$RLHF_PROFILE`` or the hardware picks)."""
    profile = get_profile(profile_name)
    epilog = (f"settings of the {profile.name} profile (--set section.field=value; a Python literal, "
              f"or plain text for a string):\n{settings_text(profile)}")
    p = argparse.ArgumentParser(
        prog="python -m rlhf_helpers", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog,
        description="Run course stages in order, as the notebooks do; artifacts under $RLHF_OUTPUT_DIR (default "
                    "outputs/). Several processes: accelerate launch --num_processes N -m rlhf_helpers STAGE ...")
    p.add_argument("stages", nargs="+", choices=list(STAGES), metavar="STAGE",
                   help=f"one or more of: {', '.join(STAGES)} (prepare = notebook 01's data and tiny base)")
    p.add_argument("--profile", choices=PROFILE_NAMES, help="tiny | colab | cpu (default: $RLHF_PROFILE, else the "
                   "hardware: a CUDA GPU -> colab, none -> tiny)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="change one setting (repeatable; applied after $RLHF_SET), e.g. --set ppo.total_updates=8")
    return p


def _profile_argument(argv: Sequence[str]) -> str | None:
    """The ``--profile`` value in ``argv`` (before parsing: ``--help`` lists that profile's settings)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--profile="):
            return arg.split("=", 1)[1]
        if arg == "--profile" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def cli(argv: Sequence[str]) -> int:
    """``python -m rlhf_helpers STAGE [STAGE ...] [--profile P] [--set key=value ...]``; returns the exit code."""
    name = _profile_argument(argv)
    if name is not None and name not in PROFILE_NAMES:
        print(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}", file=sys.stderr)
        return 2
    try:
        command = parser(name)  # builds the profile: a wrong $RLHF_SET entry stops here, named
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    args = command.parse_args(list(argv))
    try:
        profile = apply_settings(get_profile(args.profile), ";".join(args.settings))
    except ValueError as e:
        print(str(e).replace("RLHF_SET:", "--set:", 1), file=sys.stderr)
        return 2
    distributed.join()  # several processes: the process group (gloo on the CPU) before any stage
    from .notebook_setup import start

    start(args.profile, verbose=distributed.is_main_process())  # threads and seeds, as a notebook's first cell
    for stage in args.stages:
        _say(f"\n== {stage} ({profile.name} profile, {distributed.world_size()} process(es)) ==")
        STAGES[stage](profile)
    return 0

"""``make seeds``: the course's core notebooks for seeds 0, 1 and 2, and the spread of their headline numbers.

A single run can be lucky. :func:`run_seeds` executes notebooks 01-05 once per seed (``$RLHF_SEED`` seeds the
data split, the tiny base model and every stage), each into its own output root ``outputs/seeds/seed_<n>/``, with
exactly the code a learner runs. Seed 0 is the course's own run (``make course``, in ``outputs/``): it is reused
when its result files are there, and made by running the whole course otherwise. :func:`collect` reads each run's result files; :func:`write_seeds` writes
``outputs/results/seeds.csv`` (one row per seed, then the mean and the standard deviation), the over-optimisation
plot of every seed (``outputs/plots/ppo_gao_seeds.png``) and the README's seeds table.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.artifacts import BETA_SWEEP_LOG, Paths, read_records, write_csv, write_text
from .core.plots import save_figure
from .runner import REPO_ROOT, environ, run_course

if TYPE_CHECKING:
    import pandas as pd

SEEDS = (0, 1, 2)
CORE_NOTEBOOKS = ("01", "02", "03", "04", "05")
README_START, README_END = "<!-- seeds:start -->", "<!-- seeds:end -->"
# column of seeds.csv -> (result file, how to read it); the files are what notebooks 03-05 write
HEADLINE = ("PPO win rate", "win CI low", "wins/ties/losses", "SFT gold", "PPO gold", "gold gain", "KL to SFT",
            "unseen-task win rate", "unseen-task gold gain", "RM accuracy %", "QLoRA gold - full SFT gold",
            "β min: gold rise", "β min: gold fall", "β max: KL")


RESULT_FILES = ("ppo_vs_sft_by_split.csv", "ppo_vs_sft.csv", "ppo_overoptimization.csv", "sft_comparison.csv",
                "reward_accuracy.csv", BETA_SWEEP_LOG)  # what :func:`collect` reads


def seed_paths(seed: int, root: Path | None = None) -> Paths:
    """Where seed ``seed``'s run writes: the course's output root itself for seed 0 (``make course``), else
    ``<root>/seeds/seed_<seed>`` (root: the course's output root)."""
    base = Path(root) if root is not None else Paths().root
    return Paths(root=base if seed == 0 else base / "seeds" / f"seed_{seed}")


def has_results(paths: Paths) -> bool:
    """Are all of :data:`RESULT_FILES` there?"""
    return all(paths.result(name).exists() for name in RESULT_FILES)


def run_seeds(seeds: Sequence[int] = SEEDS, root: Path | None = None) -> None:
    """Execute :data:`CORE_NOTEBOOKS` once per seed, each into :func:`seed_paths` (stops at the first failure).
    Seed 0 reuses the course's run when its results exist, else runs every notebook (as ``make course``)."""
    for seed in seeds:
        paths = seed_paths(seed, root)
        if seed == 0 and has_results(paths):
            print(f"[seeds] seed 0: the course's own run in {paths.root} (make course)", flush=True)
            continue
        print(f"[seeds] seed {seed}", flush=True)
        with environ(RLHF_SEED=str(seed)):
            run_course("tiny", () if seed == 0 else CORE_NOTEBOOKS, paths)


def collect(paths: Paths) -> dict[str, Any]:
    """The headline numbers of one run from its result files (see :data:`HEADLINE`)."""
    import pandas as pd

    split = pd.read_csv(paths.result("ppo_vs_sft_by_split.csv")).set_index(["split", "model"])
    seen, unseen = split.loc["seen_task"], split.loc["unseen_task"]
    ppo, sft = seen.iloc[-1], seen.iloc[0]
    over = pd.read_csv(paths.result("ppo_overoptimization.csv")).set_index("beta").sort_index()
    sft_table = pd.read_csv(paths.result("sft_comparison.csv")).set_index("model")
    accuracy = pd.read_csv(paths.result("reward_accuracy.csv"), index_col=0)
    return {
        "PPO win rate": ppo["win_rate"], "win CI low": ppo["win_low"],
        "wins/ties/losses": "/".join(str(int(ppo[k])) for k in ("wins", "ties", "losses")),
        "SFT gold": sft["judge_mean"], "PPO gold": ppo["judge_mean"], "gold gain": ppo["judge_gain"],
        "KL to SFT": pd.read_csv(paths.result("ppo_vs_sft.csv"), index_col=0)["kl"].iloc[-1],
        "unseen-task win rate": unseen.iloc[-1]["win_rate"], "unseen-task gold gain": unseen.iloc[-1]["judge_gain"],
        "RM accuracy %": accuracy.loc["all pairs", "after %"],
        "QLoRA gold - full SFT gold": sft_table.loc["sft_qlora", "gold"] - sft_table.loc["sft_full", "gold"],
        "β min: gold rise": over.iloc[0]["rise"], "β min: gold fall": over.iloc[0]["fall"],
        "β max: KL": over.iloc[-1]["kl_end"],
    }


def seeds_table(rows: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """One row per seed, then ``mean`` and ``sd`` (sample standard deviation) of every numeric column."""
    import pandas as pd

    table = pd.DataFrame.from_dict(rows, orient="index")[list(HEADLINE)]
    table.index = [f"seed {s}" for s in rows]
    numeric = table.drop(columns=["wins/ties/losses"]).astype(float)
    stats = pd.DataFrame([numeric.mean(), numeric.std(ddof=1) if len(numeric) > 1 else numeric.mean() * math.nan],
                         index=["mean", "sd"])
    return pd.concat([table, stats])


def markdown(table: pd.DataFrame) -> str:
    """The seeds table as markdown, three decimals."""
    cols = list(table.columns)
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in table.iterrows():
        cells = [v if isinstance(v, str) else ("" if v != v else f"{v:.3f}") for v in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_seeds(seeds: Sequence[int] = SEEDS, root: Path | None = None, readme: Path | None = None) -> pd.DataFrame:
    """Collect every seed's run into ``results/seeds.csv`` and ``plots/ppo_gao_seeds.png`` (under the course's
    output root) and, when ``readme`` is given, its seeds section. Returns the table."""
    from .overoptimization import plot_gao

    out = Paths(root=root) if root is not None else Paths()
    table = seeds_table({s: collect(seed_paths(s, root)) for s in seeds})
    write_csv(table, out.result("seeds.csv"))
    runs = {}
    for s in seeds:
        log = [r for r in read_records(seed_paths(s, root).result(BETA_SWEEP_LOG))]
        smallest = min(r["beta"] for r in log)
        runs[f"seed {s}, β = {smallest:g}"] = [r for r in log if r["beta"] == smallest]
    save_figure(plot_gao(runs, title="smallest β of the sweep, every seed"), "ppo_gao_seeds", out)
    if readme is not None:
        text = readme.read_text()
        section = f"{README_START}\n{markdown(table)}\n{README_END}"
        write_text(readme, re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: section, text,
                                  flags=re.S))
    return table


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_helpers seeds",
                                     description="Run notebooks 01-05 for several seeds; write results/seeds.csv.")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--collect-only", action="store_true", help="only collect runs already made")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.collect_only:
        run_seeds(seeds)
    table = write_seeds(seeds, readme=REPO_ROOT / "README.md")
    print(markdown(table))
    return 0

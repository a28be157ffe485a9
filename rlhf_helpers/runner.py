"""Execute the course notebooks in order (``make course``) and in the tests, with nbclient.

Each notebook runs in a fresh kernel whose environment carries the profile (``RLHF_PROFILE``) and the
output root (``RLHF_OUTPUT_DIR``), so the tests can run the whole course into a temporary directory.
The executed copy of every notebook is kept (``outputs/notebooks/``) and its wall time recorded.
Before a notebook runs, the output root must be a folder that can be written (:meth:`Paths.check_root`), and
the executed copies must not land in the folder of the source notebooks (they would overwrite them).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .core.artifacts import (
    DATA_INFO,
    REPO_ROOT,
    STAGES,
    MissingStageError,
    Paths,
    read_json,
    with_needs,
    write_text,
)
from .core.config import Profile, resolve_profile_name

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SUMMARIES = ("README.md", "beyond_ppo.md", "feedback.md", "sentiment.md", "seq2seq.md")  # results/ summaries the README's results section shows, in course order


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message names the notebook and the failing cell."""


@dataclass
class NotebookRun:
    notebook: str
    seconds: float
    executed_copy: Path


def course_notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (``00_*.ipynb`` ...) in course order."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


SOLUTIONS_DIR = NOTEBOOK_DIR / "solutions"


def solution_notebooks(directory: Path = SOLUTIONS_DIR) -> list[Path]:
    """The solutions notebooks (``05_ppo_solutions.ipynb``: the solutions of ``05_ppo.ipynb``) in course order."""
    return sorted(directory.glob("[0-9][0-9]_*_solutions.ipynb"))


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Temporarily set environment variables (the kernel process inherits them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _write_notebook(nb, path: Path) -> None:
    import nbformat

    write_text(path, nbformat.writes(nb).rstrip("\n") + "\n")


def check_outputs(paths: Paths, sources: Sequence[Path]) -> None:
    """Before anything runs or is written: the output root must be a writable folder (``NotADirectoryError`` /
    ``PermissionError`` from :meth:`Paths.check_root`), and the executed copies must not go to a folder holding
    a source notebook (``ValueError``): ``RLHF_OUTPUT_DIR=..`` from ``notebooks/`` would write each executed
    copy over its source."""
    executed = paths.executed_notebooks.resolve()
    for folder in {NOTEBOOK_DIR.resolve(), *(Path(s).resolve().parent for s in sources)}:
        if executed == folder:
            raise ValueError(f"The executed copies would be written to {paths.executed_notebooks}, the folder of the "
                             "source notebooks, over them: set RLHF_OUTPUT_DIR to another folder "
                             "(default: <repo>/outputs).")
    paths.check_root()


def execute_notebook(path: Path, paths: Paths, profile: str = "tiny", timeout: int | None = 1800,
                     progress: bool = False) -> NotebookRun:
    """Run one notebook top to bottom; keep the executed copy under ``paths.executed_notebooks``. ``progress``
    shows a bar over its code cells.

    Raises :class:`NotebookFailed` naming the notebook and cell; the partly executed copy is kept
    so the traceback can be read there. An unusable output root or an executed copy that would overwrite a
    source notebook is an error before the notebook runs (:func:`check_outputs`).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    check_outputs(paths, [path])
    nb = nbformat.read(str(path), as_version=4)
    bar = tqdm(total=sum(c.cell_type == "code" for c in nb.cells), desc=path.name, unit="cell", disable=not progress)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_executed=lambda **_: bar.update(1))
    out = paths.executed_notebooks / path.name
    env = {"RLHF_PROFILE": profile, "RLHF_OUTPUT_DIR": str(paths.root.resolve()),  # the kernel starts elsewhere
           "RLHF_DATA_DIR": str(paths.data_dir.resolve()), "RLHF_SEED": os.environ.get("RLHF_SEED", ""),
           "RLHF_RUNNER": "1",  # the notebook's Colab install cell skips: the course is installed already
           "MPLBACKEND": "module://matplotlib_inline.backend_inline", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    try:
        with environ(**env):
            client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        _write_notebook(nb, out)
        why = {CellTimeoutError: f"a cell ran past {timeout} s", DeadKernelError: "the kernel died (out of memory?)"}
        raise NotebookFailed(f"{path.name} failed (executed copy: {out}): {why.get(type(err), '')}\n{err}") from None
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    _write_notebook(nb, out)
    return NotebookRun(path.name, seconds, out)


def run_course(profile: str | None = None, only: Sequence[str] = (), paths: Paths | None = None) -> list[NotebookRun]:
    """Execute the notebooks in order, print and save each one's wall time; stop at the first failure.
    The output root is checked before the first notebook runs (:func:`check_outputs`)."""
    profile = resolve_profile_name(profile)
    paths = paths or Paths()
    runs: list[NotebookRun] = []
    notebooks = [nb for nb in course_notebooks() if not only or nb.name[:2] in only]
    check_outputs(paths, notebooks)
    for nb in notebooks:
        print(f"[course] {nb.name} ...", flush=True)
        run = execute_notebook(nb, paths, profile)
        print(f"[course] {nb.name} done in {run.seconds:.0f} s", flush=True)
        runs.append(run)
    times = {r.notebook: r.seconds for r in runs}
    if only:  # keep the times of the notebooks that did not run
        times = {**read_times(paths.results / TIMES), **times}
    rows = ["notebook,seconds", *(f"{name},{times[name]:.1f}" for name in sorted(times))]
    write_text(paths.result(TIMES), "\r\n".join(rows) + "\r\n")  # csv.writer's line ends
    timing = timing_table(runs)
    print("\n" + timing)
    summary = course_summary(paths)
    if summary:
        print("\n" + summary)
        if paths.root.resolve() == (REPO_ROOT / "outputs").resolve() and not only:
            update_readme(summary, timing)
    return runs


TIMES = "notebook_times.csv"  # under outputs/results: each notebook's wall time in the last `make course`


def read_times(path: Path) -> dict[str, float]:
    """``notebook -> seconds`` from a :data:`TIMES` file ({} when there is none); rows that are not
    ``name,seconds`` are skipped (the times only feed estimates)."""
    if not path.exists():
        return {}
    times = {}
    for row in csv.reader(path.read_text().splitlines()[1:]):
        try:
            name, seconds = row
            times[name] = float(seconds)
        except ValueError:
            continue
    return times


def measured_seconds(profile: Profile) -> dict[str, float]:
    """Each notebook's wall time in ``make course`` (``notebook -> seconds``): the repository's committed times,
    updated by those in the profile's results folder. Only the tiny profile's times are measured ({} for the others)."""
    if profile.name != "tiny":
        return {}
    return {**read_times(REPO_ROOT / "outputs" / "results" / TIMES), **read_times(profile.paths.results / TIMES)}


def missing_stages(paths: Paths, stages: Sequence[str]) -> list[str]:
    """The stages among ``stages`` and what they need (:func:`~.core.artifacts.with_needs`) that have no finished
    run under ``paths``, in pipeline order."""
    missing = []
    for stage in with_needs(stages):
        try:
            paths.finished(stage)
        except MissingStageError:
            missing.append(stage)
    return missing


def build_missing(profile: Profile, stages: Sequence[str], progress: bool = True) -> list[NotebookRun]:
    """Make sure ``stages`` (and the stages they need) have finished runs under ``profile.paths``: run the notebook
    of each missing one, in course order, with this profile (and the environment's ``RLHF_*`` settings), printing
    the plan and a time estimate first. A notebook that fails raises :class:`NotebookFailed` naming its cell."""
    built = read_json(profile.paths.prepared_data / DATA_INFO).get("profile") \
        if (profile.paths.prepared_data / DATA_INFO).exists() else None
    if built not in (None, profile.name):
        raise ValueError(f"The stages in {profile.paths.root} were built with the '{built}' profile, and this notebook "
                         f"runs '{profile.name}': set RLHF_OUTPUT_DIR to another folder (or remove those stages).")
    missing = missing_stages(profile.paths, stages)
    if not missing:
        print(f"Earlier stages found in {profile.paths.root}: {', '.join(with_needs(stages))}.")
        return []
    notebooks = sorted({STAGES[s].notebook for s in missing})
    seconds = measured_seconds(profile)
    plan = ", ".join(f"{nb} (~{seconds[nb]:.0f} s)" if nb in seconds else nb for nb in notebooks)
    print(f"Missing in {profile.paths.root}: {', '.join(missing)}. Running {plan} with the '{profile.name}' profile.")
    if all(nb in seconds for nb in notebooks):
        print(f"Estimate: ~{sum(seconds[nb] for nb in notebooks) / 60:.0f} min (make course on 2 CPU cores).")
    else:
        print(f"No measured time for the '{profile.name}' profile: the README's Profiles table has estimates.")
    runs = []
    for nb in notebooks:  # no time limit: a learner is watching the bars
        runs.append(execute_notebook(NOTEBOOK_DIR / nb, profile.paths, profile.name, timeout=None, progress=progress))
        print(f"{nb}: done in {runs[-1].seconds:.0f} s (executed copy: {runs[-1].executed_copy})")
    still = missing_stages(profile.paths, stages)
    if still:
        raise MissingStageError(f"{', '.join(notebooks)} ran, but {', '.join(still)} is still missing in "
                                f"{profile.paths.root}: read the executed copies in {profile.paths.executed_notebooks}.")
    return runs


def course_summary(paths: Paths) -> str:
    """The results summaries of :data:`SUMMARIES` that exist under ``paths.results``, in course order ("" if none)."""
    return "\n\n".join(p.read_text().strip() for p in (paths.results / name for name in SUMMARIES) if p.exists())


PIPELINE = tuple(f"{i:02d}" for i in range(7))  # notebooks 00-06: data to evaluation, the course's core pipeline


def timing_table(runs: Sequence[NotebookRun]) -> str:
    """Markdown table of each notebook's wall time and the total; when the core pipeline (:data:`PIPELINE`, whose
    wall time the course budgets) ran beside other notebooks, its subtotal too."""
    rows = [f"| {r.notebook} | {r.seconds:.0f} |" for r in runs]
    pipeline = [r.seconds for r in runs if r.notebook[:2] in PIPELINE]
    if len(pipeline) == len(PIPELINE) < len(runs):
        rows.append(f"| **{PIPELINE[0]}-{PIPELINE[-1]}, data to evaluation** | **{sum(pipeline):.0f}** |")
    total = sum(r.seconds for r in runs)
    return "\n".join(["| notebook | wall time (s) |", "|---|---:|", *rows, f"| **total** | **{total:.0f}** |"])


EXERCISE_HEADING = re.compile(r"^## Exercise (\d+) · (warm-up|core|stretch) · ~(\d+) min", re.M)


def exercise_ids(solutions: Path) -> list[str]:
    """``["05.1", "05.2", ...]``: the exercises a solutions notebook solves (its ``## Exercise k · tier · ~M min``
    headings), each the name of the folder under ``outputs/exercises`` it writes to."""
    import nbformat

    nb = nbformat.read(str(solutions), as_version=4)
    return [f"{Path(solutions).name[:2]}.{m.group(1)}" for c in nb.cells if c.cell_type == "markdown"
            for m in EXERCISE_HEADING.finditer(c.source)]


SOLUTION_TIMES = "solution_times.csv"  # under outputs/exercises: each solutions notebook's wall time
NOT_COURSE = ("exercises", "notebooks")  # top folders of the output root that exercises may write


class CourseChanged(RuntimeError):
    """A solutions notebook changed the course's artifacts; the message lists the files."""


def course_digest(paths: Paths) -> dict[str, str]:
    """``relative path -> sha256`` of every file under the output root but :data:`NOT_COURSE`: the course's
    checkpoints, prepared data, results and plots, which an exercise must leave as they are."""
    import hashlib

    digest = {}
    for file in sorted(paths.root.rglob("*")):
        rel = file.relative_to(paths.root)
        if file.is_file() and rel.parts[0] not in NOT_COURSE:
            digest[rel.as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digest


def run_solutions(profile: str | None = None, only: Sequence[str] = (), paths: Paths | None = None,
                  directory: Path = SOLUTIONS_DIR) -> list[NotebookRun]:
    """``make solutions``: build the course's stages that are missing (their notebooks, as ``ensure_stages`` does),
    then execute each solutions notebook of ``directory``; save their wall times under ``outputs/exercises``. Raises
    :class:`CourseChanged` if any of them changed a file of the course (:func:`course_digest`), and
    :class:`NotebookFailed` if one failed or an exercise (:func:`exercise_ids`) left its folder empty."""
    from .core.config import get_profile

    name = resolve_profile_name(profile)
    paths = paths or Paths()
    notebooks = [nb for nb in solution_notebooks(directory) if not only or nb.name[:2] in only]
    check_outputs(paths, notebooks)
    build_missing(get_profile(name, paths=paths), list(STAGES), progress=False)
    before = course_digest(paths)
    runs = []
    for nb in notebooks:
        print(f"[solutions] {nb.name} ...", flush=True)
        runs.append(execute_notebook(nb, paths, name))
        print(f"[solutions] {nb.name} done in {runs[-1].seconds:.0f} s", flush=True)
    rows = ["notebook,seconds", *(f"{r.notebook},{r.seconds:.1f}" for r in runs)]
    write_text(paths.root / "exercises" / SOLUTION_TIMES, "\r\n".join(rows) + "\r\n")
    print("\n" + timing_table(runs))
    after = course_digest(paths)
    changed = sorted(f for f in before.keys() | after.keys() if before.get(f) != after.get(f))
    if changed:
        raise CourseChanged(f"The solutions changed {len(changed)} file(s) of the course under {paths.root}, which "
                            f"exercises must not touch (write through notebook_setup.exercise_profile): "
                            f"{', '.join(changed[:10])}")
    folder = paths.root / "exercises"
    empty = [e for nb in notebooks for e in exercise_ids(nb) if not any(p.is_file() for p in (folder / e).rglob("*"))]
    if empty:
        raise NotebookFailed(f"These exercises wrote nothing under {folder} (each saves its figure or table there): "
                             f"{', '.join(empty)}")
    return runs


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(summary: str, timing: str, readme: Path = REPO_ROOT / "README.md") -> None:
    """Put the generated results summary and notebook timings between the README's result markers."""
    text = readme.read_text()
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = summary.replace("](../plots/", "](outputs/plots/").replace("](../results/", "](outputs/results/")
    # the summary's headings sit under the README's "## Results" heading: "# x" -> "### x"
    body = re.sub(r"^(#+) ", lambda m: "#" * min(6, len(m.group(1)) + 2) + " ", body, flags=re.M)
    section = f"{README_START}\n{body.strip()}\n\n### Wall time of each notebook (`make course`)\n\n{timing}\n{README_END}"
    write_text(readme, head + section + tail)


def cli(argv: list[str], solutions: bool = False) -> int:
    """``python -m rlhf_helpers course`` (``solutions=False``) or ``... solutions``."""
    command = "solutions" if solutions else "course"
    parser = argparse.ArgumentParser(prog=f"python -m rlhf_helpers {command}", description=(
        "Execute the solutions notebooks (after building the stages they read)." if solutions
        else "Execute the course notebooks in order."))
    parser.add_argument("--profile", default=None, help="tiny | colab | cpu (default: $RLHF_PROFILE or auto)")
    parser.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 00,01")
    args = parser.parse_args(argv)
    only = [s.strip().zfill(2) for s in args.only.split(",") if s.strip()]
    try:
        (run_solutions if solutions else run_course)(args.profile, only)
    except (NotebookFailed, CourseChanged) as err:
        print(err)
        return 1
    return 0

"""Execute the course notebooks in order (``make course``) and in the tests, with nbclient.

Each notebook runs in a fresh kernel whose environment carries the profile (``RLHF_PROFILE``) and the
output root (``RLHF_OUTPUT_DIR``), so the tests can run the whole course into a temporary directory.
The executed copy of every notebook is kept (``outputs/notebooks/``) and its wall time recorded.
Before a notebook runs, the output root must be a folder that can be written (:meth:`Paths.check_root`), and
the executed copies must not land in the folder of the source notebooks (they would overwrite them).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .core.artifacts import REPO_ROOT, Paths, write_text
from .core.config import resolve_profile_name

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SUMMARIES = ("README.md", "beyond_ppo.md")  # results/ summaries the README's results section shows, in course order


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


def execute_notebook(path: Path, paths: Paths, profile: str = "tiny", timeout: int = 1800) -> NotebookRun:
    """Run one notebook top to bottom; keep the executed copy under ``paths.executed_notebooks``.

    Raises :class:`NotebookFailed` naming the notebook and cell; the partly executed copy is kept
    so the traceback can be read there. An unusable output root or an executed copy that would overwrite a
    source notebook is an error before the notebook runs (:func:`check_outputs`).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    check_outputs(paths, [path])
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    out = paths.executed_notebooks / path.name
    env = {"RLHF_PROFILE": profile, "RLHF_OUTPUT_DIR": str(paths.root), "RLHF_DATA_DIR": str(paths.data_dir),
           "RLHF_SEED": os.environ.get("RLHF_SEED", ""),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    try:
        with environ(**env):
            client.execute()
    except CellExecutionError as err:
        _write_notebook(nb, out)
        raise NotebookFailed(f"{path.name} failed (executed copy: {out}):\n{err}") from None
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
    rows = ["notebook,seconds", *(f"{r.notebook},{r.seconds:.1f}" for r in runs)]
    write_text(paths.result("notebook_times.csv"), "\r\n".join(rows) + "\r\n")  # csv.writer's line ends
    timing = timing_table(runs)
    print("\n" + timing)
    summary = course_summary(paths)
    if summary:
        print("\n" + summary)
        if paths.root.resolve() == (REPO_ROOT / "outputs").resolve() and not only:
            update_readme(summary, timing)
    return runs


def course_summary(paths: Paths) -> str:
    """The results summaries of :data:`SUMMARIES` that exist under ``paths.results``, in course order ("" if none)."""
    return "\n\n".join(p.read_text().strip() for p in (paths.results / name for name in SUMMARIES) if p.exists())


def timing_table(runs: Sequence[NotebookRun]) -> str:
    """Markdown table of each notebook's wall time."""
    rows = [f"| {r.notebook} | {r.seconds:.0f} |" for r in runs]
    total = sum(r.seconds for r in runs)
    return "\n".join(["| notebook | wall time (s) |", "|---|---:|", *rows, f"| **total** | **{total:.0f}** |"])


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


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_helpers course",
                                     description="Execute the course notebooks in order.")
    parser.add_argument("--profile", default=None, help="tiny | colab | cpu (default: $RLHF_PROFILE or auto)")
    parser.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 00,01")
    args = parser.parse_args(argv)
    only = [s.strip().zfill(2) for s in args.only.split(",") if s.strip()]
    try:
        run_course(args.profile, only)
    except NotebookFailed as err:
        print(err)
        return 1
    return 0

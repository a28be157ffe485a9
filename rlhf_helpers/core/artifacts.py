"""Where every artifact of the course lives, and how it is written: one place for both.

* :class:`Paths` -- the output root (``$RLHF_OUTPUT_DIR`` or ``<repo>/outputs``) and the data folder
  (``$RLHF_DATA_DIR`` or ``<repo>/data``); every stage's checkpoint folder, result and plot files.
* :data:`STAGES` -- the stage registry: which notebook makes each stage's artifacts (named in errors), the file
  written last that marks a complete checkpoint, and its training-log file. (Notebook 06 trains nothing: its
  tables and plots go to ``outputs/results`` and ``outputs/plots``.)
* Atomic I/O -- :func:`atomic_dir` (a whole checkpoint folder), :func:`write_text` (one file; :func:`write_json`,
  :func:`write_jsonl`, :func:`write_csv` and the summary and notebook writers go through it), :func:`read_json`, :func:`read_records`.
  A reader never sees half a file: each write goes to a temporary name beside the target, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

# ---------------------------------------------------------------------------------------- file names
BASE_INFO = "base_info.json"  # the tiny base model: parameters, timings, loss curve, ModelConfig (written last)
DATA_INFO = "info.json"  # the prepared data: sizes and sources (written last)
TRAIN_INFO = "train_info.json"  # an SFT run's settings and figures (written last)
LOG_HISTORY = "log_history.json"  # a TRL trainer's ``state.log_history`` (SFT, QLoRA, reward model)
METRICS = "metrics.json"  # an SFT run's held-out metrics (notebooks 02/03)
REWARD_INFO = "reward_info.json"  # reward model: normalisation stats, settings, results (written last)
PPO_INFO = "ppo_info.json"  # a PPO checkpoint's step and settings (written last)
PPO_LOG = "log.jsonl"  # PPO's per-update metrics, one JSON record per update
BETA_SWEEP_LOG = "ppo_beta_sweep.jsonl"  # under outputs/results: one record per (beta, PPO update)


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: the notebook that makes its artifacts, the file written last in its folder
    (present = the stage finished), and its training log (None: none)."""

    notebook: str
    done_marker: str
    log: str | None = None


STAGES: dict[str, Stage] = {
    "data": Stage("01_data_preparation.ipynb", DATA_INFO),
    "base": Stage("01_data_preparation.ipynb", BASE_INFO, BASE_INFO),
    "sft_full": Stage("02_sft_full.ipynb", TRAIN_INFO, LOG_HISTORY),
    "sft_qlora": Stage("03_sft_qlora.ipynb", TRAIN_INFO, LOG_HISTORY),
    "reward": Stage("04_reward_modeling.ipynb", REWARD_INFO, LOG_HISTORY),
    "ppo": Stage("05_ppo.ipynb", PPO_INFO, PPO_LOG),
}


def notebook(stage: str) -> str:
    """The notebook that makes ``stage``'s artifacts (for error messages)."""
    return STAGES[stage].notebook if stage in STAGES else "the notebook of that stage"


class MissingStageError(FileNotFoundError):
    """An earlier stage's artifacts are missing; the message names the notebook to run first."""


@dataclass
class Paths:
    """Where artifacts go. ``root`` defaults to ``$RLHF_OUTPUT_DIR`` or ``<repo>/outputs``."""

    # an empty variable counts as unset (an empty path would mean the current folder: notebooks/ when run there)
    root: Path = field(default_factory=lambda: Path(os.environ.get("RLHF_OUTPUT_DIR") or REPO_ROOT / "outputs"))
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("RLHF_DATA_DIR") or REPO_ROOT / "data"))

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.data_dir = Path(self.data_dir)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def prepared_data(self) -> Path:
        """The splits notebook 01 saves for the later notebooks."""
        return self.root / "prepared_data"

    @property
    def executed_notebooks(self) -> Path:
        return self.root / "notebooks"

    def checkpoint(self, stage: str) -> Path:
        """Directory of one stage's model, e.g. ``outputs/checkpoints/sft_full``."""
        return self.checkpoints / stage

    def result(self, name: str) -> Path:
        self.results.mkdir(parents=True, exist_ok=True)
        return self.results / name

    def plot(self, name: str) -> Path:
        self.plots.mkdir(parents=True, exist_ok=True)
        return self.plots / name

    def require(self, stage: str) -> Path:
        """Return the stage's artifact directory, or say which notebook to run first."""
        path = self.prepared_data if stage == "data" else self.checkpoint(stage)
        if not (path.exists() and any(path.iterdir())):
            raise MissingStageError(f"No '{stage}' artifacts at {path}. Run notebooks/{notebook(stage)} first.")
        return path

    def finished(self, stage: str) -> Path:
        """The stage's checkpoint folder if its done-marker is there; else :class:`MissingStageError` naming
        the notebook to run."""
        path = self.require(stage)
        if not (path / STAGES[stage].done_marker).exists():
            raise MissingStageError(f"{path} holds no finished '{stage}' run ({STAGES[stage].done_marker} missing). "
                                    f"Run notebooks/{notebook(stage)} first.")
        return path


# ----------------------------------------------------------------------------------------- atomic I/O
def atomic_dir(target: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a fresh temporary directory next to ``target``, then swap it in: the old directory is
    first renamed to ``.<name>.old`` (:func:`old_dir`) and deleted last, so an interrupted save leaves one complete
    copy. Every stage's checkpoint and the prepared data are written this way."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = old_dir(target)
    try:
        write(tmp)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def old_dir(target: Path) -> Path:
    """Where :func:`atomic_dir` keeps the previous copy of ``target`` during the swap."""
    return target.with_name(f".{target.name}.old")


def write_text(path: str | Path, text: str) -> Path:
    """``text`` written to ``path`` atomically (``.<name>.tmp`` next to it, then ``os.replace``); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """JSON written to ``path`` atomically (:func:`write_text`); numpy/torch scalars as floats."""
    return write_text(path, json.dumps(obj, indent=1, default=float))


def write_csv(frame: Any, path: str | Path, index: bool = True) -> Path:
    """A pandas DataFrame written to ``path`` as CSV, atomically (:func:`write_text`)."""
    return write_text(path, frame.to_csv(index=index))


def read_json(path: str | Path) -> Any:
    """The JSON document at ``path``; a malformed file raises ``path: invalid JSON (...)``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines log (blank lines skipped); a bad line raises ``path:line: invalid JSON``."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    return out


def write_jsonl(records: Iterable[Mapping], path: str | Path) -> Path:
    """JSON Lines written to ``path`` atomically (:func:`write_text`), one record a line."""
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))

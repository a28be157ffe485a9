"""Where every artifact of the course lives, and how it is written: one place for both.

* :class:`Paths` -- the output root (``$RLHF_OUTPUT_DIR`` or ``<repo>/outputs``) and the data folder
  (``$RLHF_DATA_DIR`` or ``<repo>/data``); every stage's checkpoint folder, result and plot files.
* :data:`STAGES` -- the stage registry: which notebook makes each stage's artifacts (named in errors), the file
  written last that marks a complete checkpoint, and its training-log file. (Notebook 06 trains nothing: its
  tables and plots go to ``outputs/results`` and ``outputs/plots``.)
* Atomic I/O -- :func:`atomic_dir` (a whole checkpoint folder), :func:`write_text` (one file; :func:`write_json`,
  :func:`write_jsonl`, :func:`write_csv` and the summary and notebook writers go through it), :func:`read_json`, :func:`read_records`;
  :func:`append_record` adds one whole line to a log.
  A reader never sees half a file: each write goes to a temporary name beside the target, then ``os.replace``.
  What an interrupted write left beside a target (its temporary file or folders, an ``.old`` copy) is removed
  by the next successful write to that target, and nothing else is. What they create follows the umask, as a
  plain ``open``/``mkdir`` would (``tempfile``'s own 0600/0700 is not kept).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import distributed

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
    (present = the stage finished), its training log (None: none), and the stages that notebook reads."""

    notebook: str
    done_marker: str
    log: str | None = None
    needs: tuple[str, ...] = ()


STAGES: dict[str, Stage] = {
    "data": Stage("01_data_preparation.ipynb", DATA_INFO),
    "base": Stage("01_data_preparation.ipynb", BASE_INFO, BASE_INFO),
    "sft_full": Stage("02_sft_full.ipynb", TRAIN_INFO, LOG_HISTORY, needs=("data",)),  # tiny: + the base, which
    # load_base builds when missing
    "sft_qlora": Stage("03_sft_qlora.ipynb", TRAIN_INFO, LOG_HISTORY, needs=("data", "sft_full")),  # compares to 02
    "reward": Stage("04_reward_modeling.ipynb", REWARD_INFO, LOG_HISTORY, needs=("data", "sft_full")),
    "ppo": Stage("05_ppo.ipynb", PPO_INFO, PPO_LOG, needs=("data", "sft_full", "reward")),
    # notebook 10's T5, after SFT and after PPO against notebook 04's reward model (its exercises read them)
    "seq2seq_sft": Stage("10_seq2seq_policy.ipynb", TRAIN_INFO, LOG_HISTORY, needs=("data", "reward")),
    "seq2seq_ppo": Stage("10_seq2seq_policy.ipynb", PPO_LOG, PPO_LOG, needs=("data", "reward")),
}


def with_needs(stages: Iterable[str]) -> list[str]:
    """``stages`` and every stage they need, transitively, in pipeline order (the order of :data:`STAGES`);
    an unknown name raises ``KeyError`` listing the known ones."""
    wanted: set[str] = set()
    todo = list(stages)
    while todo:
        stage = todo.pop()
        if stage not in STAGES:
            raise KeyError(f"Unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
        if stage not in wanted:
            wanted.add(stage)
            todo.extend(STAGES[stage].needs)
    return [s for s in STAGES if s in wanted]


def notebook(stage: str) -> str:
    """The notebook that makes ``stage``'s artifacts (for error messages)."""
    return STAGES[stage].notebook if stage in STAGES else "the notebook of that stage"


class MissingStageError(FileNotFoundError):
    """An earlier stage's artifacts are missing; the message names the notebook to run first."""


def _folder_from_env(variable: str, default: Path) -> Path:
    """``$variable`` as a path, ``default`` when unset. Set but empty is an error: an empty path would mean the
    current folder (``notebooks/`` when a notebook runs there), and quietly using the default instead would
    hide the mistake."""
    value = os.environ.get(variable)
    if value is None:
        return default
    if not value.strip():
        raise ValueError(f"{variable} is set but empty: unset it, or set it to a folder (default: {default}).")
    return Path(value)


@dataclass
class Paths:
    """Where artifacts go. ``root`` defaults to ``$RLHF_OUTPUT_DIR`` or ``<repo>/outputs``, ``data_dir`` to
    ``$RLHF_DATA_DIR`` or ``<repo>/data``; a variable set to an empty string raises ``ValueError``.
    :meth:`check_root` says whether the root can be written before anything is.

    ``reads_from`` (an exercise's paths, :func:`rlhf_helpers.notebook_setup.exercise_profile`): another output root
    whose stages :meth:`require` and :meth:`finished` fall back to when ``root`` has none of its own. Everything
    is still written under ``root``, so an exercise reads the course's models and never overwrites them."""

    root: Path = field(default_factory=lambda: _folder_from_env("RLHF_OUTPUT_DIR", REPO_ROOT / "outputs"))
    data_dir: Path = field(default_factory=lambda: _folder_from_env("RLHF_DATA_DIR", REPO_ROOT / "data"))
    reads_from: Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.data_dir = Path(self.data_dir)
        self.reads_from = None if self.reads_from is None else Path(self.reads_from)

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
            if self.reads_from is not None:
                return Paths(self.reads_from, self.data_dir).require(stage)
            raise MissingStageError(f"No '{stage}' artifacts at {path}. Run notebooks/{notebook(stage)} first.")
        return path

    def check_root(self) -> Path:
        """The output root, created if missing, after checking that files can be written in it: a root that is
        a file (or lies under one) raises ``NotADirectoryError``, one that cannot be written ``PermissionError``,
        both naming the folder and ``RLHF_OUTPUT_DIR``. Call it before writing anything (the runner does)."""
        root = self.root
        hint = "set RLHF_OUTPUT_DIR to a folder you can write (default: <repo>/outputs)"
        blocker = next((p for p in (root, *root.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            where = "is a file" if blocker == root else f"lies under {blocker}, which is a file"
            raise NotADirectoryError(f"The output root {root} {where}, not a folder: {hint}.")
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=root)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise PermissionError(f"The output root {root} cannot be written ({err.strerror or err}): {hint}.") from None
        return root

    def finished(self, stage: str) -> Path:
        """The stage's checkpoint folder if its done-marker is there; else :class:`MissingStageError` naming
        the notebook to run."""
        path = self.require(stage)
        if not (path / STAGES[stage].done_marker).exists():
            raise MissingStageError(f"{path} holds no finished '{stage}' run ({STAGES[stage].done_marker} missing). "
                                    f"Run notebooks/{notebook(stage)} first.")
        return path


# ----------------------------------------------------------------------------------------- atomic I/O
def _umask() -> int:
    """The process's umask. Reading it means setting it: set a strict one (0o077) for that instant -- never a
    laxer one another thread could create a file under -- and put the old one back at once."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _tmp_dir_pattern(target: Path) -> re.Pattern[str]:
    """Names of :func:`atomic_dir`'s temporary folders for ``target``: ``.<name>.tmp-`` + mkdtemp's 8 characters
    (so a sibling ``<name>.tmp-x``'s own folders never match)."""
    return re.compile(re.escape(f".{target.name}.tmp-") + r"[a-z0-9_]{8}")


def _clean_stale(target: str | Path) -> list[Path]:
    """Remove what interrupted writes of ``target`` left beside it -- :func:`atomic_dir`'s ``.<name>.tmp-*``
    folders and :func:`write_text`'s ``.<name>.tmp`` file -- and nothing else; returns what was removed.
    :func:`atomic_dir` and :func:`write_text` call it before each write (one writer per target at a time, as
    before: two writers of one target would replace each other's copy anyway). ``.<name>.old`` is not touched
    here: while ``target`` is missing it is the one complete copy; :func:`atomic_dir` removes it once its own
    swap is done."""
    target = Path(target)
    removed = []
    if target.parent.is_dir():
        pattern = _tmp_dir_pattern(target)
        for p in target.parent.iterdir():
            if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    tmp_file = _tmp_file(target)
    if tmp_file.is_file() or tmp_file.is_symlink():
        tmp_file.unlink(missing_ok=True)
        removed.append(tmp_file)
    return removed


def atomic_dir(target: str | Path, write: Callable[[Path], None], collective: bool = False) -> Path:
    """``write(tmp)`` into a fresh temporary directory next to ``target``, then swap it in: the old directory is
    first renamed to ``.<name>.old`` (:func:`old_dir`) and deleted last, so an interrupted save leaves one complete
    copy. Every stage's checkpoint and the prepared data are written this way.

    Temporary folders an earlier, interrupted call left for ``target`` are removed first (:func:`_clean_stale`);
    the folder gets the mode a plain ``mkdir`` would give (``0o777 & ~umask``), not mkdtemp's 0700.

    Several processes (:mod:`~rlhf_helpers.core.distributed`): the main process writes and swaps, then all meet at
    a barrier. ``collective``: ``write`` holds work every process must join (training with its all-reduces), so the
    others run it too, into a throwaway folder; otherwise they only wait."""
    target = Path(target)
    if not distributed.is_main_process():
        if collective:
            with tempfile.TemporaryDirectory() as throwaway:
                write(Path(throwaway))
        distributed.wait_for_everyone()
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = old_dir(target)
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        write(tmp)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    distributed.wait_for_everyone()
    return target


def old_dir(target: Path) -> Path:
    """Where :func:`atomic_dir` keeps the previous copy of ``target`` during the swap."""
    return target.with_name(f".{target.name}.old")


def _tmp_file(path: Path) -> Path:
    """:func:`write_text`'s temporary file for ``path``."""
    return path.with_name(f".{path.name}.tmp")


def write_text(path: str | Path, text: str) -> Path:
    """``text`` written to ``path`` atomically (``.<name>.tmp`` next to it, then ``os.replace``); creates the folder.
    A write that fails removes its temporary file; one that was killed leaves it for the next write to remove
    (:func:`_clean_stale`). The file is created by ``open``, so it follows the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(path)
    tmp = _tmp_file(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """JSON written to ``path`` atomically (:func:`write_text`); numpy/torch scalars as floats."""
    return write_text(path, json.dumps(obj, indent=1, default=float))


def write_csv(frame: Any, path: str | Path, index: bool = True) -> Path:
    """A pandas DataFrame written to ``path`` as CSV, atomically (:func:`write_text`)."""
    return write_text(path, frame.to_csv(index=index))


def weights_digest(*folders: str | Path) -> str:
    """A SHA-256 over the ``*.safetensors`` files in ``folders`` (recursively, in order): it changes exactly when
    a model saved there is retrained. PPO's checkpoint records the digest of the models it started from."""
    import hashlib

    digest = hashlib.sha256()
    for folder in map(Path, folders):
        for file in sorted(folder.rglob("*.safetensors")):
            digest.update(str(file.relative_to(folder)).encode())
            with file.open("rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def read_json(path: str | Path) -> Any:
    """The JSON document at ``path``; a malformed file raises ``path: invalid JSON (...)``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def read_numbered_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of each record of a JSON Lines log (blank lines skipped, still counted); a bad
    line raises ``path:line: invalid JSON``."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    return out


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines log (:func:`read_numbered_records` without the line numbers)."""
    return [record for _, record in read_numbered_records(path)]


def append_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """One JSON record appended to a JSON Lines file as a single ``write`` of the whole line, then flushed to disk:
    a reader sees the line whole or not at all (a label saved the moment it is given). A file that does not end
    with a newline (edited by hand, or cut) raises a ValueError naming it, rather than joining two records."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            raise ValueError(f"{path}: the last line has no newline (a cut or edited file): fix it before appending")
        if os.write(fd, data) != len(data):
            raise OSError(f"{path}: short write")
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def write_jsonl(records: Iterable[Mapping], path: str | Path) -> Path:
    """JSON Lines written to ``path`` atomically (:func:`write_text`), one record a line."""
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))

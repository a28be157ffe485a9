"""core.artifacts: paths and the stage registry, and the atomic writers every stage uses."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from rlhf_helpers.core import artifacts
from rlhf_helpers.core.artifacts import STAGES, MissingStageError, Paths


def test_paths_env_override_and_missing_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_OUTPUT_DIR", str(tmp_path / "out"))
    paths = Paths()
    assert paths.checkpoint("sft_full") == tmp_path / "out" / "checkpoints" / "sft_full"
    with pytest.raises(MissingStageError, match="Run notebooks/02_sft_full.ipynb first"):
        paths.require("sft_full")
    with pytest.raises(MissingStageError, match="01_data_preparation"):
        paths.require("data")
    paths.checkpoint("sft_full").mkdir(parents=True)
    (paths.checkpoint("sft_full") / "config.json").write_text("{}")
    assert paths.require("sft_full") == paths.checkpoint("sft_full")
    assert paths.plot("x.png").parent.is_dir() and paths.result("t.csv").parent.is_dir()


@pytest.mark.parametrize("variable", ["RLHF_OUTPUT_DIR", "RLHF_DATA_DIR"])
def test_an_empty_output_variable_is_an_error_not_the_default_or_the_current_folder(monkeypatch, variable):
    monkeypatch.delenv("RLHF_OUTPUT_DIR", raising=False)
    monkeypatch.delenv("RLHF_DATA_DIR", raising=False)
    paths = Paths()  # unset: the defaults
    assert paths.root == artifacts.REPO_ROOT / "outputs" and paths.data_dir == artifacts.REPO_ROOT / "data"
    for empty in ("", "  "):
        monkeypatch.setenv(variable, empty)
        with pytest.raises(ValueError, match=f"{variable} is set but empty: unset it, or set it to a folder"):
            Paths()


def test_check_root_refuses_a_file_or_an_unwritable_folder_before_writing(tmp_path, monkeypatch):
    assert Paths(root=tmp_path / "new" / "out").check_root().is_dir()  # a missing root is created
    assert list((tmp_path / "new" / "out").iterdir()) == []  # the write test leaves nothing behind
    (tmp_path / "file").write_text("mine")
    for root in (tmp_path / "file", tmp_path / "file" / "out"):
        with pytest.raises(NotADirectoryError, match="output root .* not a folder: set RLHF_OUTPUT_DIR"):
            Paths(root=root).check_root()
    assert (tmp_path / "file").read_text() == "mine"
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkstemp = tempfile.mkstemp

    def no_write(*args, dir=None, **kwargs):  # what a read-only folder does (chmod alone does not stop root)
        if dir is not None and os.path.samefile(dir, locked):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", no_write)
    with pytest.raises(PermissionError, match=r"output root .*locked cannot be written \(Permission denied\)"):
        Paths(root=locked).check_root()


def test_finished_needs_the_done_marker_and_names_the_notebook(tmp_path):
    paths = Paths(root=tmp_path)
    folder = paths.checkpoint("reward")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(MissingStageError, match="reward_info.json missing.*04_reward_modeling"):
        paths.finished("reward")
    (folder / STAGES["reward"].done_marker).write_text("{}")
    assert paths.finished("reward") == folder
    assert artifacts.notebook("ppo") == "05_ppo.ipynb" and "notebook of that stage" in artifacts.notebook("x")


def test_every_stage_names_an_existing_notebook():
    notebooks = {p.name for p in (artifacts.REPO_ROOT / "notebooks").glob("*.ipynb")}
    assert {s.notebook for s in STAGES.values()} <= notebooks


def test_with_needs_closes_over_what_each_stage_needs_in_pipeline_order():
    assert artifacts.with_needs(["ppo"]) == ["data", "sft_full", "reward", "ppo"]
    assert artifacts.with_needs(["sft_qlora", "data"]) == ["data", "sft_full", "sft_qlora"]
    assert artifacts.with_needs([]) == []
    assert artifacts.with_needs(["seq2seq_ppo"]) == ["data", "sft_full", "reward", "seq2seq_ppo"]  # notebook 10's T5
    with pytest.raises(KeyError, match="'rm'.*expected one of data, base"):
        artifacts.with_needs(["rm"])
    for stage, spec in STAGES.items():  # a stage needs only what earlier notebooks make: building never loops
        assert all(STAGES[n].notebook < spec.notebook for n in spec.needs), stage


def test_atomic_dir_swaps_in_a_complete_copy_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    artifacts.atomic_dir(target, lambda d: (d / "a.txt").write_text("1"))
    artifacts.atomic_dir(target, lambda d: (d / "b.txt").write_text("2"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]

    def broken(d):
        (d / "c.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        artifacts.atomic_dir(target, broken)
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # nothing half-written replaced it
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary or .old directory left behind


def test_the_next_write_removes_what_an_interrupted_one_left_and_nothing_else(tmp_path):
    # what a killed atomic_dir / write_text leaves (no ``finally`` ran): temporary folders, a temporary file
    for name in (".ckpt.tmp-abcd1234", ".ckpt.tmp-zz_9zz_9"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_text("half")
    (tmp_path / ".table.csv.tmp").write_text("half")
    # other targets' leftovers and look-alike names: never touched
    keep_dirs = [".other.tmp-abcd1234", ".ckpt.tmp-x.tmp-abcd1234", ".ckpt.tmp-short", "ckpt.tmp-abcd1234"]
    keep_files = [".table.csv.tmp2", ".ckpt.tmp-abcd9999", "notes.txt"]
    for name in keep_dirs:
        (tmp_path / name).mkdir()
    for name in keep_files:
        (tmp_path / name).write_text("x")
    artifacts.atomic_dir(tmp_path / "ckpt", lambda d: (d / "a.txt").write_text("1"))
    artifacts.write_text(tmp_path / "table.csv", "new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep_dirs, *keep_files, "ckpt", "table.csv"])

    # a save killed between its two renames leaves only ``.ckpt.old``: kept while it is the one complete copy ...
    os.replace(tmp_path / "ckpt", artifacts.old_dir(tmp_path / "ckpt"))

    def broken(d):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        artifacts.atomic_dir(tmp_path / "ckpt", broken)
    assert (artifacts.old_dir(tmp_path / "ckpt") / "a.txt").exists()
    artifacts.atomic_dir(tmp_path / "ckpt", lambda d: (d / "b.txt").write_text("2"))  # ... until a swap succeeds
    assert not artifacts.old_dir(tmp_path / "ckpt").exists() and (tmp_path / "ckpt" / "b.txt").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], ids=oct)
def test_written_files_and_folders_follow_the_umask(tmp_path, umask):
    before = os.umask(umask)
    try:
        folder = artifacts.atomic_dir(tmp_path / "ckpt", lambda d: (d / "a.txt").write_text("1"))
        file = artifacts.write_text(tmp_path / "t.csv", "x\n")
        assert os.umask(umask) == umask  # the writers read the umask and put it back
    finally:
        os.umask(before)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(folder) == 0o777 & ~umask  # as ``mkdir`` makes it, not mkdtemp's 0700
    assert mode(file) == mode(folder / "a.txt") == 0o666 & ~umask


def test_read_records_names_file_and_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n\n{"step": 2}\n')
    assert artifacts.read_records(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\n{"step": \n')
    with pytest.raises(ValueError, match=r"log\.jsonl:2: invalid JSON"):
        artifacts.read_records(log)


def test_writers_round_trip_and_leave_no_temporary_file(tmp_path):
    records = [{"beta": 0.1, "text": "café"}, {"beta": 0.5}]
    out = artifacts.write_jsonl(records, tmp_path / "sub" / "log.jsonl")
    assert artifacts.read_records(out) == records and "café" in out.read_text(encoding="utf-8")
    artifacts.write_json(tmp_path / "info.json", {"x": 1.5})
    assert artifacts.read_json(tmp_path / "info.json") == {"x": 1.5}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json:1: invalid JSON"):
        artifacts.read_json(tmp_path / "bad.json")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.startswith(".")) == []


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = artifacts.write_text(tmp_path / "table.csv", "old\n")

    def fail(*args, **kwargs):
        raise OSError("no space left")

    monkeypatch.setattr(artifacts.os, "replace", fail)
    with pytest.raises(OSError, match="no space"):
        artifacts.write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # the failed write removed its temporary file


def test_write_csv_is_pandas_csv_written_atomically(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="k"))
    out = artifacts.write_csv(frame, tmp_path / "t.csv")
    assert out.read_text() == frame.to_csv()
    assert artifacts.write_csv(frame, tmp_path / "u.csv", index=False).read_text() == "a\n1\n2\n"

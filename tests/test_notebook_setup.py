"""The first cell of every notebook: profile, seeds (transformers.set_seed), thread cap, printed environment."""

import os
import random
import sys

import pytest
import torch

from rlhf_helpers import notebook_setup


def test_start_seeds_prints_and_caps_threads(monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.delenv("RLHF_PROFILE", raising=False)
    try:
        torch.set_num_threads(4)
        monkeypatch.delenv("RLHF_TORCH_THREADS", raising=False)
        prof = notebook_setup.start("tiny")
        assert prof.name == "tiny" and torch.get_num_threads() == notebook_setup.TINY_THREADS == 2  # pinned
        first = (random.random(), torch.rand(3))
        monkeypatch.setenv("RLHF_TORCH_THREADS", "1")
        notebook_setup.start("tiny")
        again = (random.random(), torch.rand(3))
        assert first[0] == again[0] and torch.equal(first[1], again[1])  # start() re-seeds
        assert torch.get_num_threads() == 1
        out = capsys.readouterr().out
        assert "profile : tiny" in out and "torch threads: 1" in out and "transformers" in out
        monkeypatch.setenv("RLHF_TORCH_THREADS", "two")
        with pytest.raises(ValueError, match="RLHF_TORCH_THREADS"):
            notebook_setup.start("tiny", verbose=False)
        monkeypatch.delenv("RLHF_TORCH_THREADS")
        monkeypatch.setenv("RLHF_SET", "sft.max_steps=5")
        assert notebook_setup.start("tiny").sft.max_steps == 5
        assert "settings: sft.max_steps=5   ($RLHF_SET)" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


def test_check_stops_on_a_false_claim_unless_told_it_is_a_smoke_run(monkeypatch, capsys):
    notebook_setup.check(True, "never shown")
    with pytest.raises(AssertionError, match="^PPO does not beat SFT$"):
        notebook_setup.check(False, "PPO does not beat SFT")
    monkeypatch.setenv(notebook_setup.CHECKS_ENV, "0")
    notebook_setup.check(False, "PPO does not beat SFT")
    assert capsys.readouterr().out == "NOT CHECKED ($RLHF_CHECK_CLAIMS=0): PPO does not beat SFT\n"
    monkeypatch.setenv(notebook_setup.CHECKS_ENV, "no")  # only "0" turns the checks off
    with pytest.raises(AssertionError):
        notebook_setup.check(False, "PPO does not beat SFT")


def test_drive_keeps_the_outputs_on_colab_only_and_an_explicit_output_dir_wins(tmp_path, monkeypatch, capsys):
    """start(drive=True): outside Colab nothing happens; on Colab (a stand-in google.colab module) Drive is mounted
    and the output root moves to the profile's folder there, for this notebook and the ones it runs; a set
    $RLHF_OUTPUT_DIR, a refused mount or a folder that cannot be written keeps the outputs where they were, saying so."""
    import types

    monkeypatch.delenv("RLHF_OUTPUT_DIR", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert notebook_setup.keep_on_drive("tiny") is None and "RLHF_OUTPUT_DIR" not in os.environ  # not on Colab
    mounts = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounts.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(notebook_setup, "DRIVE_MOUNT", str(tmp_path / "drive"))
    prof = notebook_setup.start("tiny", drive=True)
    expected = tmp_path / "drive" / "MyDrive" / "rlhf-course" / "tiny" / "outputs"
    assert mounts == [str(tmp_path / "drive")] and expected.is_dir()
    assert prof.paths.root == expected and os.environ["RLHF_OUTPUT_DIR"] == str(expected)
    assert f"outputs : {expected}\n" in capsys.readouterr().out
    monkeypatch.setenv("RLHF_OUTPUT_DIR", str(tmp_path / "mine"))
    assert notebook_setup.keep_on_drive("tiny") is None and len(mounts) == 1
    assert "RLHF_OUTPUT_DIR=" in capsys.readouterr().out
    monkeypatch.delenv("RLHF_OUTPUT_DIR")
    (tmp_path / "drive" / "MyDrive" / "rlhf-course" / "colab").write_text("a file where the folder should be")
    assert notebook_setup.keep_on_drive("colab") is None and "Google Drive not used" in capsys.readouterr().out

    def refuse(_):
        raise ValueError("mount failed")

    colab.drive = types.SimpleNamespace(mount=refuse)
    prof = notebook_setup.start("tiny", drive=True)
    out = capsys.readouterr().out
    assert "Google Drive not used (mount failed)" in out and "lost with this Colab machine" in out
    assert "RLHF_OUTPUT_DIR" not in os.environ


def test_an_exercise_reads_the_course_stages_and_writes_only_its_own_folder(tmp_path, capsys):
    """exercise_profile: the same settings; reads fall back to the course's stages until the exercise has its own;
    checkpoints, results and plots go under outputs/exercises/NN.k."""
    from rlhf_helpers.core.artifacts import STAGES, MissingStageError, Paths
    from rlhf_helpers.core.config import get_profile

    course = get_profile("tiny", paths=Paths(tmp_path / "out", tmp_path / "data"))
    sft = course.paths.checkpoint("sft_full")
    sft.mkdir(parents=True)
    (sft / STAGES["sft_full"].done_marker).write_text("{}")
    ex = notebook_setup.exercise_profile(course, "05.1")
    assert f"writes to {tmp_path / 'out' / 'exercises' / '05.1'}" in capsys.readouterr().out
    assert ex.sft == course.sft and ex.paths.data_dir == course.paths.data_dir
    assert ex.paths.finished("sft_full") == sft  # read from the course
    assert ex.paths.checkpoint("sft_full") == tmp_path / "out" / "exercises" / "05.1" / "checkpoints" / "sft_full"
    assert ex.paths.result("x.csv").parent == tmp_path / "out" / "exercises" / "05.1" / "results"
    with pytest.raises(MissingStageError, match="reward"):  # missing in both
        ex.paths.finished("reward")
    own = ex.paths.checkpoint("sft_full")
    own.mkdir(parents=True)
    (own / STAGES["sft_full"].done_marker).write_text("{}")
    assert ex.paths.finished("sft_full") == own and course.paths.finished("sft_full") == sft  # its own, once made
    for bad in ("5.1", "05", "05.x", "../05.1"):
        with pytest.raises(ValueError, match="expected 'NN.k'"):
            notebook_setup.exercise_profile(course, bad)

"""rlhf_helpers.core.distributed: who writes and who waits, read from the launcher's environment. (Real processes:
tests/test_stages.py launches two.)"""

from __future__ import annotations

import pytest

from rlhf_helpers.core import artifacts, distributed


@pytest.fixture
def second_process(monkeypatch):
    """This process as the launcher's second one; no other exists, so its barriers are taken away."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(distributed, "wait_for_everyone", lambda: None)


def test_one_process_is_the_main_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert (distributed.world_size(), distributed.is_main_process()) == (1, True)
    distributed.join()  # nothing to join: no process group, no environment change
    distributed.wait_for_everyone()
    ran = []
    distributed.on_main_process(lambda: ran.append(1))
    assert ran == [1]


def test_another_process_leaves_the_writing_to_the_main_one(second_process, tmp_path):
    ran = []
    distributed.on_main_process(lambda: ran.append(1))
    assert ran == [] and not distributed.is_main_process()

    def write(folder):
        ran.append(folder)
        (folder / "weights").write_text("x")

    assert artifacts.atomic_dir(tmp_path / "model", write) == tmp_path / "model"
    assert ran == [] and not (tmp_path / "model").exists()  # a save: the main process's alone
    artifacts.atomic_dir(tmp_path / "model", write, collective=True)  # training inside: it joins, into a throwaway
    assert len(ran) == 1 and not ran[0].exists() and not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []


def test_the_main_process_alone_skips_the_barriers_of_what_it_calls(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    met = []
    monkeypatch.setattr(distributed, "state", lambda: type("S", (), {"wait_for_everyone": lambda self: met.append(1)})())
    distributed.on_main_process(lambda: artifacts.atomic_dir(tmp_path / "m", lambda d: (d / "f").write_text("x")))
    assert (tmp_path / "m" / "f").exists()
    assert met == [1]  # one barrier, after the work: the other processes wait at that one only


def test_on_main_process_inside_another_keeps_the_outer_barrier_only(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    met = []
    monkeypatch.setattr(distributed, "state", lambda: type("S", (), {"wait_for_everyone": lambda self: met.append(1)})())
    distributed.on_main_process(lambda: distributed.on_main_process(lambda: distributed.wait_for_everyone()))
    assert met == [1]


def test_the_stages_refuse_zero3_before_joining(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    monkeypatch.setattr(distributed, "state", lambda: pytest.fail("joined the process group"))
    with pytest.raises(ValueError, match="do not run under DeepSpeed ZeRO-3.*zero2.yaml or multi_gpu.yaml"):
        distributed.join()

"""Several processes (``accelerate launch --num_processes N``): which one writes, and waiting for the others.

A notebook runs one process and none of this does anything there. Under a launcher (``torchrun``, ``accelerate
launch``) every process runs the same stage; the trainers (TRL's, :mod:`rlhf_helpers.ppo`) share the work, and
the main process alone writes each artifact (:func:`rlhf_helpers.core.artifacts.atomic_dir`) while the others
wait for it. Read from the launcher's environment (``WORLD_SIZE``, ``RANK``) so that nothing here starts a
process group where there is one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

TIMEOUT_S = 6 * 3600  # how long a process waits at a barrier (NCCL's default, 10 minutes, is shorter than the main
# process's evaluation or a large save while the others wait for it)
_alone = False  # True while the main process works alone (on_main_process): its barriers are the others' one


def world_size() -> int:
    """Processes of the run (``$WORLD_SIZE``, set by the launcher); 1 in a notebook."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on the process that writes artifacts and prints (global rank 0), and wherever there is one process."""
    return int(os.environ.get("RANK", "0")) == 0


def state() -> Any:
    """accelerate's ``PartialState`` of this process, which joins the process group on first use: gloo on the CPU
    (``cpu=True`` where there is no CUDA GPU, as ``ACCELERATE_USE_CPU`` would), NCCL on GPUs."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=TIMEOUT_S))


def join() -> None:
    """Join the process group of a launched run (nothing with one process), before any model or trainer exists.

    Without a CUDA GPU it runs on the CPU over gloo: ``$ACCELERATE_USE_CPU`` is set, which TRL's trainers
    (``TrainingArguments``) and accelerate read, and unless ``$RLHF_TORCH_THREADS`` says otherwise each process
    gets its share of the cores (processes spinning more threads than there are cores wait for each other)."""
    if world_size() < 2:
        return
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        raise ValueError("The course's stages do not run under DeepSpeed ZeRO-3: they save and evaluate on the main "
                         "process alone, which sharded weights do not allow. Use accelerate_configs/zero2.yaml or "
                         "multi_gpu.yaml; zero3.yaml is for your own scripts with TRL's trainers (trainer.save_model "
                         "gathers the shards).")
    import torch

    if not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "true"
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
        os.environ.setdefault("RLHF_TORCH_THREADS", str(max(1, (os.cpu_count() or 1) // local)))
    state()


def wait_for_everyone() -> None:
    """A barrier across the processes; nothing with one process, or inside :func:`on_main_process`."""
    if world_size() > 1 and not _alone:
        state().wait_for_everyone()


def on_main_process(work: Callable[[], None]) -> None:
    """``work()`` on the main process alone (evaluation, reports: nothing to share out), then a barrier: the others
    wait there for it. The barriers of what ``work`` calls (:func:`~rlhf_helpers.core.artifacts.atomic_dir`'s) are
    skipped, as the other processes are not there to meet them."""
    global _alone
    outer = _alone  # called from inside another on_main_process: that one's barrier is the only one
    if is_main_process():
        _alone = True
        try:
            work()
        finally:
            _alone = outer
    wait_for_everyone()

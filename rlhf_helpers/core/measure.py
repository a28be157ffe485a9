"""Measuring a training run: its peak memory (:class:`PeakMemory`) and the size of its weights (:func:`weights_mb`),
for the tables that compare full fine-tuning with QLoRA (notebook 03), the methods of notebook 07, and LoRA and
gradient checkpointing in PPO (notebook 09)."""

from __future__ import annotations

import threading
from typing import Any


class PeakMemory:
    """Peak memory while the ``with`` block runs, in MB (``.peak_mb``); ``.measure`` says what was measured.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` -- the peak of all live tensors
    (weights included). CPU: peak growth of the process's resident set size (RSS) over its value at entry,
    sampled every ``interval`` seconds by a daemon thread (psutil) -- training state and activations, not the
    weights loaded before; coarse (memory the allocator reuses does not show up as growth).

    Why not the Trainer's own memory metrics (``skip_memory_metrics=False``): transformers' TrainerMemoryTracker
    samples the CPU RSS in a thread that loops without sleeping, which takes a whole core from training on a
    2-core machine (and so inflates the seconds per step we measure); this one samples every 5 ms.
    """

    def __init__(self, interval: float = 0.005, cuda: bool | None = None):
        import torch

        self.interval = interval
        self.cuda = torch.cuda.is_available() if cuda is None else cuda
        self.peak_mb = float("nan")
        self.measure = "CUDA max allocated" if self.cuda else "CPU RSS growth"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, process: Any, start: int) -> None:
        peak = start
        while not self._stop.is_set():
            peak = max(peak, process.memory_info().rss)
            self._stop.wait(self.interval)
        peak = max(peak, process.memory_info().rss)
        self.peak_mb = (peak - start) / 2**20

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        try:
            import psutil
        except ImportError:  # psutil comes with accelerate; without it there is no cheap RSS reading
            self.measure = "unavailable (install psutil)"
            return self
        process = psutil.Process()
        self._thread = threading.Thread(target=self._sample, args=(process, process.memory_info().rss), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()


def weights_mb(model: Any) -> float:
    """Bytes of the model's parameters and buffers as stored (4-bit packing included), in MB."""
    seen: set[int] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
        state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit: absmax (+ nested constants)
        if state is not None:
            total += state.absmax.numel() * state.absmax.element_size()
            if getattr(state, "state2", None) is not None:
                total += state.state2.absmax.numel() * state.state2.absmax.element_size()
    return total / 2**20

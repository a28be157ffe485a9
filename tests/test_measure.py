"""The measurements of the comparison tables (notebooks 03, 07 and 09): peak memory and the size of the weights."""

import mmap
import time

import torch

from rlhf_helpers.core import measure


def test_peak_memory_sees_a_temporary_allocation():
    # Fresh anonymous pages from mmap, not torch or malloc: in a long test process the allocator may hand back
    # memory freed by earlier tests, which is already resident and so no RSS growth (CI saw 0.004 MB that way).
    with measure.PeakMemory(cuda=False) as mem:
        block = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(block), mmap.PAGESIZE):  # touch every page
            block[offset] = 1
        time.sleep(0.1)
        block.close()
    assert mem.measure == "CPU RSS growth"
    assert 48 <= mem.peak_mb < 1024


def test_weights_mb_counts_stored_bytes_once_per_tensor():
    """Parameters and buffers at their stored size; a tied weight counted once; half precision half the bytes."""
    model = torch.nn.Sequential(torch.nn.Embedding(256, 64), torch.nn.Linear(64, 256, bias=False))
    model[1].weight = model[0].weight  # tied, as GPT-2's input and output embeddings
    model.register_buffer("steps", torch.zeros(1024, dtype=torch.float32))
    expected = (256 * 64 * 4 + 1024 * 4) / 2**20
    assert abs(measure.weights_mb(model) - expected) < 1e-9
    assert abs(measure.weights_mb(model.half()) - expected / 2) < 1e-9

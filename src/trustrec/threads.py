"""Scoped control of torch's intra-op thread count (the one process-wide setting we touch)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (0: unchanged), then restore.

    Small, memory-bound torch workloads (NeuMF batches, influence solves, the RecEraser
    aggregator) are about as fast on one thread on an idle machine, much faster on a busy
    one, and bitwise deterministic.
    """
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)

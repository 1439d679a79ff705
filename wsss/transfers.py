"""Copies between host and device that do not make the host wait for the GPU.

`upload`: host arrays to the device through page-locked memory. A copy from ordinary
(pageable) memory waits until the GPU has finished every kernel queued before it.

`Readback`: device results read on the host one batch late. A per-image stage reads each
batch's results (label maps, refined CAMs) back to the host to write them. Read at once,
the read waits for the GPU to finish the batch, and the GPU then idles while the host
queues the next batch's kernels (a few ms for a ResNet-50 and its transforms, as long as
the network takes on a batch of small images). `Readback` starts the copy into pinned
host memory without waiting and hands the arrays to their consumer only after the next
batch has been queued: the GPU computes batch i + 1 while the host writes batch i. On the
CPU the copy is the tensor itself; the order of the consumers is the same on every device,
and a stage's files do not depend on it.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wsss.perimage import Advance, PerImageRun
from wsss.writer import BackgroundWriter, Settling, writer_threads

Consumer = Callable[[list[np.ndarray]], None]


@dataclass
class _Pending:
    host: list[torch.Tensor]
    ready: Any  # torch.cuda.Event on CUDA, None on the CPU
    consume: Consumer


class Readback(Settling):
    """`submit(tensors, consume)` calls `consume([t.numpy() ...])` once at most `depth` later
    batches have been submitted, or when the block ends. A failure inside the block drops
    the pending results (their files are not written, so a resumed run redoes them)."""

    def __init__(self, device: torch.device, depth: int = 1) -> None:
        self.device, self.depth = device, depth
        self._pending: deque[_Pending] = deque()

    def submit(self, tensors: Sequence[torch.Tensor], consume: Consumer) -> None:
        if self.device.type == "cuda":
            host = [_pinned_copy(t) for t in tensors]
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self.device))  # the stream of the copies
        else:
            host, ready = [t.detach() for t in tensors], None
        self._pending.append(_Pending(host, ready, consume))
        while len(self._pending) > self.depth:
            self._consume_oldest()

    def close(self) -> None:
        while self._pending:
            self._consume_oldest()

    def _stop(self) -> None:
        self._pending.clear()

    def _consume_oldest(self) -> None:
        pending = self._pending.popleft()
        if pending.ready is not None:
            pending.ready.synchronize()
        pending.consume([t.numpy() for t in pending.host])


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """`array` on `device`, the copy queued without waiting for the GPU (see the module doc)."""
    tensor = torch.from_numpy(array)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _pinned_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy into page-locked host memory, queued behind the kernels that make `tensor`;
    the host goes on at once (a copy into pageable memory would wait for the GPU)."""
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


@contextlib.contextmanager
def writing_loop(
    outputs: PerImageRun, device: torch.device
) -> Iterator[tuple[Advance, BackgroundWriter, Readback]]:
    """A per-image stage's batch loop: its progress bar, the writer threads and the one-batch-
    late read-back, entered in the order that closes the read-back first (its last batch goes
    to the writer) and the bar last."""
    with (
        outputs.loop() as advance,
        BackgroundWriter(writer_threads(device)) as writer,
        Readback(device) as readback,
    ):
        yield advance, writer, readback

"""Output files written on background threads while the network computes the next batch.

A per-image stage on a GPU spends as long encoding and writing its outputs (PNG compression,
pickling, and the fsync of every atomic write) as the network spends on the images, and the
GPU idles while the main thread does it. `BackgroundWriter` hands each write to a small
thread pool (fsync, zlib and file I/O release the GIL). The queue is bounded, so memory stays
flat when the disk is slower than the network. Writes stay atomic: a file exists only once
complete. The first failed write is raised in the main thread (the usual one-line WsssError)
at the next `submit` or when the block ends, after the writes already running have finished
and the queued ones are dropped, so a resumed run redoes exactly the missing files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import torch

# On the CPU the network uses every core: one thread still hides the fsync waits, more would
# take cores from torch's threads.
GPU_WRITER_THREADS = 4
CPU_WRITER_THREADS = 1


def writer_threads(device: torch.device) -> int:
    return GPU_WRITER_THREADS if device.type == "cuda" else CPU_WRITER_THREADS


_Block = TypeVar("_Block", bound="Settling")


class Settling:
    """A `with` block over queued work: at its end the work is finished (`close`) or, when
    the block fails, abandoned (`_stop`) and the block's error goes on."""

    def __enter__(self: _Block) -> _Block:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is None:
            self.close()
        else:
            self._stop()

    def close(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError


class BackgroundWriter(Settling):
    """`submit(write, *args)` runs `write(*args)` on one of `threads` threads (0: at once, in
    the caller's thread); at most `pending` writes are queued or running at a time. A failed
    block keeps the caller's error; writes that already started still finish whole."""

    def __init__(self, threads: int, pending: int | None = None) -> None:
        self._pool = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsss-writer")
            if threads > 0
            else None
        )
        self._slots = threading.BoundedSemaphore(pending or 2 * max(threads, 1))
        self._futures: list[Future[Any]] = []

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        if self._pool is None:
            write(*args)
            return
        self._raise_failed()
        self._slots.acquire()
        try:
            future = self._pool.submit(write, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def close(self) -> None:
        """Wait for every write; raise the first that failed (in submission order)."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._stop()

    def _raise_failed(self) -> None:
        done = [future for future in self._futures if future.done()]
        self._futures = [future for future in self._futures if not future.done()]
        for future in done:
            future.result()

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures = []

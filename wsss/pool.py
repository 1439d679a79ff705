"""Items handed out to a pool of worker processes, each holding one worker object built once.

The worker is built from a small picklable job (paths and parameters, never arrays), so each
process opens its own files and only a few numbers per item travel back.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from wsss.torchrun import env_info

Worker = Callable[[Any], Any]
_worker: Worker | None = None
# CPU seconds the pools' workers spent on items, summed in the parent: the workers are
# children of the forkserver, so the parent's os.times() never counts them.
_worker_cpu = [0.0]


def worker_cpu_seconds() -> float:
    """CPU seconds spent on items in pool workers since this process started."""
    return _worker_cpu[0]


def _process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def map_in_processes(
    make_worker: Callable[[Any], Worker], job: Any, items: Sequence[Any], workers: int
) -> Iterator[Any]:
    """`make_worker(job)(item)` for every item in `workers` processes (in this process when 1),
    yielded as they finish."""
    if workers <= 1:
        worker = make_worker(job)
        for item in items:
            yield worker(item)
        return
    # forkserver/spawn, never fork: the parent may hold torch or rich threads.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=init_worker,
        initargs=(make_worker, job),
    )
    try:
        futures = [pool.submit(call_worker, item) for item in items]
        for future in as_completed(futures):
            value, cpu = future.result()
            _worker_cpu[0] += cpu
            yield value
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def init_worker(make_worker: Callable[[Any], Worker], job: Any) -> None:
    """Pool initializer: one thread per worker (the pool is the parallelism), Ctrl-C left to
    the parent (which cancels the queue), exit with the parent, and the worker built once."""
    global _worker
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    if "torch" in sys.modules:  # only if something imported it; workers never need it
        sys.modules["torch"].set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    _worker = make_worker(job)


def _exit_with_parent() -> None:
    """A killed parent (kill -9) would leave the pool's workers waiting on its queue forever."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        watcher = threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True)
        watcher.start()


def call_worker(item: Any) -> tuple[Any, float]:
    """The worker's value for `item` and the CPU seconds it took."""
    if _worker is None:
        raise RuntimeError("init_worker was not called in this process")
    start = _process_cpu()
    value = _worker(item)
    return value, _process_cpu() - start


def default_workers() -> int:
    """Every core this process may use, shared among the torchrun processes of a machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, env_info().local_world_size))


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024

"""wsss.pool: items in worker processes, and the CPU those workers spend counted in the parent
(they are the forkserver's children, so the parent's own os.times never sees them)."""

from __future__ import annotations

import os

from wsss import pool


def _burn(job: int):
    def work(item: int) -> int:
        # about 50 ms of CPU: os.times counts in 10 ms ticks
        start = os.times()
        while (os.times().user + os.times().system) - (start.user + start.system) < 0.05:
            pass
        return item * job

    return work


def test_items_come_back_and_the_workers_cpu_is_counted() -> None:
    before = pool.worker_cpu_seconds()
    values = sorted(pool.map_in_processes(_burn, 3, [1, 2, 3, 4], workers=2))
    assert values == [3, 6, 9, 12]
    assert pool.worker_cpu_seconds() - before >= 4 * 0.05  # every item's CPU, summed


def test_one_worker_runs_in_this_process_and_adds_nothing_to_the_pool_count() -> None:
    before = pool.worker_cpu_seconds()
    assert list(pool.map_in_processes(_burn, 2, [5], workers=1)) == [10]
    assert pool.worker_cpu_seconds() == before  # this process's own times count it already

"""The background writer of the per-image stages: same files as writing in place, failures
raised once in the main thread, never a partial file."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from wsss.data.palette import read_label_png, save_label_png
from wsss.errors import WsssError
from wsss.io import atomic_open
from wsss.writer import BackgroundWriter


def labels(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 21, size=(17, 23), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("threads", [1, 3])
def test_files_equal_those_written_in_place(tmp_path: Path, threads: int) -> None:
    maps = labels(12)
    for i, label in enumerate(maps):
        save_label_png(tmp_path / "direct" / f"{i}.png", label)
    with BackgroundWriter(threads, pending=2) as writer:
        for i, label in enumerate(maps):
            writer.submit(save_label_png, tmp_path / "pool" / f"{i}.png", label)
    for i, label in enumerate(maps):
        pooled = tmp_path / "pool" / f"{i}.png"
        assert pooled.read_bytes() == (tmp_path / "direct" / f"{i}.png").read_bytes()
        assert np.array_equal(read_label_png(pooled), label)


def test_writes_run_off_the_main_thread_and_the_queue_is_bounded(tmp_path: Path) -> None:
    running, most, lock = [0], [0], threading.Lock()
    threads: set[str] = set()

    def slow_write(path: Path) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threads.add(threading.current_thread().name)
        time.sleep(0.02)
        path.write_bytes(b"x")
        with lock:
            running[0] -= 1

    submitted_ahead = []
    with BackgroundWriter(2, pending=3) as writer:
        for i in range(10):
            writer.submit(slow_write, tmp_path / f"{i}")
            submitted_ahead.append(i + 1 - len(list(tmp_path.iterdir())))
    assert len(list(tmp_path.iterdir())) == 10  # every write finished when the block ends
    assert most[0] <= 2 and max(submitted_ahead) <= 3
    assert threading.current_thread().name not in threads


def test_a_failed_write_is_raised_in_the_main_thread_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    def write(path: Path, fail: bool) -> None:
        with atomic_open(path) as handle:
            handle.write(b"half")
            if fail:
                raise WsssError(f"{path}: cannot write (No space left on device)")
            handle.write(b" and the rest")

    writer = BackgroundWriter(2, pending=2)
    with pytest.raises(WsssError, match="No space left") as caught, writer:
        for i in range(40):
            writer.submit(write, tmp_path / f"{i}.bin", i == 3)
            time.sleep(0.002)
    assert len(str(caught.value).splitlines()) == 1
    assert not (tmp_path / "3.bin").exists()
    assert not list(tmp_path.glob(".*.tmp"))
    written = list(tmp_path.glob("*.bin"))
    assert len(written) < 40  # the writes queued after the failure were dropped
    assert all(path.read_bytes() == b"half and the rest" for path in written)


def test_an_error_of_the_caller_waits_for_running_writes_and_drops_queued_ones(
    tmp_path: Path,
) -> None:
    started = threading.Event()

    def write(path: Path) -> None:
        started.set()
        time.sleep(0.05)
        with atomic_open(path) as handle:
            handle.write(b"whole")

    with pytest.raises(KeyboardInterrupt), BackgroundWriter(1, pending=4) as writer:
        for i in range(4):
            writer.submit(write, tmp_path / f"{i}.bin")
        started.wait(5)
        raise KeyboardInterrupt
    written = list(tmp_path.glob("*.bin"))
    assert 1 <= len(written) < 4
    assert all(path.read_bytes() == b"whole" for path in written)
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_threads_writes_in_place(tmp_path: Path) -> None:
    def write(path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer = BackgroundWriter(0)
    with pytest.raises(OSError):
        writer.submit(write, tmp_path / "a")  # raised at once, not at the end

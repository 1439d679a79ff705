"""One run per output folder: an OS lock on `<out>/.wsss.lock`, the file naming its holder.

Every stage that writes a folder (the per-image stages and the trainers) holds an exclusive
`flock` on `<out>/.wsss.lock` while it runs; the file holds the holder's pid, host and start
time for the error message. The kernel drops the lock when its holder dies, however it dies
(a kill -9; on a shared file system, a lost cluster node once the server's lease ends), so a
lock is never stale and there is nothing to judge and take over: of two runs started
together, into a fresh folder or one a killed run left, exactly one gets it (what the lock
was before, and why it changed: docs/reliability.md). A file a killed run left is taken
over with a warning; a held one is a one-line error naming the holder. Where the file
system offers no locks, the run goes on with a warning.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from wsss.errors import WsssError, file_error
from wsss.io import link_error, write_error
from wsss.ui import warn

try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".wsss.lock"
# A file system without locks (an NFS mount with `nolock`, some FUSE file systems).
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_held: dict[Path, int] = {}  # lock path -> the open descriptor that holds it


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker, a CRF worker) shares the lock's descriptor and
    would keep the lock after its parent is killed, for the seconds it takes to notice; it
    never releases the lock, so it drops its copy at once."""
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def acquire(out_dir: str | Path, stage: str) -> Path:
    """Take the lock of `out_dir` for `stage`, or fail with one line naming the holder."""
    path = Path(out_dir) / LOCK_NAME
    release(path)  # an earlier run in this process stopped on an error without giving it back
    me = {
        "stage": stage,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for _ in range(3):
        fd = _open(path)
        try:
            locked = _lock(fd, path)
            # A releasing run removes the file before it unlocks: the file we locked may no
            # longer be the one at `path`, and a run that locks that one would run beside us.
            if not _is_at(fd, path):
                os.close(fd)
                continue
            previous = _read(path)
            _write(fd, path, json.dumps(me) + "\n")
        except BaseException:
            os.close(fd)
            raise
        if locked and previous is not None:  # left by a run killed before it could remove it
            warn(
                f"{path}: taking over the lock of a run that is gone ({_describe(previous)}); "
                "its unfinished temporary files are removed"
            )
        if not _held:
            atexit.register(release_all)
        _held[path] = fd
        return path
    raise file_error(path, "could not take the lock (another run keeps taking it)")


def _open(path: Path) -> int:
    """The lock file, never through a link: a link planted there could point at any file
    (which the lock's JSON would overwrite) or create one outside the folder."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_error(path, path.parent) from None
        error = write_error(path, exc)
        raise (
            error or file_error(path.parent, f"directory is not writable ({exc.strerror})")
        ) from None


def _lock(fd: int, path: Path) -> bool:
    """Lock `fd` without waiting; False where the file system has no locks (with a warning)."""
    if fcntl is None:
        warn(f"{path}: no file locks on this system; nothing stops a second run in this folder")
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(path)
        who = _describe(holder) if holder else "its lock file not written yet"
        raise WsssError(
            f"{path.parent}: in use by another run ({who}); wait for it to finish or use "
            "another --out"
        ) from None
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise file_error(path, f"cannot lock ({exc.strerror})") from None
        warn(
            f"{path}: this file system offers no locks ({exc.strerror}); nothing stops a "
            "second run in this folder"
        )
        return False
    return True


def _is_at(fd: int, path: Path) -> bool:
    try:
        here = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def _write(fd: int, path: Path, text: str) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError as exc:
        error = write_error(path, exc)
        raise (error or file_error(path, f"cannot write ({exc.strerror})")) from None


def release(path: Path) -> None:
    """Give our lock back: remove the file, then unlock (a no-op where we hold none)."""
    fd = _held.pop(path, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):  # a folder turned read-only: unlocking is enough
        path.unlink(missing_ok=True)
    os.close(fd)


def release_all() -> None:
    for path in list(_held):
        release(path)


def _holder(path: Path, patience: float = 2.0) -> dict[str, object] | None:
    """The run holding the lock: its holder locks the file first and writes its name just
    after, so a run that finds the lock taken waits a moment for the name (on loaded cores
    that moment can be long)."""
    deadline = time.monotonic() + patience
    while (holder := _read(path)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return holder


def _read(path: Path) -> dict[str, object] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    return holder


def _describe(holder: dict[str, object]) -> str:
    return (
        f"{holder.get('stage', '?')} pid {holder.get('pid')} on {holder.get('host')} "
        f"since {holder.get('started')}"
    )

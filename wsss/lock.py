"""One run per output folder: a lock file naming its holder, taken atomically.

Every stage that writes a folder (the per-image stages and the trainers) holds
`<out>/.wsss.lock` while it runs. The file appears whole in one step (a hard link of a
written temporary, which fails if the lock exists), so of two runs started together exactly
one gets it; it holds the holder's pid, host and start time. A lock whose
process is gone (same host, dead pid: a kill -9) is taken over with a warning; a live one is
a one-line error naming the holder. A lock of another host cannot be checked and counts as
live. A lock left by an earlier run in this very process (a stage that failed when called
from Python) is taken over silently.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from wsss.errors import WsssError, file_error
from wsss.io import write_error
from wsss.ui import warn

LOCK_NAME = ".wsss.lock"
_held: set[Path] = set()


def acquire(out_dir: str | Path, stage: str) -> Path:
    """Take the lock of `out_dir` for `stage`, or fail with one line naming the holder."""
    path = Path(out_dir) / LOCK_NAME
    me = {
        "stage": stage,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for _ in range(3):
        try:
            _create(path, json.dumps(me) + "\n")
        except FileExistsError:
            _take_over_if_stale(path, me)
            continue
        except OSError as exc:
            error = write_error(path, exc)
            raise (
                error or file_error(path.parent, f"directory is not writable ({exc.strerror})")
            ) from None
        if not _held:
            atexit.register(release_all)
        _held.add(path)
        return path
    raise file_error(path, "could not take the lock (another run keeps taking it)")


def _create(path: Path, text: str) -> None:
    """Create `path` holding `text`, or raise FileExistsError, in one step: the lock is
    written to a temporary and hard-linked into place, so another run never reads it empty.
    (Created empty and then written, a run starting at the same moment read the empty file
    as a torn lock, took it over, and both ran.)"""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some network or FUSE file systems)
            _create_exclusive(path, text)
    finally:
        temporary.unlink(missing_ok=True)


def _create_exclusive(path: Path, text: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    except OSError:  # a full disk: leave no empty lock behind
        path.unlink(missing_ok=True)
        raise


def release(path: Path) -> None:
    """Remove our lock (never one another run took over meanwhile)."""
    _held.discard(path)
    holder = _read(path)
    if holder is not None and holder.get("pid") == os.getpid() and _same_host(holder):
        path.unlink(missing_ok=True)


def release_all() -> None:
    for path in list(_held):
        release(path)


def _take_over_if_stale(path: Path, me: dict[str, object]) -> None:
    holder = _read(path)
    if holder is None:  # torn by a kill between create and write, or not ours: stale
        note = f"{path}: unreadable lock file, taken over"
    elif _same_host(holder) and holder.get("pid") == me["pid"]:
        note = ""  # an earlier run in this process stopped on an error: nothing runs there now
    elif _same_host(holder) and not _alive(holder.get("pid")):
        note = (
            f"{path}: taking over the lock of a run that is gone ({_describe(holder)}); "
            "its unfinished temporary files are removed"
        )
    else:
        raise WsssError(
            f"{path.parent}: in use by another run ({_describe(holder)}); wait for it to "
            f"finish or use another --out (if that run is gone, delete {path})"
        )
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # e.g. a directory of that name
        raise file_error(path, f"cannot remove the stale lock ({exc.strerror})") from None
    if note:
        warn(note)


def _read(path: Path) -> dict[str, object] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    return holder


def _same_host(holder: dict[str, object]) -> bool:
    return holder.get("host") == socket.gethostname()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _describe(holder: dict[str, object]) -> str:
    return (
        f"{holder.get('stage', '?')} pid {holder.get('pid')} on {holder.get('host')} "
        f"since {holder.get('started')}"
    )

"""Atomic writes, JSON manifests and safe path handling.

Every artifact goes through `atomic_write`: the bytes land in a temporary file in the same
directory and are renamed over the target, so a killed run never leaves a half-written file
that a resumed run would mistake for a finished one.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from wsss.errors import WsssError, file_error

MANIFEST_NAME = "manifest.json"
# A full disk or quota, or a read-only file system: the user's to fix, then re-run to resume.
_STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # e.g. a read-only mount, or /proc, where even root cannot write
        raise file_error(path.parent, f"directory is not writable ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs are shared
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRORS:
            raise file_error(path, f"cannot write ({exc.strerror})") from None
        raise


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through `write(handle)` atomically."""
    with atomic_open(path, "wb") as handle:
        write(handle)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_symlink(target: str | Path, link: str | Path) -> Path:
    """Point `link` at `target` (kept as given, e.g. relative), replacing any old link."""
    link = Path(link)
    ensure_dir(link.parent)
    tmp = link.parent / f".{link.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise file_error(link, f"cannot create link ({exc.strerror})") from None
    return link


def write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or truncated file into a one-line user error."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise file_error(
            path,
            f"not valid JSON (truncated or corrupt?): {exc.msg if hasattr(exc, 'msg') else exc}",
        ) from None


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one metrics line; a line is small enough that a single write is all-or-nothing."""
    path = Path(path)
    ensure_dir(path.parent)
    with open(path, "a") as handle:
        handle.write(json.dumps(record, default=_json_default) + "\n")


def ensure_dir(path: str | Path) -> Path:
    """Create a directory, reporting an unwritable location as a user error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(path, f"cannot create directory ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise file_error(path, "directory is not writable")
    return path


def safe_child(root: str | Path, name: str, suffix: str = "") -> Path:
    """Join an id from a list file onto `root`, refusing ids that would escape it."""
    if not name or name != name.strip() or "\x00" in name:
        raise WsssError(f"invalid image id {name!r}")
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise WsssError(f"image id {name!r} points outside {root}; ids must be plain names")
    return Path(root) / f"{name}{suffix}"


def environment_versions() -> dict[str, str]:
    """Versions recorded in every manifest, so a result can be traced to its software."""
    import numpy
    import torch

    import wsss

    versions = {
        "wsss": wsss.__version__,
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "platform": platform.platform(),
    }
    try:
        import torchvision

        versions["torchvision"] = str(torchvision.__version__)
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    return versions


def write_manifest(out_dir: str | Path, stage: str, params: dict[str, Any], **extra: Any) -> Path:
    """Record everything needed to re-run a stage next to its outputs."""
    manifest = {
        "stage": stage,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": params,
        "versions": environment_versions(),
        **extra,
    }
    return write_json(Path(out_dir) / MANIFEST_NAME, manifest)


def read_manifest(out_dir: str | Path, stage: str | None = None) -> dict[str, Any] | None:
    """Read a stage manifest if present; a manifest of another stage is a user error."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict) or "stage" not in manifest:
        raise file_error(path, "not a wsss manifest")
    if stage is not None and manifest["stage"] != stage:
        raise file_error(path, f"manifest of stage '{manifest['stage']}', expected '{stage}'")
    return manifest


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def jsonable(value: Any) -> Any:
    """Plain JSON values (paths as strings), storable in a manifest or weights-only checkpoint."""
    return json.loads(json.dumps(value, default=str))

"""Atomic writes, JSON manifests and safe path handling.

Every artifact goes through `atomic_write`: the bytes land in a temporary file in the same
directory and are renamed over the target, so a killed run never leaves a half-written file
that a resumed run would mistake for a finished one.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import math
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
# Failures of a write the user can fix (a full disk or quota, a file-size limit, a read-only
# file system, a permission, a directory where a file should go): one line, then re-run.
_STORAGE_ERRORS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EFBIG,
        errno.EACCES,
        errno.EPERM,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENAMETOOLONG,
    }
)
# Byte-order marks of the text encodings other tools write (UTF-8 from Windows editors,
# UTF-16 from PowerShell / Notepad's "Unicode"); without one, text must be UTF-8.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_UMASK = os.umask(0)
os.umask(_UMASK)
# The longest file name most file systems take (bytes); a temporary name must fit too.
NAME_MAX = 255
# The output folders this process writes now (absolute, as given): no file is written
# through a symbolic link inside one of them (`claim_output_dir` adds, its release removes).
_OUTPUT_ROOTS: list[Path] = []


def write_error(path: str | Path, exc: OSError) -> WsssError | None:
    """The one-line form of a failed write the user can fix; None for anything else (a bug)."""
    if exc.errno in _STORAGE_ERRORS:
        return file_error(path, f"cannot write ({exc.strerror})")
    return None


def guard_output_dir(out: str | Path) -> None:
    """From now on (until `unguard_output_dir`), no write below `out` goes through a
    symbolic link inside it: a link planted there could point anywhere."""
    _OUTPUT_ROOTS.append(Path(os.path.abspath(out)))


def unguard_output_dir(out: str | Path) -> None:
    root = Path(os.path.abspath(out))
    if root in _OUTPUT_ROOTS:
        _OUTPUT_ROOTS.remove(root)


def check_no_link(path: str | Path, last: bool = False) -> None:
    """Refuse a symbolic link between a guarded output folder and `path` (the folders in
    between; `path` itself too with `last`): one line naming the link."""
    target = Path(os.path.abspath(path))
    for root in _OUTPUT_ROOTS:
        if not target.is_relative_to(root) or target == root:
            continue
        parts = target.relative_to(root).parts
        here = root
        for part in parts if last else parts[:-1]:
            here = here / part
            if here.is_symlink():
                raise link_error(here, root)


def link_error(link: Path, root: Path | None = None) -> WsssError:
    where = f"inside the output folder {root}" if root is not None else "in an output folder"
    return file_error(
        link,
        f"is a symbolic link {where} (to {os.readlink(link) if link.is_symlink() else '?'}); "
        "wsss does not write through links there; remove it",
    )


def temp_prefix(name: str) -> str:
    """`.<name>.` for the temporary file of `name`; a name too long to take the random part
    and `.tmp` as well is replaced by its hash (the file system's limit is per name)."""
    if len(name.encode()) + 20 <= NAME_MAX:
        return f".{name}."
    return f".{hashlib.sha1(name.encode()).hexdigest()}."


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; rename it over `path` only if the block succeeds.

    The temporary file is created exclusively (never through a link) and the rename
    replaces a link at `path` rather than writing where it points; a folder between a
    guarded output folder and `path` that is a link is refused (`check_no_link`)."""
    path = Path(path)
    check_no_link(path)
    ensure_dir(path.parent)
    if path.is_dir() and not path.is_symlink():
        raise file_error(path, "is a directory; give a file path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as exc:  # e.g. a read-only mount, or /proc, where even root cannot write
        raise file_error(path.parent, f"directory is not writable ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        error = write_error(path, exc) if isinstance(exc, OSError) else None
        if error is not None:
            raise error from None
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
    check_no_link(link)
    ensure_dir(link.parent)
    tmp = link.parent / f"{temp_prefix(link.name)}{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise file_error(link, f"cannot create link ({exc.strerror})") from None
    return link


def write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON: an undefined score (NaN) is written as null, which every parser reads."""
    text = json.dumps(_finite(obj), indent=2, allow_nan=False, default=_json_default) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a file another tool may have written: UTF-8 with or without a BOM, or
    UTF-16 with a BOM (the BOM dropped); anything else is a one-line error naming the file
    and where the first bad byte is."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, f"{what} not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise file_error(path, f"cannot read ({exc.strerror})") from None
    bom, codec = next(((b, c) for b, c in _BOMS if data.startswith(b)), (b"", "utf-8"))
    body = data[len(bom) :]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].decode(codec, errors="replace").count("\n") + 1
        raise file_error(
            path,
            f"not {codec.upper()} text: byte 0x{body[exc.start]:02x} at offset "
            f"{len(bom) + exc.start} (line {line}) cannot be decoded; save it as UTF-8",
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise file_error(
            path, f"NUL byte on line {line} (UTF-16 without a byte-order mark?); save it as UTF-8"
        )
    return text


def read_text_lines(path: str | Path, what: str = "file") -> list[str]:
    """`read_text`, split into lines (LF, CRLF or CR)."""
    return read_text(path, what).splitlines()


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or truncated file into a one-line user error."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise file_error(path, f"not valid JSON (truncated or corrupt?): {exc.msg}") from None


def json_field(
    record: Any,
    key: str,
    kind: type | tuple[type, ...],
    source: str | Path,
    required: bool = True,
) -> Any:
    """`record[key]` checked to be of `kind` (a bool is not a number here); a file read back
    with a missing or wrong-typed field is a one-line error naming the file and the field."""
    if not isinstance(record, dict):
        raise file_error(source, f"expected a JSON object, got {type(record).__name__}")
    if key not in record:
        if required:
            raise file_error(source, f"field '{key}' is missing")
        return None
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
        raise file_error(source, f"field '{key}' must be {names}, got {value!r:.60}")
    return value


_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer",
               float: "a number", bool: "true/false"}  # fmt: skip


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one metrics line; a failed write (full disk, file-size limit) is cut back off,
    so the file never ends in a torn line."""
    path = Path(path)
    check_no_link(path)
    ensure_dir(path.parent)
    line = (json.dumps(record, default=_json_default) + "\n").encode()
    try:
        # Never through a link: O_NOFOLLOW fails on one (ELOOP) instead of appending there.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_error(path) from None
        error = write_error(path, exc)
        if error is not None:
            raise error from None
        raise
    try:
        with open(fd, "ab", buffering=0) as handle:  # unbuffered: truncate flushes nothing
            size = handle.tell()
            try:
                written = 0
                while written < len(line):
                    written += handle.write(line[written:]) or 0
                os.fsync(handle.fileno())
            except OSError:
                handle.truncate(size)
                raise
    except OSError as exc:
        error = write_error(path, exc)
        if error is not None:
            raise error from None
        raise


def ensure_dir(path: str | Path) -> Path:
    """Create a directory, reporting an unwritable location as a user error."""
    path = Path(path)
    check_no_link(path, last=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise file_error(path, f"cannot create directory ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise file_error(path, "directory is not writable")
    return path


def safe_child(root: str | Path, name: str, suffix: str = "") -> Path:
    """Join an id from a list file onto `root`, refusing ids that would escape it, and ids
    too long to be a file name (with `suffix`: the longest file a stage makes of an id)."""
    if not name or name != name.strip() or "\x00" in name:
        raise WsssError(f"invalid image id {name!r}")
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise WsssError(f"image id {name!r} points outside {root}; ids must be plain names")
    longest = max(len(part.encode()) for part in Path(f"{name}{suffix}").parts)
    if longest > NAME_MAX:
        raise WsssError(
            f"image id {name[:40]!r}... is too long: its file name {name[-12:]}{suffix} would "
            f"be {longest} bytes, file systems take {NAME_MAX}; shorten the id"
        )
    return Path(root) / f"{name}{suffix}"


def dir_writable(path: str | Path) -> bool:
    """Whether a file can be created in the folder now (a read-only mount, an immutable or
    foreign folder: permission bits alone do not say it, root ignores them)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".wsss-probe.", suffix=".tmp", dir=path)
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


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


_RUNTIME: dict[str, Any] = {}


def note_runtime(runtime: dict[str, Any]) -> None:
    """The device / AMP settings this process resolved (`wsss.engine.device` tells)."""
    _RUNTIME.update(runtime)


def runtime_record() -> dict[str, Any]:
    """The settings besides options and versions that decide a result's bits."""
    import torch

    return {**_RUNTIME, "torch_threads": torch.get_num_threads()}


def write_manifest(out_dir: str | Path, stage: str, params: dict[str, Any], **extra: Any) -> Path:
    """Record everything needed to re-run a stage next to its outputs."""
    manifest = {
        "stage": stage,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": params,
        "versions": environment_versions(),
        "runtime": runtime_record(),
        # Relative paths in `params` (a `--data data/mine`) are relative to this: a reader
        # started elsewhere (`wsss report`) resolves them against it.
        "cwd": os.getcwd(),
        # Where the folder was when written: a folder moved with its inputs since resumes.
        "out": str(Path(out_dir).resolve()),
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
    json_field(manifest, "stage", str, path)
    json_field(manifest, "params", dict, path)
    json_field(manifest, "complete", bool, path, required=False)
    json_field(manifest, "files", int, path, required=False)
    if stage is not None and manifest["stage"] != stage:
        raise file_error(path, f"manifest of stage '{manifest['stage']}', expected '{stage}'")
    return manifest


def _finite(obj: Any) -> Any:
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        obj = obj.tolist()  # numpy scalars and arrays as plain values, to check them too
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(value) for value in obj]
    return obj


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

"""The CAM file: one file per image, interchangeable with the IRN / Puzzle-CAM tools.

The reference format is an `.npy` holding a pickled dict, so reading a file from someone
else with `np.load(allow_pickle=True)` could run arbitrary code. Files are read here with a
restricted unpickler that only rebuilds numpy arrays, plain containers and (for files the
reference tools wrote) torch tensors through `torch.load(weights_only=True)`; anything else
is refused before it runs. A pickle-free `.npz` form is offered as well. The schema and the
two key conventions are documented in docs/cam_format.md.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from wsss.cam_math import CAM_STRIDE, strided_size
from wsss.errors import WsssError, file_error
from wsss.io import MANIFEST_NAME, atomic_open, json_field, read_manifest, safe_child
from wsss.resume import check_made_for

CamFormat = Literal["npy", "npz"]
SUFFIXES: dict[str, str] = {"npy": ".npy", "npz": ".npz"}
# `wsss eval-cam` records its threshold sweep here, in the CAM folder; make-pseudo reads it.
EVAL_CAM_RECORD = "eval_cam.json"
# Rounding of a map divided by its maximum (float16 storage, resizing) stays within this.
VALUE_TOLERANCE = 1e-3
# Stages whose outputs are CAM files: plain CAMs and random-walk-refined ones.
CAM_STAGES = ("make-cam", "make-rw")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class CamRecord:
    """CAMs of one image in memory.

    `keys` always holds the background first: `[0, c1 + 1, c2 + 1, ...]` (K + 1 entries,
    label values), `cam` is K x ceil(H/4) x ceil(W/4) and `hr_cam` K x H x W, float32.
    """

    keys: np.ndarray
    cam: np.ndarray
    hr_cam: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """Label values of the K class maps (without the background entry)."""
        return self.keys[1:]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the image."""
        return int(self.hr_cam.shape[1]), int(self.hr_cam.shape[2])


def cam_suffix(fmt: CamFormat) -> str:
    if fmt not in SUFFIXES:
        raise WsssError(f"--format must be one of {', '.join(SUFFIXES)}, got {fmt!r}")
    return SUFFIXES[fmt]


# -- writing --------------------------------------------------------------------------------


def save_cam_file(path: str | Path, record: CamRecord, fmt: CamFormat | None = None) -> Path:
    """Write atomically; the format follows `fmt` or the file's suffix."""
    path = Path(path)
    fmt = fmt or ("npz" if path.suffix == ".npz" else "npy")
    arrays = {
        "keys": np.asarray(record.keys, dtype=np.int64),
        "cam": np.ascontiguousarray(record.cam, dtype=np.float32),
        "hr_cam": np.ascontiguousarray(record.hr_cam, dtype=np.float32),
    }
    with atomic_open(path, "wb") as handle:
        if fmt == "npz":
            np.savez(handle, **arrays)
        else:
            np.save(handle, arrays, allow_pickle=True)
    return path


# -- reading --------------------------------------------------------------------------------


def find_cam_file(cam_dir: str | Path, image_id: str) -> Path:
    """The CAM file of an id in either format; a missing one is a one-line error, and so are
    two (`x.npy` and `x.npz`: which one is meant?)."""
    found = [p for s in SUFFIXES.values() if (p := safe_child(cam_dir, image_id, s)).is_file()]
    if len(found) > 1:
        raise file_error(
            found[0],
            f"and {found[1].name} both hold CAMs of '{image_id}'; keep one (remove the other "
            "format's files, or make the CAMs into an empty folder)",
        )
    if found:
        return found[0]
    raise file_error(
        safe_child(cam_dir, image_id, SUFFIXES["npy"]),
        f"CAM file of list entry '{image_id}' not found",
    )


def load_cam_file(
    path: str | Path,
    num_classes: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> CamRecord:
    """Read and validate a CAM file of either format and either key convention.

    `num_classes` (C, foreground) rejects keys of classes the dataset lacks; `image_size`
    (height, width) rejects CAMs of another image. Every problem is a one-line error.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "CAM file not found")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(_NPY_MAGIC))
            handle.seek(0)
            if magic.startswith(_ZIP_MAGIC):
                content = _read_npz(handle)
            elif magic == _NPY_MAGIC:
                content = _read_npy(handle, path)
            else:
                raise file_error(path, "not a CAM file (neither .npy nor .npz)")
    except WsssError:
        raise
    except Exception as exc:  # EOFError, UnpicklingError, BadZipFile, ...: all mean a bad file
        reason = _first_line(exc)
        raise file_error(path, f"unreadable CAM file (truncated or corrupt?): {reason}") from None
    return _to_record(content, path, num_classes, image_size)


def _read_npz(handle: BinaryIO) -> dict[str, Any]:
    with np.load(handle, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _read_npy(handle: BinaryIO, path: Path) -> dict[str, Any]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise file_error(path, f"unsupported .npy format version {version}")
    if dtype != np.dtype(object) or shape != ():
        raise file_error(
            path, f"not a CAM file: holds a {dtype} array of shape {shape}, not a dict"
        )
    loaded = _RestrictedUnpickler(handle, path).load()
    content = loaded.item() if isinstance(loaded, np.ndarray) and loaded.shape == () else loaded
    if not isinstance(content, dict):
        raise file_error(path, f"not a CAM file: holds a {type(content).__name__}, not a dict")
    return content


def _to_record(
    content: dict[str, Any],
    path: Path,
    num_classes: int | None,
    image_size: tuple[int, int] | None,
) -> CamRecord:
    missing = [name for name in ("keys", "cam") if name not in content]
    hr_name = "hr_cam" if "hr_cam" in content else "high_res"  # IRN calls it "high_res"
    if hr_name not in content:
        missing.append("hr_cam")
    if missing:
        raise file_error(path, f"not a CAM file: missing {', '.join(missing)}")
    cam = _float_maps(content["cam"], "cam", path)
    hr_cam = _float_maps(content[hr_name], "hr_cam", path)
    count = hr_cam.shape[0]
    if cam.shape[0] != count:
        raise file_error(path, f"'cam' has {cam.shape[0]} maps but 'hr_cam' has {count}")
    if cam.shape[1:] != strided_size(*hr_cam.shape[1:]):
        raise file_error(
            path,
            f"'cam' size {cam.shape[1:]} is not ceil(hr_cam size / {CAM_STRIDE}) "
            f"{strided_size(*hr_cam.shape[1:])}",
        )
    if image_size is not None and tuple(hr_cam.shape[1:]) != tuple(image_size):
        raise file_error(
            path, f"CAM size {hr_cam.shape[1:]} differs from its image {tuple(image_size)}"
        )
    keys = _normalise_keys(content["keys"], count, path)
    if num_classes is not None and keys.size and keys.max() > num_classes:
        bad = sorted({int(k) for k in keys if k > num_classes})
        raise file_error(
            path,
            f"keys {bad} are outside the dataset's classes 1..{num_classes} "
            "(CAM file from a different model/dataset?)",
        )
    return CamRecord(keys=keys, cam=cam, hr_cam=hr_cam)


def _normalise_keys(raw: Any, count: int, path: Path) -> np.ndarray:
    """Keys with background first (Puzzle-CAM) from either convention.

    Puzzle-CAM writes K + 1 label values starting with 0; IRN writes the K 0-based class
    indices. The length against the number of maps tells them apart.
    """
    keys = _as_numpy(raw)
    if keys.ndim != 1 or (keys.size and not np.issubdtype(keys.dtype, np.integer)):
        raise file_error(path, f"'keys' must be a 1-D integer array, got {keys.dtype} {keys.shape}")
    keys = keys.astype(np.int64)
    if keys.size == count + 1 and keys[0] == 0:
        labelled = keys[1:]
    elif keys.size == count:
        labelled = keys + 1
    else:
        raise file_error(
            path,
            f"'keys' has {keys.size} entries for {count} maps "
            f"(expected {count}, or {count + 1} starting with 0)",
        )
    if labelled.size and labelled.min() < 1:
        raise file_error(path, f"'keys' holds label value {int(labelled.min())} for a class map")
    if np.unique(labelled).size != labelled.size:
        raise file_error(path, "'keys' repeats a class")
    return np.concatenate([[0], labelled]).astype(np.int64)


def _float_maps(raw: Any, name: str, path: Path) -> np.ndarray:
    maps = _as_numpy(raw)
    if maps.ndim != 3 or not np.issubdtype(maps.dtype, np.floating):
        raise file_error(
            path, f"'{name}' must be a float array K x H x W, got {maps.dtype} {maps.shape}"
        )
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if not np.isfinite(maps).all():
        raise file_error(path, f"'{name}' holds NaN or infinite values")
    if maps.size and (maps.min() < -VALUE_TOLERANCE or maps.max() > 1.0 + VALUE_TOLERANCE):
        raise file_error(
            path,
            f"'{name}' values span [{maps.min():.4g}, {maps.max():.4g}]; CAMs must be in [0, 1] "
            "(each map divided by its maximum)",
        )
    return np.clip(maps, 0.0, 1.0, out=maps)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor (reference files)
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# -- the restricted unpickler -----------------------------------------------------------------


def _numpy_multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return _numpy_multiarray()._reconstruct(subtype, shape, dtype)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as used by protocol-2 pickles of bytes, and nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("only latin1 byte strings are allowed")
    return text.encode("latin1")


def _torch_storage(data: bytes) -> Any:
    """A tensor storage saved by torch, read with torch's own safe (weights-only) loader."""
    import torch

    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("tensor storage must be bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _torch_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> Any:
    """A tensor view of a storage; hooks and metadata in the pickle are ignored."""
    import torch

    if not isinstance(storage, torch.storage.TypedStorage | torch.storage.UntypedStorage):
        raise pickle.UnpicklingError("tensor without a storage")
    from torch._utils import _rebuild_tensor

    return _rebuild_tensor(storage, int(offset), tuple(size), tuple(stride)).detach()


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor_v2"): _torch_tensor,
    ("torch.storage", "_load_from_bytes"): _torch_storage,
}
_MULTIARRAY_MODULES = ("numpy._core.multiarray", "numpy.core.multiarray")


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, numpy scalars, plain containers and torch tensors only."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        super().__init__(handle)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if module in _MULTIARRAY_MODULES and name == "_reconstruct":
            return _reconstruct
        if module in _MULTIARRAY_MODULES and name == "scalar":
            return _numpy_multiarray().scalar
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise file_error(
                self.path,
                f"refused to load: the file asks for '{module}.{name}', which a CAM file never "
                "needs (only numpy arrays and plain containers are allowed)",
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise file_error(self.path, "refused to load: the file uses persistent ids")


def cam_folder_params(cam_dir: Path, classes: tuple[str, ...] | None) -> dict[str, Any]:
    """The settings a CAM folder was made with (its manifest's params; {} for files of other
    tools). A folder of another stage, or made for another class list than `classes`, is a
    one-line error: its maps would be scored or labelled under the wrong names."""
    manifest = read_manifest(cam_dir)
    if manifest is None:
        return {}
    path = cam_dir / MANIFEST_NAME
    if manifest["stage"] not in CAM_STAGES:
        raise file_error(
            path,
            f"manifest of stage '{manifest['stage']}', expected one of {', '.join(CAM_STAGES)}",
        )
    params = manifest["params"]
    json_field(params, "split", str, path, required=False)
    check_made_for(path, params, classes, "CAMs")
    return params

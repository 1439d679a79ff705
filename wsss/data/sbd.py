"""SBD (Hariharan et al.) class masks: `cls/<id>.mat`, MATLAB struct `GTcls.Segmentation`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from wsss.errors import file_error


def read_sbd_mask(path: str | Path) -> np.ndarray:
    """uint8 class-index mask (same 1..20 order as VOC, no 255 borders)."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "SBD .mat file not found")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError...
        raise file_error(path, f"unreadable .mat file ({exc})") from None
    struct = mat.get("GTcls")
    segmentation = getattr(struct, "Segmentation", None)
    if segmentation is None:
        raise file_error(path, "no GTcls.Segmentation field (is this an SBD cls/ file?)")
    mask = np.asarray(segmentation)
    if mask.ndim != 2:
        raise file_error(path, f"GTcls.Segmentation has shape {mask.shape}, expected 2-D")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise file_error(path, "GTcls.Segmentation values outside 0..255")
    return mask.astype(np.uint8)


def sbd_ids(sbd_root: str | Path, split: str) -> list[str]:
    """Ids of SBD's `train.txt` or `val.txt`."""
    from wsss.data.voc import read_id_list

    return read_id_list(Path(sbd_root) / f"{split}.txt")

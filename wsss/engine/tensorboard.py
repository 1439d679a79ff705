"""TensorBoard event files of a run (`--tensorboard DIR`), through torch's SummaryWriter.

Only rank 0 writes. Tags: `train/<term>` (each term's mean since the last read, and the lr)
at the optimiser step reached, `epoch/<term>` and `eval/<name>` once an epoch, the preview
images of an evaluation as `eval/<name>`; the pipeline adds its figures (`pipeline/<key>`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from wsss.errors import WsssError

MISSING = "--tensorboard needs the tensorboard package: pip install 'wsss[tensorboard]'"


def require_tensorboard() -> None:
    """The optional package is installed, or one line naming the extra (checked with the
    options, before any work; torch-free, for the configs)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise WsssError(MISSING)


def tag(*parts: str) -> str:
    """A tag TensorBoard shows as written: names such as 'val CAM mIoU' with '_' for blanks."""
    return "/".join(re.sub(r"[^A-Za-z0-9_.\-]+", "_", part.strip()) for part in parts)


class TensorBoardLog:
    """One run's event files. `purge_step`: a resumed run's first step; TensorBoard drops the
    events a killed run wrote from there on (after its checkpoint), so a resumed curve has no
    doubled stretch."""

    def __init__(self, directory: str | Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise WsssError(MISSING) from None
        self.writer = SummaryWriter(str(directory), purge_step=purge_step)

    def scalars(self, group: str, values: dict[str, Any], step: int) -> None:
        """The finite numbers among `values` (others, such as names, are left out)."""
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(tag(group, key), float(value), step)

    def images(self, group: str, images: dict[str, np.ndarray], step: int) -> None:
        """H x W x 3 uint8 pictures, one tag each."""
        for key, image in images.items():
            self.writer.add_image(tag(group, key), image, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

"""Label maps as palette PNGs with the VOC colour map.

Pseudo labels, predictions and demo ground truth are all written here, so they look right
in any image viewer (index PNGs without a palette "come out black").
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.data.imagefile import read_label_array
from wsss.io import atomic_write

IGNORE = 255


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard VOC "bitget" colour map: uint8 array of shape (n, 3)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


VOC_PALETTE: list[int] = voc_colormap().flatten().tolist()


def label_to_image(label: np.ndarray) -> Image.Image:
    """uint8 label map -> mode "P" image carrying the VOC palette."""
    if label.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {label.shape}")
    image = Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="P")
    image.putpalette(VOC_PALETTE)
    return image


def save_label_png(path: str | Path, label: np.ndarray) -> Path:
    """Write a label map as a palette PNG, atomically."""
    image = label_to_image(label)

    def write(handle) -> None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        handle.write(buffer.getvalue())

    return atomic_write(path, write)


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a palette or greyscale label PNG as uint8 indices (palette indices, not colours)."""
    return read_label_array(path)


def colorize(label: np.ndarray) -> np.ndarray:
    """Label map -> RGB uint8 array, for overlays and README pictures."""
    return voc_colormap()[label]

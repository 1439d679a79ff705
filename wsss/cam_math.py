"""The CAM grid and normaliser, shared by models, losses, inference and the CAM file.

No torch import: the CAM file module reads the grid from here, and make-pseudo's CRF
worker processes load that module (torch would add ~1.5 s to each worker's start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

# CAMs are stored at 1/4 of the image size, as the IRN / Puzzle-CAM tools store them.
CAM_STRIDE = 4


def strided_size(height: int, width: int, stride: int = CAM_STRIDE) -> tuple[int, int]:
    """ceil(H / stride) x ceil(W / stride), the size rule of the reference tools."""
    return (height + stride - 1) // stride, (width + stride - 1) // stride


def normalize_cams(maps: Tensor, eps: float = 1e-5) -> Tensor:
    """ReLU(A) / (spatial max + eps) per map: every class peaks at ~1, whatever its raw scale.

    Works on any leading shape (C x H x W, B x C x H x W); an all-negative map becomes 0.
    """
    cams = maps.relu()
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)

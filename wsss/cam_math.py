"""The CAM grid and normaliser, shared by models, losses, inference and the CAM file."""

from __future__ import annotations

import torch.nn.functional as F
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
    cams = F.relu(maps)
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)

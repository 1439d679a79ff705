"""The one CAM normaliser, shared by the puzzle "cam"-level loss and CAM inference."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def normalize_cams(maps: Tensor, eps: float = 1e-5) -> Tensor:
    """ReLU(A) / (spatial max + eps) per map: every class peaks at ~1, whatever its raw scale.

    Works on any leading shape (C x H x W, B x C x H x W); an all-negative map becomes 0.
    """
    cams = F.relu(maps)
    return cams / (cams.amax(dim=(-2, -1), keepdim=True) + eps)

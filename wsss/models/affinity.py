"""The affinity network (IRN's boundary branch, Puzzle-CAM's AffinityNet).

Every backbone stage goes through a 1x1 conv + GroupNorm + ReLU, is resized to the stride-4
grid of `stage1` and concatenated; a last 1x1 conv gives one boundary logit per pixel. The
affinity of two pixels is 1 - the strongest boundary between them (`wsss.affinity`), so
this module only produces the boundary map.

Stride 4, like IRN's edge branch: the grid is exactly the one of the `cam` array in CAM
files (ceil(H/4) x ceil(W/4)), so the random walk needs no resampling of the CAMs. As in the
reference, the backbone is frozen by default (weights and BatchNorm statistics): only the
head learns, from labels that are themselves only as good as the CAMs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss.cam_math import CAM_STRIDE, strided_size
from wsss.models import (
    CheckpointModel,
    freeze_batchnorm,
    init_new_layers,
)
from wsss.models.backbone import STAGES, build_backbone


def _level(in_channels: int, out_channels: int) -> nn.Sequential:
    # GroupNorm, as IRN: statistics of one image, whatever the batch size.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.GroupNorm(4, out_channels),
        nn.ReLU(inplace=True),
    )


class AffinityNet(CheckpointModel):
    """Boundary logits B x 1 x ceil(H/4) x ceil(W/4) of a batch of images."""

    KIND = "affinity"
    NAME = "affinity net"
    ADDED_KEYS = ("dilate",)

    stride = CAM_STRIDE

    def __init__(
        self,
        backbone: str,
        output_stride: int = 16,
        pretrained: str = "none",
        freeze_backbone: bool = True,
        level_channels: int = 32,
        dilate: bool = True,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        # A frozen backbone keeps fixed BatchNorm statistics while the head trains.
        self.freeze_backbone = self.holds_backbone_batchnorm = freeze_backbone
        self.level_channels = level_channels
        self.backbone = build_backbone(backbone, output_stride, pretrained, dilate)
        channels = self.backbone.channels
        self.levels = nn.ModuleList(_level(channels[stage], level_channels) for stage in STAGES)
        self.boundary = nn.Conv2d(len(STAGES) * level_channels, 1, 1)
        init_new_layers(self.new_modules())
        if freeze_backbone:
            for param in self.backbone.parameters():
                param.requires_grad_(False)
            freeze_batchnorm(self.backbone)
        self.train()

    def new_modules(self) -> list[nn.Module]:
        return [self.levels, self.boundary]

    def forward(self, x: Tensor) -> Tensor:
        size = strided_size(int(x.shape[-2]), int(x.shape[-1]), self.stride)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            features = self.backbone(x)
        levels = [
            F.interpolate(level(features[stage]), size=size, mode="bilinear", align_corners=False)
            for stage, level in zip(STAGES, self.levels, strict=True)
        ]
        return self.boundary(torch.cat(levels, dim=1))

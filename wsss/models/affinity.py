"""The affinity network (IRN's boundary branch, Puzzle-CAM's AffinityNet).

Every backbone stage goes through a 1x1 conv + GroupNorm + ReLU, is resized to the stride-4
grid of `stage1` and concatenated; a last 1x1 conv gives one boundary logit per pixel. The
affinity of two pixels is 1 - the strongest boundary between them (`wsss.affinity`), so
this module only produces the boundary map.

Two heads (`head`, train-aff `--aff-head`; docs/parity.md row 7):
- "wsss": the four stages, each conv + GroupNorm + ReLU, then resized to the stride-4 grid;
- "reference": the official Puzzle-CAM code's head: a fifth branch on the backbone's stem,
  each branch conv + GroupNorm, then upsampled by its stride / 4 (bilinear, by the factor,
  not to a size) and cropped to the stride-4 grid, the ReLU after the upsampling. Its boundary
  map is computed on the image zero-padded to `REFERENCE_EDGE_INPUT` (`edge_input`), as the
  reference's `get_edge` does: GroupNorm's statistics then include the padding.

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
from wsss.errors import WsssError
from wsss.models import (
    CheckpointModel,
    freeze_batchnorm,
    init_new_layers,
)
from wsss.models.backbone import STAGES, STEM, build_backbone

HEADS = ("wsss", "reference")
# The reference's get_edge pads every image to 512 x 512 (VOC's long side is 500).
REFERENCE_EDGE_INPUT = 512


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
    ADDED_KEYS = ("dilate", "head")

    stride = CAM_STRIDE

    def __init__(
        self,
        backbone: str,
        output_stride: int = 16,
        pretrained: str = "none",
        freeze_backbone: bool = True,
        level_channels: int = 32,
        dilate: bool = True,
        head: str = "wsss",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise WsssError(f"affinity head must be one of {'|'.join(HEADS)}, got '{head}'")
        self.backbone_name, self.head = backbone, head
        # A frozen backbone keeps fixed BatchNorm statistics while the head trains.
        self.freeze_backbone = self.holds_backbone_batchnorm = freeze_backbone
        self.level_channels = level_channels
        self.backbone = build_backbone(backbone, output_stride, pretrained, dilate)
        channels = self.backbone.channels
        self.levels = nn.ModuleList(_level(channels[stage], level_channels) for stage in STAGES)
        branches = len(STAGES)
        if head == "reference":
            if STEM not in channels:
                raise WsssError(
                    f"affinity head 'reference' has a branch on the backbone's stem: it needs a "
                    f"torchvision ResNet, not '{backbone}'"
                )
            self.stem = _level(channels[STEM], level_channels)
            branches += 1
            # stage1 is at stride 4; stage2 at 8; stage3 and stage4 at up to the output stride
            strides = (4, 8, min(16, output_stride), output_stride)
            self.upsampling = tuple(stride // self.stride for stride in strides)
        self.boundary = nn.Conv2d(branches * level_channels, 1, 1)
        init_new_layers(self.new_modules())
        if freeze_backbone:
            for param in self.backbone.parameters():
                param.requires_grad_(False)
            freeze_batchnorm(self.backbone)
        self.train()

    def new_modules(self) -> list[nn.Module]:
        stem = [self.stem] if self.head == "reference" else []
        return [*stem, self.levels, self.boundary]

    @property
    def edge_input(self) -> int | None:
        """The size the image is zero-padded to (right and bottom) for its boundary map at
        inference (make-rw); None: the image as it is."""
        return REFERENCE_EDGE_INPUT if self.head == "reference" else None

    def forward(self, x: Tensor) -> Tensor:
        size = strided_size(int(x.shape[-2]), int(x.shape[-1]), self.stride)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            features = self.backbone(x)
        if self.head == "reference":
            return self.boundary(torch.cat(self._reference_levels(features, size), dim=1))
        levels = [
            F.interpolate(level(features[stage]), size=size, mode="bilinear", align_corners=False)
            for stage, level in zip(STAGES, self.levels, strict=True)
        ]
        return self.boundary(torch.cat(levels, dim=1))

    def _reference_levels(self, features: dict[str, Tensor], size: tuple[int, int]) -> list:
        """The stem's branch and the stages', in the reference's order of operations."""
        levels = [self.stem(features[STEM])]
        for stage, level, factor in zip(STAGES, self.levels, self.upsampling, strict=True):
            x = level[:2](features[stage])  # conv, GroupNorm; the ReLU comes after the resize
            if factor > 1:
                # by the factor, then cropped: sampling positions differ from a resize to `size`
                x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
            levels.append(level[2](x[..., : size[0], : size[1]]))
        return levels

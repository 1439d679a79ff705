"""DeepLabv3+: ASPP on the last stage, a light decoder fed by stage1 features.

Two settings of the head follow the official Puzzle-CAM code when asked (issue #25 row 8):
`align_corners=True` for the decoder's and the final bilinear resize, and `head_norm="gn"`,
GroupNorm with 4 groups instead of BatchNorm in every normalisation of the ASPP and the
decoder (the reference's default head). The parameter names are the same either way; a
GroupNorm head has no running statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from wsss.errors import WsssError
from wsss.models import CheckpointModel, init_new_layers
from wsss.models.backbone import build_backbone

HEAD_NORMS = ("bn", "gn")
GROUPS = 4  # GroupNorm's groups in the "gn" head, as the reference's


def _norm(channels: int, head_norm: str) -> nn.Module:
    return nn.GroupNorm(GROUPS, channels) if head_norm == "gn" else nn.BatchNorm2d(channels)


def _conv_bn_relu(
    in_channels: int, out_channels: int, kernel: int, head_norm: str = "bn"
) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        _norm(out_channels, head_norm),
        nn.ReLU(inplace=True),
    ]


def _to_group_norm(module: nn.Module) -> None:
    """Every BatchNorm2d below `module` replaced by GroupNorm, under the same name."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _norm(child.num_features, "gn"))
        else:
            _to_group_norm(child)


class DeepLabV3Plus(CheckpointModel):
    """Logits B x num_classes x H x W at the input size; `num_classes` counts background.

    `aspp_rates` are given for output stride 16 and doubled at output stride 8, so the
    ASPP covers the same image area either way. In training mode the BatchNorm head's ASPP
    image-pooling branch normalises over a 1x1 map and so needs more than one image per batch
    (the GroupNorm head does not).
    """

    KIND = "deeplab"
    NAME = "DeepLabv3+"
    ADDED_KEYS = ("dilate", "align_corners", "head_norm")

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        output_stride: int = 16,
        pretrained: str = "none",
        aspp_rates: Sequence[int] = (6, 12, 18),
        dilate: bool = True,
        align_corners: bool = False,
        head_norm: str = "bn",
    ) -> None:
        super().__init__()
        if head_norm not in HEAD_NORMS:
            raise WsssError(f"head norm must be one of {'|'.join(HEAD_NORMS)}, got '{head_norm}'")
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.aspp_rates = tuple(int(rate) for rate in aspp_rates)
        self.align_corners = align_corners
        self.backbone = build_backbone(backbone, output_stride, pretrained, dilate)
        channels = self.backbone.channels
        scale = 16 // self.backbone.output_stride
        self.aspp = ASPP(channels["stage4"], [rate * scale for rate in self.aspp_rates], 256)
        if head_norm == "gn":
            _to_group_norm(self.aspp)
        self.low_level = nn.Sequential(*_conv_bn_relu(channels["stage1"], 48, 1, head_norm))
        self.decoder = nn.Sequential(
            *_conv_bn_relu(256 + 48, 256, 3, head_norm),
            nn.Dropout(0.5),
            *_conv_bn_relu(256, 256, 3, head_norm),
            nn.Dropout(0.1),
        )
        self.classifier = nn.Conv2d(256, num_classes, 1)
        init_new_layers(self.new_modules())

    def new_modules(self) -> list[nn.Module]:
        return [self.aspp, self.low_level, self.decoder, self.classifier]

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)
        low = self.low_level(features["stage1"])
        high = self.aspp(features["stage4"])
        corners = self.align_corners
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=corners)
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=corners)

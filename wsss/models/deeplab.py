"""DeepLabv3+: ASPP on the last stage, a light decoder fed by stage1 features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from wsss.models import CheckpointModel, init_new_layers
from wsss.models.backbone import build_backbone


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DeepLabV3Plus(CheckpointModel):
    """Logits B x num_classes x H x W at the input size; `num_classes` counts background.

    `aspp_rates` are given for output stride 16 and doubled at output stride 8, so the
    ASPP covers the same image area either way. In training mode the ASPP image-pooling
    branch has BatchNorm over a 1x1 map and so needs more than one image per batch.
    """

    KIND = "deeplab"
    NAME = "DeepLabv3+"

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        output_stride: int = 16,
        pretrained: str = "none",
        aspp_rates: Sequence[int] = (6, 12, 18),
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.aspp_rates = tuple(int(rate) for rate in aspp_rates)
        self.backbone = build_backbone(backbone, output_stride, pretrained)
        channels = self.backbone.channels
        scale = 16 // self.backbone.output_stride
        self.aspp = ASPP(channels["stage4"], [rate * scale for rate in self.aspp_rates], 256)
        self.low_level = nn.Sequential(*_conv_bn_relu(channels["stage1"], 48, 1))
        self.decoder = nn.Sequential(
            *_conv_bn_relu(256 + 48, 256, 3),
            nn.Dropout(0.5),
            *_conv_bn_relu(256, 256, 3),
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
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

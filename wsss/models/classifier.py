"""The CAM classifier (SPEC 2): backbone, then a bias-free 1x1 conv giving class maps.

The class maps come out BEFORE pooling, so the same forward serves training (pool them
into logits), the puzzle losses (compare them) and CAM inference (normalise them).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from wsss.models import (
    ParamGroup,
    config_kwargs,
    freeze_batchnorm,
    hold_batchnorm_eval,
    init_new_layers,
    split_param_groups,
)
from wsss.models.backbone import build_backbone

_CONFIG_KEYS = ("backbone", "num_classes", "output_stride", "freeze_bn")


class CamClassifier(nn.Module):
    """Class maps A = W * F(x), shape B x C x ceil(H / output_stride) x ceil(W / output_stride)."""

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        output_stride: int = 16,
        pretrained: str = "none",
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.freeze_bn = freeze_bn
        self.backbone = build_backbone(backbone, output_stride, pretrained)
        self.classifier = nn.Conv2d(self.backbone.channels["stage4"], num_classes, 1, bias=False)
        init_new_layers([self.classifier])
        if freeze_bn:
            freeze_batchnorm(self.backbone)
        self.train()

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x)["stage4"])

    @staticmethod
    def logits(class_maps: Tensor) -> Tensor:
        """GAP of the class maps; equal to the 1x1 conv of pooled features (both are linear)."""
        return class_maps.mean(dim=(2, 3))

    def train(self, mode: bool = True) -> CamClassifier:
        """With `freeze_bn`, backbone BatchNorm stays in eval mode whatever the model mode."""
        super().train(mode)
        if self.freeze_bn:
            hold_batchnorm_eval(self.backbone)
        return self

    def param_groups(self) -> list[ParamGroup]:
        return split_param_groups([self.backbone], [self.classifier])

    def config(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone_name,
            "num_classes": self.num_classes,
            "output_stride": self.backbone.output_stride,
            "freeze_bn": self.freeze_bn,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CamClassifier:
        """Rebuild the architecture for loading a checkpoint (weights come from the checkpoint)."""
        return cls(**config_kwargs("CAM classifier", config, _CONFIG_KEYS), pretrained="none")

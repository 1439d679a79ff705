"""The CAM classifier: backbone, then a bias-free 1x1 conv giving class maps.

The class maps come out BEFORE pooling, so the same forward serves training (pool them
into logits), the puzzle losses (compare them) and CAM inference (normalise them).
"""

from __future__ import annotations

from torch import Tensor, nn

from wsss.models import (
    CheckpointModel,
    freeze_batchnorm,
    init_new_layers,
)
from wsss.models.backbone import build_backbone


class CamClassifier(CheckpointModel):
    """Class maps A = W * F(x), shape B x C x ceil(H / output_stride) x ceil(W / output_stride)."""

    KIND = "cam_classifier"
    NAME = "CAM classifier"
    ADDED_KEYS = ("dilate",)

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        output_stride: int = 16,
        pretrained: str = "none",
        freeze_bn: bool = False,
        dilate: bool = True,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.freeze_bn = self.holds_backbone_batchnorm = freeze_bn
        self.backbone = build_backbone(backbone, output_stride, pretrained, dilate)
        self.classifier = nn.Conv2d(self.backbone.channels["stage4"], num_classes, 1, bias=False)
        init_new_layers(self.new_modules())
        if freeze_bn:
            freeze_batchnorm(self.backbone)
        self.train()

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x)["stage4"])

    @staticmethod
    def logits(class_maps: Tensor) -> Tensor:
        """GAP of the class maps; equal to the 1x1 conv of pooled features (both are linear)."""
        return class_maps.mean(dim=(2, 3))

    def new_modules(self) -> list[nn.Module]:
        return [self.classifier]

"""`wsss train-aff`: the affinity net learned from confident-region labels.

The labels come from `wsss make-pseudo --confident` (foreground under a high threshold,
background under a low one, 255 in between). Pairs of nearby pixels within `radius` on the
stride-4 grid are positive (same label), negative (different labels) or ignored (touching
255), and the loss balances bg-bg, fg-fg and negative pairs (`wsss.affinity`). The engine
is the one of train-cam and train-seg: AMP/DDP on CUDA, exact resume, JSONL metrics.

Defaults follow IRN / Puzzle-CAM: 3 epochs, SGD at lr 0.1 for the new layers (base lr
0.01 x the new-layer multiplier 10), crops of 512 after a random long side of 320..640,
a frozen backbone. Without ImageNet weights, `init` takes the backbone of a trained
train-cam checkpoint, which knows the data better than random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from wsss.affinity import (
    affinity_loss,
    labels_at_stride,
    pair_affinities,
    pair_labels,
    pair_offsets,
)
from wsss.checkpoints import load_cam_backbone
from wsss.data.datasets import SegmentationDataset
from wsss.data.transforms import AugmentConfig, TrainTransform
from wsss.engine.device import set_seed
from wsss.engine.options import TrainOptions
from wsss.engine.trainer import LAST, EpochEnd, FitResult, TrainTask, fit
from wsss.errors import WsssError, file_error
from wsss.models.affinity import AffinityNet

STAGE = "train-aff"

TrainAffResult = FitResult


@dataclass(kw_only=True)
class TrainAffConfig(TrainOptions):
    """train-aff options; `labels` is the confident-label directory (255 = ignore)."""

    labels: Path
    radius: int = 5
    freeze_backbone: bool = True
    init: Path | None = None
    epochs: int = 3
    lr: float = 0.01

    def validate(self) -> None:
        super().validate()
        if not Path(self.labels).is_dir():
            raise file_error(self.labels, "--labels directory not found")
        pair_offsets(self.radius)
        if self.crop < 2 * self.radius * AffinityNet.stride:
            raise WsssError(
                f"--crop {self.crop} is too small for --radius {self.radius} "
                f"(pairs span up to {self.radius * AffinityNet.stride} pixels)"
            )
        if self.init is not None and not Path(self.init).is_file():
            raise file_error(self.init, "--init checkpoint not found")


class AffinityObjective(nn.Module):
    """The balanced pair loss of one batch, as one module for DDP to wrap."""

    def __init__(self, model: AffinityNet, radius: int) -> None:
        super().__init__()
        self.model = model
        self.offsets = pair_offsets(radius)

    def forward(self, batch: dict[str, torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        boundary = torch.sigmoid(self.model(batch["image"])[:, 0].float())
        labels = labels_at_stride(batch["mask"], tuple(boundary.shape[-2:]), self.model.stride)
        affinities = pair_affinities(boundary, self.offsets)
        return affinity_loss(affinities, pair_labels(labels, self.offsets))


def run(
    config: TrainAffConfig, on_epoch_end: Callable[[EpochEnd], None] | None = None
) -> TrainAffResult:
    """Train (or resume) the affinity net; writes last.pt, final.pt, metrics and a summary."""
    voc, ids = config.open_split()
    augment = AugmentConfig(crop=config.crop, scale_range=config.scale_range, mode="long-side")
    dataset = SegmentationDataset(voc, ids, TrainTransform(augment), config.labels, config.seed)

    set_seed(config.seed)
    resuming = config.resume and (Path(config.out) / LAST).is_file()
    pretrained = "none" if resuming or config.init else config.pretrained
    model = AffinityNet(
        config.backbone, config.output_stride, pretrained, freeze_backbone=config.freeze_backbone
    )
    if config.init is not None and not resuming:
        load_cam_backbone(model, Path(config.init), voc.classes)
    task = TrainTask.of(model, AffinityObjective(model, config.radius), dataset, voc.classes)
    return fit(task, config.loop_config(STAGE), on_epoch_end)

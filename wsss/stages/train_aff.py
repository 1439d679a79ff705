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
from pathlib import Path

import torch
from torch import nn

from wsss.affinity import (
    affinity_loss,
    cropped_sources,
    labels_at_stride,
    pair_affinities,
    pair_labels,
    pair_offsets,
)
from wsss.checkpoints import load_cam_backbone
from wsss.configs.trainers import TrainAffConfig
from wsss.data.datasets import SegmentationDataset
from wsss.data.transforms import AugmentConfig, TrainTransform
from wsss.engine.device import set_seed
from wsss.engine.trainer import LAST, EpochEnd, FitResult, TrainTask, fit
from wsss.models.affinity import AffinityNet

STAGE = "train-aff"

TrainAffResult = FitResult


class AffinityObjective(nn.Module):
    """The balanced pair loss of one batch, as one module for DDP to wrap."""

    def __init__(self, model: AffinityNet, radius: int, cropped: bool = False) -> None:
        super().__init__()
        self.model = model
        self.radius, self.cropped = radius, cropped
        self.offsets = pair_offsets(radius)

    def forward(self, batch: dict[str, torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        boundary = torch.sigmoid(self.model(batch["image"])[:, 0].float())
        labels = labels_at_stride(batch["mask"], tuple(boundary.shape[-2:]), self.model.stride)
        affinities = pair_affinities(boundary, self.offsets)
        targets = pair_labels(labels, self.offsets)
        if self.cropped:
            targets = cropped_sources(targets, self.radius)
        return affinity_loss(affinities, targets)


def build_model(config: TrainAffConfig, pretrained: str) -> AffinityNet:
    """The affinity net these options describe, its backbone starting from `pretrained`."""
    return AffinityNet(
        config.backbone, config.output_stride, pretrained, freeze_backbone=config.freeze_backbone,
        dilate=config.backbone_dilation, head=config.aff_head,
    )  # fmt: skip


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
    model = build_model(config, pretrained)
    if config.init is not None and not resuming:
        load_cam_backbone(model, Path(config.init), voc.classes)
    task = TrainTask.of(
        model,
        AffinityObjective(model, config.radius, config.pair_sources == "cropped"),
        dataset,
        voc.classes,
    )
    return fit(task, config.loop_config(STAGE), on_epoch_end)

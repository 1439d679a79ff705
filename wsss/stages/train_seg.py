"""`wsss train-seg`: DeepLabv3+ on pseudo labels (or ground truth).

Cross-entropy ignoring 255, the same engine as train-cam (AMP, DDP, exact resume, JSONL
metrics), and an optional single-scale val mIoU every K epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wsss.checkpoints import load_cam_backbone
from wsss.configs.trainers import TrainSegConfig
from wsss.data.datasets import SegmentationDataset
from wsss.data.palette import IGNORE
from wsss.data.transforms import AugmentConfig, TrainTransform
from wsss.data.voc import VocDataset
from wsss.engine.device import set_seed
from wsss.engine.evaluation import auto_eval_every, split_evaluator
from wsss.engine.trainer import LAST, EpochEnd, Evaluate, FitResult, TrainTask, fit
from wsss.models.deeplab import DeepLabV3Plus
from wsss.seg_eval import segmenter_previews, segmenter_scores

STAGE = "train-seg"

TrainSegResult = FitResult


class SegObjective(nn.Module):
    """Pixel cross-entropy ignoring 255, averaged over labelled pixels."""

    def __init__(self, model: DeepLabV3Plus) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        logits = self.model(batch["image"]).float()
        target = batch["mask"]
        # Sum / count rather than the mean: a crop with no labelled pixel (padding, or an
        # all-ignore pseudo label) must give 0, not the NaN of an empty mean.
        total = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
        labelled = (target != IGNORE).sum().clamp_min(1)
        return {"loss": total / labelled}


def run(
    config: TrainSegConfig, on_epoch_end: Callable[[EpochEnd], None] | None = None
) -> TrainSegResult:
    """Train (or resume) the segmenter; writes last.pt, final.pt, metrics and a summary."""
    voc, ids = config.open_split()
    if config.labels is None:
        voc.require_masks(
            ids,
            f"ground-truth mask not found ({{missing}} of {{total}} in split {config.split}); "
            "pass --labels DIR with pseudo labels",
        )
    augment = AugmentConfig(crop=config.crop, scale_range=config.scale_range, mode="long-side")
    dataset = SegmentationDataset(voc, ids, TrainTransform(augment), config.labels, config.seed)
    evaluate = None
    if config.eval_split:
        evaluate, eval_list = _seg_evaluator(voc, config.eval_split, config.tensorboard is not None)
        config = config.with_eval_every(
            lambda: auto_eval_every(voc, eval_list, len(ids), config.crop, train_passes=3)
        )

    set_seed(config.seed)
    resuming = config.resume and (Path(config.out) / LAST).is_file()
    pretrained = "none" if resuming or config.init else config.pretrained
    model = build_model(config, voc.num_classes + 1, pretrained)
    if config.init is not None and not resuming:
        load_cam_backbone(model, Path(config.init), voc.classes)
    task = TrainTask.of(model, SegObjective(model), dataset, voc.classes, evaluate)
    return fit(task, config.loop_config(STAGE), on_epoch_end)


def build_model(config: TrainSegConfig, num_classes: int, pretrained: str) -> DeepLabV3Plus:
    """The DeepLab these options describe (`num_classes` counts background), its backbone
    starting from `pretrained`."""
    return DeepLabV3Plus(
        config.backbone, num_classes, config.output_stride, pretrained,
        dilate=config.backbone_dilation, align_corners=config.align_corners,
        head_norm=config.head_norm,
    )  # fmt: skip


def _seg_evaluator(voc: VocDataset, split: str, previews: bool) -> tuple[Evaluate, list[str]]:
    def score(model: nn.Module, ids: list[str], device: torch.device) -> tuple[float, dict] | None:
        scores = segmenter_scores(model, voc, ids, device)
        return scores.miou, {"pixel_accuracy": scores.pixel_accuracy}

    def pictures(model: nn.Module, ids: list[str], device: torch.device) -> dict:
        return segmenter_previews(model, voc, ids, device)

    return split_evaluator(voc, split, "mIoU", score, pictures if previews else None)

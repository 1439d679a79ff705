"""`wsss train-cam`: the Puzzle-CAM classifier trained from image-level labels.

`--pieces 1 --alpha 0` is the plain CAM baseline through the same code path. The defaults
are the paper's recipe for ImageNet-pretrained backbones; from scratch, the AdamW recipe
(`--optimizer adamw --lr 1e-3 --warmup-epochs 2 --schedule cosine --augment resized-crop`)
is the one that learns (the demo recipe in README).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from wsss.cam_eval import cam_previews, evaluate_model_cams
from wsss.checkpoints import load_init_checkpoint, weights_error
from wsss.configs.trainers import TrainCamConfig
from wsss.data.datasets import ClassificationDataset
from wsss.data.transforms import AugmentConfig, TrainTransform
from wsss.data.voc import VocDataset
from wsss.engine.device import set_seed
from wsss.engine.distributed import is_main
from wsss.engine.evaluation import auto_eval_every, split_evaluator
from wsss.engine.trainer import LAST, EpochEnd, Evaluate, FitResult, TrainTask, fit
from wsss.models.classifier import CamClassifier
from wsss.puzzle import PuzzleConfig, puzzle_losses

STAGE = "train-cam"
# `--color-jitter` switches on the reference's jitter strength.
COLOR_JITTER = 0.3

TrainCamResult = FitResult


def puzzle_config(config: TrainCamConfig) -> PuzzleConfig:
    return PuzzleConfig(
        pieces=config.pieces,
        alpha=config.alpha,
        alpha_warmup=config.alpha_warmup,
        puzzle_start=config.puzzle_start,
        re_loss=config.re_loss,  # type: ignore[arg-type]
        re_level=config.re_level,  # type: ignore[arg-type]
        pcl_maps=config.pcl_maps,  # type: ignore[arg-type]
        use_pcl=config.pcl,
    )


def augmentation(config: TrainCamConfig) -> AugmentConfig:
    return AugmentConfig(
        crop=config.crop,
        scale_range=config.scale_range,
        mode=config.augment,  # type: ignore[arg-type]
        color_jitter=COLOR_JITTER if config.color_jitter else 0.0,
    )


class PuzzleObjective(nn.Module):
    """L = L_cls + L_p-cls + alpha(progress) * L_re, as one module for DDP to wrap."""

    def __init__(self, model: CamClassifier, config: PuzzleConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, batch: dict[str, torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        alpha = self.config.alpha_at(progress)
        return puzzle_losses(self.model, batch["image"], batch["label"], self.config, alpha)


def run(
    config: TrainCamConfig, on_epoch_end: Callable[[EpochEnd], None] | None = None
) -> TrainCamResult:
    """Train (or resume) the classifier; writes last.pt, final.pt, metrics and a summary."""
    voc, ids = config.open_split()
    evaluate = None
    if config.eval_split:
        evaluate, eval_list = _cam_evaluator(voc, config.eval_split, config.tensorboard is not None)
        config = config.with_eval_every(lambda: default_eval_every(config, voc, ids, eval_list))
    dataset = ClassificationDataset(voc, ids, TrainTransform(augmentation(config)), config.seed)

    set_seed(config.seed)
    resuming = config.resume and (Path(config.out) / LAST).is_file()
    # Weights that will be overwritten anyway are not fetched (offline resume, warm start).
    pretrained = "none" if resuming or config.init else config.pretrained
    model = build_model(config, voc.num_classes, pretrained)
    if config.init is not None and not resuming:
        _warm_start(model, Path(config.init), voc.classes)
    task = TrainTask.of(
        model, PuzzleObjective(model, puzzle_config(config)), dataset, voc.classes, evaluate
    )
    return fit(task, config.loop_config(STAGE), on_epoch_end)


def build_model(config: TrainCamConfig, num_classes: int, pretrained: str) -> CamClassifier:
    """The classifier these options describe, its backbone starting from `pretrained`."""
    return CamClassifier(
        config.backbone, num_classes, config.output_stride, pretrained, config.freeze_bn,
        dilate=config.backbone_dilation,
    )  # fmt: skip


def _warm_start(model: CamClassifier, path: Path, classes: tuple[str, ...]) -> None:
    """Start from a trained classifier's weights (the paper starts from a trained network)."""
    checkpoint = load_init_checkpoint(path, model.backbone_name, classes, model.config()["dilate"])
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as exc:
        raise weights_error(path, "--init weights do not fit the model", exc) from None


def default_eval_every(
    config: TrainCamConfig, voc: VocDataset, train_ids: list[str], eval_list: list[str]
) -> int:
    """`--eval-every` when not given: evaluation within 10 % of the training compute."""
    passes = 6 if config.pieces > 1 else 3  # the tile branch doubles forward and backward
    return auto_eval_every(voc, eval_list, len(train_ids), config.crop, passes)


def _cam_evaluator(voc: VocDataset, split: str, previews: bool) -> tuple[Evaluate, list[str]]:
    """CAM threshold sweep on `split` (rank 0 only): best mIoU over the dataset's classes;
    with `previews`, heatmaps of a few of its images for TensorBoard."""

    def score(model: nn.Module, ids: list[str], device: torch.device) -> tuple[float, dict] | None:
        if not is_main():
            return None
        sweep = evaluate_model_cams(model, voc, ids, device)
        return sweep.best_miou, {"threshold": sweep.best_threshold}

    def pictures(model: nn.Module, ids: list[str], device: torch.device) -> dict:
        return cam_previews(model, voc, ids, device)

    return split_evaluator(voc, split, "CAM mIoU", score, pictures if previews else None)

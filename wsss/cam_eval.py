"""The background-threshold sweep of CAM evaluation, all thresholds in one pass.

The prediction at threshold t is the argmax over [t, cams...] mapped through the keys
(ties go to the background, like the reference's padded argmax). Per pixel it only depends
on the strongest class and its value m: the class when m > t, else background. So each
file is reduced once to (class, m); m is bucketed by how many thresholds lie below it, and
ONE bincount over (bucket, gt, class) per file holds every threshold's confusion matrix,
recovered at the end by cumulative sums. The cost per file does not grow with the number of
thresholds, and each file is read once (the reference re-reads everything per threshold).
Scores come from `ConfusionMatrix.compute()`, like every mIoU of the toolkit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from wsss.cam_threshold import DEFAULT_THRESHOLDS, check_thresholds
from wsss.data.classes import class_names_with_background
from wsss.data.loader import image_loader
from wsss.data.palette import IGNORE
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.inference import Predictor, TtaConfig, make_cams
from wsss.metrics import ConfusionMatrix, SegmentationScores

# Evaluation runs one scale without flip: batching 8 same-size images keeps the CPU as busy as
# make-cam's multi-scale flip batches do (one image alone leaves cores idle).
EVAL_BATCH_SIZE = 8


@dataclass
class SweepResult:
    """Scores at every threshold; the best is the first with the highest mIoU."""

    thresholds: tuple[float, ...]
    scores: list[SegmentationScores]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def curve(self) -> list[tuple[float, float]]:
        return [(t, s.miou) for t, s in zip(self.thresholds, self.scores, strict=True)]

    @property
    def best_index(self) -> int:
        return int(np.argmax([s.miou for s in self.scores]))

    @property
    def best_threshold(self) -> float:
        return self.thresholds[self.best_index]

    @property
    def best(self) -> SegmentationScores:
        return self.scores[self.best_index]

    @property
    def best_miou(self) -> float:
        return self.best.miou

    def to_json(self) -> dict[str, Any]:
        """`best_threshold`, `best_miou` (percent), `curve` and `iou` are a contract."""
        best = self.best.to_json()
        return {
            "best_threshold": self.best_threshold,
            "best_miou": self.best_miou,
            # the official code's convention at the same threshold (wsss.metrics)
            "best_miou_reference": self.best.miou_reference,
            "conventions": best["conventions"],
            "curve": [[t, miou] for t, miou in self.curve],
            "iou": best["iou"],
            "precision": best["precision"],
            "recall": best["recall"],
            "fp_rate": best["fp_rate"],
            "fn_rate": best["fn_rate"],
            "images": self.best.images,
            **self.extra,
        }


class ThresholdSweep:
    """Accumulates CAM predictions against ground truth for all thresholds at once."""

    def __init__(self, classes: tuple[str, ...], thresholds: Sequence[float] | None = None) -> None:
        """`classes`: the foreground class names (labels 1..C)."""
        self.thresholds = check_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        # float32 like the CAMs: the comparison is the one the reference's padded argmax makes.
        self._edges = np.asarray(self.thresholds, dtype=np.float32)
        self.class_names = class_names_with_background(classes)
        self.n = len(self.class_names)
        self.histogram = np.zeros((len(self.thresholds) + 1) * self.n * self.n, dtype=np.int64)
        self.images = 0

    def update(
        self,
        cams: np.ndarray | torch.Tensor,
        labels: np.ndarray | Sequence[int],
        gt: np.ndarray,
        name: str = "",
    ) -> None:
        """Add one image: K x H x W CAMs of the label values `labels` (1..C) and its GT."""
        what = name or "CAM"
        top, strongest = _strongest(cams, gt.shape)
        labels = np.asarray(labels, dtype=np.int64)
        if top.shape != gt.shape:
            raise WsssError(f"{what}: size {top.shape[::-1]} differs from GT {gt.shape[::-1]}")
        if labels.size != len(cams) or (
            labels.size and not 0 < labels.min() <= labels.max() < self.n
        ):
            raise WsssError(f"{what}: class labels {labels.tolist()} outside 1..{self.n - 1}")
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        valid = gt != IGNORE
        gt = gt[valid]
        if gt.size and gt.max() >= self.n:
            bad = int(gt.max())
            raise WsssError(f"{what}: ground truth value {bad} outside 0..{self.n - 1} (or 255)")
        predicted = labels[strongest.reshape(-1)[valid]] if labels.size else np.zeros_like(gt)
        # bucket b = number of thresholds below the pixel's max: foreground for thresholds j < b.
        bucket = count_below(self._edges, top.reshape(-1)[valid])
        index = (bucket * self.n + gt) * self.n + predicted
        self.histogram += np.bincount(index, minlength=self.histogram.size)
        self.images += 1

    def merge(self, other: ThresholdSweep) -> None:
        self.histogram += other.histogram
        self.images += other.images

    def matrices(self) -> np.ndarray:
        """T x N x N confusion matrices (rows GT, columns prediction), one per threshold."""
        n, count = self.n, len(self.thresholds)
        hist = self.histogram.reshape(count + 1, n, n)
        # at threshold j, buckets > j predict their class and buckets <= j predict background.
        foreground = np.cumsum(hist[::-1], axis=0)[::-1][1:]
        background = np.cumsum(hist, axis=0)[:-1].sum(axis=2)
        matrices = foreground.copy()
        matrices[:, :, 0] += background
        return matrices

    def result(self) -> SweepResult:
        if self.images == 0:
            raise WsssError("no CAM was evaluated")
        scores = []
        for matrix in self.matrices():
            confusion = ConfusionMatrix(self.n, self.class_names)
            confusion.matrix = matrix
            confusion.images = self.images
            scores.append(confusion.compute())
        return SweepResult(thresholds=self.thresholds, scores=scores)


def _strongest(
    cams: np.ndarray | torch.Tensor, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the highest CAM value (float32) and the index of its map (first on ties)."""
    if len(cams) == 0:
        return np.full(shape, -np.inf, dtype=np.float32), np.zeros(shape, dtype=np.int64)
    if isinstance(cams, torch.Tensor):
        top, strongest = cams.float().max(dim=0)
        return top.cpu().numpy(), strongest.cpu().numpy()
    cams = np.asarray(cams, dtype=np.float32)
    if len(cams) == 1:  # most images hold one class: no argmax needed
        return cams[0], np.zeros(shape, dtype=np.int64)
    strongest = cams.argmax(axis=0)
    return np.take_along_axis(cams, strongest[None], axis=0)[0], strongest


def count_below(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, how many of the sorted float32 `edges` are strictly below it.

    Equals `np.searchsorted(edges, values, side="left")`. For evenly spaced edges (the usual
    start:stop:step sweep) the count is computed arithmetically and corrected by one exact
    comparison each way, which costs the same for 19 thresholds as for one, where a binary
    search grows with log(T). NaN values count as below every edge.
    """
    count = len(edges)
    steps = np.diff(edges.astype(np.float64))
    if count < 3 or not np.allclose(steps, steps[0], rtol=1e-4, atol=0.0):
        return np.searchsorted(edges, values, side="left")
    estimate = (values - edges[0]) * np.float32(1.0 / steps[0])
    np.ceil(estimate, out=estimate)
    np.fmax(estimate, 0, out=estimate)  # fmax/fmin also turn NaN into a bound
    np.fmin(estimate, count, out=estimate)
    below = estimate.astype(np.intp)
    # rounding can put the estimate one off: fix it against the exact float32 edges
    padded = np.concatenate([[-np.inf], edges, [np.inf]]).astype(np.float32)
    below -= (padded[below] >= values) & (below > 0)
    below += padded[below + 1] < values
    return below


def evaluate_model_cams(
    model: nn.Module,
    voc: VocDataset,
    ids: Sequence[str],
    device: torch.device,
    thresholds: Sequence[float] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> SweepResult:
    """Threshold sweep of a model's CAMs on `ids` (periodic evaluation during training).

    Nothing is written to disk and only `hr_cam` is computed; the model's training mode is
    restored afterwards. Call it on one process (it performs no collective operation); pass
    the bare module rather than a DistributedDataParallel wrapper.
    """
    tta = TtaConfig(scales=tuple(scales), flip=flip)
    sweep = ThresholdSweep(voc.classes, thresholds)
    predictor = Predictor(model, device)
    was_training = model.training
    model.eval()
    try:
        loader = image_loader(voc, ids, EVAL_BATCH_SIZE, workers=0, device=device)
        for batch in loader:
            batch_ids = [ids[i] for i in batch["index"]]
            classes = [voc.image_classes(i) for i in batch_ids]
            images = predictor.to_device(batch["image"])
            size = (images.shape[-1], images.shape[-2])
            records = make_cams(predictor, images, classes, tta, with_strided=False)
            for image_id, record in zip(batch_ids, records, strict=True):
                gt = voc.load_mask(image_id, expect_size=size)
                sweep.update(record.hr_cam, record.labels, gt, name=image_id)
    finally:
        model.train(was_training)
    return sweep.result()


def cam_previews(
    model: nn.Module, voc: VocDataset, ids: Sequence[str], device: torch.device
) -> dict[str, np.ndarray]:
    """Heatmap strips (the image, then each labelled class's CAM; `wsss.overlay`) of `ids`
    at one scale, by id: what TensorBoard shows of an evaluation. Rank 0 only."""
    from wsss.overlay import cam_overlay
    from wsss.torchrun import env_info

    if not env_info().is_main:
        return {}
    predictor = Predictor(model, device)
    strips = {}
    for batch in image_loader(voc, list(ids), 1, workers=0, device=device):
        image_id = ids[batch["index"][0]]
        classes = [voc.image_classes(image_id)]
        (record,) = make_cams(predictor, predictor.to_device(batch["image"]), classes,
                              TtaConfig(scales=(1.0,), flip=False), with_strided=False)  # fmt: skip
        names = [voc.classes[label - 1] for label in record.labels]
        image = np.asarray(voc.load_image(image_id).convert("RGB"))
        strips[f"cam {image_id}"] = cam_overlay(image, record.hr_cam, names)
    return strips

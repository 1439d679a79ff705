"""The one confusion matrix behind every mIoU in the toolkit (CAMs, pseudo labels, segmenter).

Rows are ground truth, columns predictions, over background + C classes; 255 in the ground
truth is ignored. A class absent from both ground truth and prediction over everything
evaluated is left out of the mean (reported as n/a), so a dataset that uses a subset of the
class list is scored on its own classes.

Beside it, every score carries the official Puzzle-CAM code's figure (`miou_reference`, its
`evaluate.py`): the mean over every class of the list, a class absent from both scoring 0,
and a predicted 255 on a labelled pixel counted as a miss of its ground-truth class (ours
leaves such pixels out, `ignore_pred`). On a dataset where every class occurs and nothing is
predicted 255 the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wsss.data.palette import IGNORE
from wsss.errors import WsssError
from wsss.ui import warn

OUR_CONVENTION = (
    "mean over the classes present in ground truth or prediction; predicted 255 (ignore) "
    "pixels left out"
)
REFERENCE_CONVENTION = (
    "the official Puzzle-CAM code's (evaluate.py): mean over every class of the list, a class "
    "absent from ground truth and prediction scoring 0; a predicted 255 on a labelled pixel "
    "is a miss of its ground-truth class"
)


@dataclass
class SegmentationScores:
    """Scores in percent; `None` marks a class absent from both GT and prediction."""

    class_names: tuple[str, ...]
    iou: list[float | None]
    precision: list[float | None]
    recall: list[float | None]
    fp_rate: list[float | None]
    fn_rate: list[float | None]
    miou: float
    pixel_accuracy: float
    pixels: int
    images: int
    extra: dict = field(default_factory=dict)
    # The official code's convention (REFERENCE_CONVENTION): every class, absent ones at 0.
    iou_reference: list[float] = field(default_factory=list)
    miou_reference: float = math.nan

    def to_json(self) -> dict:
        """JSON form; `miou` and `iou` are contracts other tools read."""
        per_class = lambda values: dict(zip(self.class_names, values, strict=True))  # noqa: E731
        return {
            "miou": self.miou,
            "miou_reference": self.miou_reference,
            "conventions": {"miou": OUR_CONVENTION, "miou_reference": REFERENCE_CONVENTION},
            "iou": per_class(self.iou),
            "iou_reference": per_class(self.iou_reference),
            "precision": per_class(self.precision),
            "recall": per_class(self.recall),
            "fp_rate": per_class(self.fp_rate),
            "fn_rate": per_class(self.fn_rate),
            "pixel_accuracy": self.pixel_accuracy,
            "pixels": self.pixels,
            "images": self.images,
            **self.extra,
        }


def reference_note(scores: SegmentationScores) -> str:
    """One line: the mIoU in the official code's convention, labelled."""
    return (
        f"mIoU {scores.miou:.2f} (classes present); in the official Puzzle-CAM code's "
        f"convention (all {len(scores.class_names)} classes, absent ones 0, predicted 255 a "
        f"miss): {scores.miou_reference:.2f}"
    )


class ConfusionMatrix:
    """Accumulates (gt, pred) pixel pairs with one `np.bincount` per update."""

    def __init__(self, num_classes: int, class_names: tuple[str, ...] | None = None) -> None:
        """`num_classes` counts background: C + 1."""
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError("class_names must have num_classes entries")
        self.num_classes = num_classes
        self.class_names = class_names or tuple(str(i) for i in range(num_classes))
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.images = 0
        self.ignored_predictions = 0
        # per ground-truth class: labelled pixels predicted 255 (the reference's misses)
        self.ignored_by_class = np.zeros(num_classes, dtype=np.int64)

    def update(
        self, gt: np.ndarray, pred: np.ndarray, name: str = "", ignore_pred: bool = False
    ) -> None:
        """Add one image. `name` is used in error messages.

        With `ignore_pred`, pixels predicted 255 (e.g. confident-region pseudo labels) are left
        out and counted in `ignored_predictions` instead of being an error.
        """
        if gt.shape != pred.shape:
            raise WsssError(
                f"{name or 'prediction'}: size {pred.shape[::-1]} differs from "
                f"ground truth {gt.shape[::-1]}"
            )
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        valid = gt != IGNORE
        if not valid.any() and gt.size:
            warn(f"{name or 'ground truth'}: every ground-truth pixel is 255 (ignore); not scored")
        if ignore_pred:
            # an image whose prediction is all 255 (no confident pixel) is counted, not warned
            dropped = valid & (pred == IGNORE)
            self.ignored_predictions += int(dropped.sum())
            valid &= ~dropped
            missed = gt[dropped]
            missed = missed[missed < self.num_classes]
            self.ignored_by_class += np.bincount(missed, minlength=self.num_classes)
        gt, pred = gt[valid], pred[valid]
        n = self.num_classes
        if gt.size and gt.max() >= n:
            raise WsssError(
                f"{name or 'ground truth'}: label value {int(gt.max())} outside 0..{n - 1} (or 255)"
            )
        if pred.size and (pred.max() >= n or pred.min() < 0):
            bad = int(pred.max()) if pred.max() >= n else int(pred.min())
            raise WsssError(f"{name or 'prediction'}: label value {bad} outside 0..{n - 1}")
        self.matrix += np.bincount(gt * n + pred, minlength=n * n).reshape(n, n)
        self.images += 1

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix
        self.images += other.images
        self.ignored_predictions += other.ignored_predictions
        self.ignored_by_class += other.ignored_by_class

    def reduce_from_all_processes(self) -> None:
        """Sum the matrix over torch.distributed ranks (no-op when not distributed)."""
        from wsss.engine.distributed import all_reduce_array

        n = self.num_classes
        counts = [self.images, self.ignored_predictions]
        values = all_reduce_array(
            np.concatenate([self.matrix.reshape(-1), self.ignored_by_class, counts])
        )
        self.matrix = values[: n * n].reshape(n, n).copy()
        self.ignored_by_class = values[n * n : n * n + n].copy()
        self.images, self.ignored_predictions = int(values[-2]), int(values[-1])

    def compute(self) -> SegmentationScores:
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt_total = m.sum(axis=1)
        pred_total = m.sum(axis=0)
        union = gt_total + pred_total - tp
        present = union > 0

        def ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
            return [
                float(100.0 * a / b) if ok and b > 0 else (0.0 if ok else None)
                for a, b, ok in zip(num, den, present, strict=True)
            ]

        iou = ratio(tp, union)
        scored = [v for v in iou if v is not None]
        total = m.sum()
        # The reference: a predicted 255 adds to its class's ground truth, not to a prediction.
        union_reference = union + self.ignored_by_class
        iou_reference = [
            float(100.0 * a / b) if b > 0 else 0.0 for a, b in zip(tp, union_reference, strict=True)
        ]
        labelled = total + self.ignored_by_class.sum()
        if not total:
            # Not 0.0: nothing was scored, which a 0 would hide among real results.
            warn(
                f"no labelled pixel to score in {self.images} image(s) (every ground-truth "
                "pixel is 255 = ignore): mIoU is undefined (NaN, null in JSON)"
            )
        return SegmentationScores(
            class_names=self.class_names,
            iou=iou,
            precision=ratio(tp, pred_total),
            recall=ratio(tp, gt_total),
            fp_rate=ratio(pred_total - tp, union),
            fn_rate=ratio(gt_total - tp, union),
            miou=float(np.mean(scored)) if scored else math.nan,
            pixel_accuracy=float(100.0 * tp.sum() / total) if total else math.nan,
            pixels=int(total),
            images=self.images,
            extra={"ignored_predictions": self.ignored_predictions}
            if self.ignored_predictions
            else {},
            iou_reference=iou_reference,
            miou_reference=float(np.mean(iou_reference)) if labelled else math.nan,
        )


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class average precision (percent) of multi-label scores (N x C) against 0/1 targets.

    AP = mean precision at the rank of each positive (the area under the step-wise PR curve,
    as in scikit-learn's `average_precision_score`); NaN for a class without positives.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0
    ap = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        positives = targets[:, c].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        hits = targets[order, c]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        ap[c] = 100.0 * precision[hits].sum() / positives
    return ap

"""Whether the random walk's pseudo labels are kept, decided without ground truth.

The walk is meant to refine the CAMs' regions, not to redraw them. Where the affinity net
leaks across object boundaries (or learned little), the walked labels drift away from the
evidence they started from. The check measures that drift against the one label-free
reference both paths share, the confident labels (CAM >= fg threshold: that class; CAM
<= bg threshold: background; the band between ignored), and against the CRF labels:

- `confident_fg` / `confident_bg`: the share of confident foreground (background) pixels
  a label set keeps, averaged over the classes present;
- `agreement`: the mIoU of the walked labels scored against the CRF labels.

The rule and its margin were chosen on the quality suite's tuning set
(docs/quality.md, "The walk check"); the pipeline keeps the CRF labels when it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.palette import IGNORE, read_label_png
from wsss.metrics import ConfusionMatrix

RULE = "walk keeps the confident labels as well as the CRF does"
RECORD = "walk_check.json"
# The walked labels may keep this much less of the confident evidence (fg and bg recall,
# averaged) than the CRF labels before the walk is dropped (tuning set, docs/quality.md).
MARGIN = 0.05


@dataclass(frozen=True)
class LabelStats:
    """How one folder of pseudo labels keeps the confident labels."""

    confident_fg: float
    confident_bg: float

    @property
    def kept(self) -> float:
        return (self.confident_fg + self.confident_bg) / 2


@dataclass(frozen=True)
class WalkCheck:
    crf: LabelStats
    walk: LabelStats
    agreement: float  # mIoU % of the walked labels against the CRF labels
    margin: float

    @property
    def keep_walk(self) -> bool:
        return self.walk.kept >= self.crf.kept - self.margin

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": RULE,
            "margin": self.margin,
            "keep_walk": self.keep_walk,
            "crf": {"confident_fg": self.crf.confident_fg, "confident_bg": self.crf.confident_bg,
                    "kept": self.crf.kept},
            "walk": {"confident_fg": self.walk.confident_fg,
                     "confident_bg": self.walk.confident_bg, "kept": self.walk.kept},
            "agreement_miou": self.agreement,
        }  # fmt: skip


def check_walk(
    crf: Path, walk: Path, confident: Path, ids: list[str], num_classes: int,
    margin: float = MARGIN,
) -> WalkCheck:  # fmt: skip
    """Compare the walked labels with the CRF labels on the confident labels of `ids`."""
    size = num_classes + 1
    kept = {"crf": ConfusionMatrix(size), "walk": ConfusionMatrix(size)}
    agreement = ConfusionMatrix(size)
    for image_id in ids:
        reference = read_label_png(confident / f"{image_id}.png")
        if not (reference != IGNORE).any():
            continue  # no confident pixel: nothing to keep
        crf_labels = read_label_png(crf / f"{image_id}.png")
        walk_labels = read_label_png(walk / f"{image_id}.png")
        kept["crf"].update(reference, crf_labels, image_id, ignore_pred=True)
        kept["walk"].update(reference, walk_labels, image_id, ignore_pred=True)
        agreement.update(crf_labels, walk_labels, image_id, ignore_pred=True)
    return WalkCheck(
        crf=_stats(kept["crf"]), walk=_stats(kept["walk"]),
        agreement=agreement.compute().miou, margin=margin,
    )  # fmt: skip


def _stats(matrix: ConfusionMatrix) -> LabelStats:
    """Recall of the confident labels: background, and the mean over foreground classes."""
    counts = matrix.matrix.astype(np.float64)  # rows: reference, columns: prediction
    totals = counts.sum(axis=1)
    recall = np.divide(np.diag(counts), totals, out=np.zeros_like(totals), where=totals > 0)
    present = np.flatnonzero(totals[1:] > 0) + 1
    fg = float(recall[present].mean()) if present.size else 1.0
    bg = float(recall[0]) if totals[0] > 0 else 1.0
    return LabelStats(confident_fg=fg, confident_bg=bg)


__all__ = ["IGNORE", "MARGIN", "RECORD", "RULE", "LabelStats", "WalkCheck", "check_walk"]

"""Whether the random walk's pseudo labels are kept, decided without ground truth.

The walk is a refinement: it moves the CAMs' region borders along the affinities, and where
it helps it changes a minority of the CRF labels' pixels. Where the affinity net leaks
across object boundaries, the walked labels redraw the image instead. The check scores the
walked labels against the CRF labels (mIoU over the classes either one uses) and keeps the
walk when they agree at least `MIN_AGREEMENT`; otherwise the pipeline keeps the CRF labels
and says so. On the tuning set under the blend threshold (docs/quality.md, "The walk check")
the walk lost on 17 runs of 18, five of them at agreements of 73.8 to 84.1, and won once at
84.5: the walk is kept only where it changes very little.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsss.data.palette import read_label_png
from wsss.metrics import ConfusionMatrix

RULE = "walked labels agree with the CRF labels (mIoU) at least min_agreement"
RECORD = "walk_check.json"
# Chosen on the quality suite's tuning set (docs/quality.md, "The walk check"): of 70, 75,
# 80, 85 and 90 it gave the best labels (17 of 18 decisions right; 70 gave 13).
MIN_AGREEMENT = 85.0


@dataclass(frozen=True)
class WalkCheck:
    agreement: float  # mIoU % of the walked labels scored against the CRF labels
    min_agreement: float

    @property
    def keep_walk(self) -> bool:
        return self.agreement >= self.min_agreement

    def to_json(self) -> dict[str, Any]:
        return {"rule": RULE, "agreement_miou": self.agreement,
                "min_agreement": self.min_agreement, "keep_walk": self.keep_walk}  # fmt: skip


def check_walk(
    crf: Path, walk: Path, ids: list[str], num_classes: int,
    min_agreement: float = MIN_AGREEMENT,
) -> WalkCheck:  # fmt: skip
    """Score the walked labels of `ids` against their CRF labels (255 left out)."""
    agreement = ConfusionMatrix(num_classes + 1)
    for image_id in ids:
        reference = read_label_png(crf / f"{image_id}.png")
        walked = read_label_png(walk / f"{image_id}.png")
        agreement.update(reference, walked, image_id, ignore_pred=True)
    return WalkCheck(agreement=agreement.compute().miou, min_agreement=min_agreement)

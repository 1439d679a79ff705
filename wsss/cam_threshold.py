"""The background threshold chosen from the CAMs alone, without pixel ground truth.

Rule ("mean-cam"): t = the mean, over every pixel of the split's labelled images, of the
strongest labelled-class CAM. A pixel is foreground when its strongest CAM is above the
CAMs' own average level. Measured against the ground-truth best threshold in
docs/label_free_threshold.md. Images labelled with no class hold no CAM and are left out:
they are background at any threshold.

The confident-region thresholds of the random-walk path derive from the same t.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsss.camfile import find_cam_file, load_cam_file
from wsss.errors import WsssError
from wsss.io import read_json, write_json
from wsss.ui import track

RULE = "mean-cam"
RULE_TEXT = "mean of the strongest labelled-class CAM over the split's pixels"
# Written into the CAM folder, so make-pseudo --threshold auto and the pipeline share it.
RECORD = "label_free_threshold.json"
CONFIDENT_RULE = "fg = 2 t, bg = t / 2"


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    rule: str
    images: int
    pixels: int

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rule": self.rule,
            "rule_text": RULE_TEXT,
            "images": self.images,
            "pixels": self.pixels,
        }


class MeanCam:
    """Accumulates the strongest CAM of each pixel, image by image."""

    def __init__(self) -> None:
        self.total = 0.0
        self.pixels = 0
        self.images = 0

    def update(self, cams: np.ndarray) -> None:
        """One image's K x H x W CAMs (K may be 0: nothing to add)."""
        if len(cams) == 0:
            return
        top = np.asarray(cams, dtype=np.float32).max(axis=0)
        self.total += float(top.sum(dtype=np.float64))
        self.pixels += int(top.size)
        self.images += 1

    def result(self) -> ThresholdChoice:
        if self.pixels == 0:
            raise WsssError("no image with a labelled class: no CAM to pick a threshold from")
        threshold = round(min(max(self.total / self.pixels, 0.0), 1.0), 4)
        return ThresholdChoice(threshold, RULE, self.images, self.pixels)


def label_free_threshold(cam_dir: Path, ids: Sequence[str], num_classes: int) -> ThresholdChoice:
    """The rule's threshold for the CAM files of `ids` (one pass over them)."""
    mean = MeanCam()
    for image_id in track(ids, len(ids), "pick-threshold"):
        mean.update(load_cam_file(find_cam_file(cam_dir, image_id), num_classes).hr_cam)
    return mean.result()


def pick_threshold(cam_dir: Path, ids: Sequence[str], num_classes: int) -> ThresholdChoice:
    """`label_free_threshold`, recorded in `<cam_dir>/label_free_threshold.json` and read
    back from there when it was made for the same images."""
    cam_dir = Path(cam_dir)
    record = cam_dir / RECORD
    digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()
    if record.is_file():
        saved = read_json(record)
        same = isinstance(saved, dict) and saved.get("ids_sha1") == digest
        if same and saved.get("rule") == RULE:
            try:
                return ThresholdChoice(
                    float(saved["threshold"]), RULE, int(saved["images"]), int(saved["pixels"])
                )
            except (KeyError, TypeError, ValueError):
                pass  # a damaged record is made again, not trusted
    choice = label_free_threshold(cam_dir, ids, num_classes)
    write_json(record, {**choice.to_json(), "ids_sha1": digest, "ids": len(ids)})
    return choice


def confident_thresholds(threshold: float) -> tuple[float, float]:
    """The random-walk path's confident-label thresholds (fg, bg) from the background threshold.

    Fixed thresholds (the reference's 0.40 / 0.10) must bracket the CAMs' own threshold, else
    whole objects become confident background (docs/random_walk.md). fg is capped at 1.
    """
    return min(1.0, 2 * threshold), threshold / 2

"""From one image's CAMs to its pseudo label map.

Work happens in the CAM file's compact label space: index 0 is background and index i is
the class `keys[i]`, so the CRF only sees the image's own classes; `keys` maps the result
back to dataset labels (0..C, 255 = ignore).

- Plain mode: background where every CAM is below the threshold, else the strongest class;
  then optionally a dense CRF.
- Confident mode (the labels AffinityNet / IRN train on): the same twice, with a high and a
  low background threshold. Foreground under the high threshold keeps its class,
  background under both is background, the rest (the uncertain band) is 255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsss.camfile import CamRecord
from wsss.crf import CrfParams, crf_refine_labels, crf_refine_probs
from wsss.data.palette import IGNORE
from wsss.errors import WsssError, check_range

DEFAULT_THRESHOLD = 0.25  # library default; make-pseudo picks its own (wsss.cam_threshold)


@dataclass(frozen=True)
class PseudoParams:
    """How one label map is made. `crf=None` means plain thresholding.

    `bg_power` is the exponent `a` of the background score (1 - max CAM)^a in "scores" unary
    mode; None derives it from the threshold so that, before the CRF, background wins exactly
    where all CAMs are below the threshold (the two unary modes then start from the same
    labels). Confident mode always derives it from its two thresholds.
    """

    threshold: float = DEFAULT_THRESHOLD
    crf: CrfParams | None = CrfParams()
    bg_power: float | None = None
    confident: tuple[float, float] | None = None  # (fg_threshold, bg_threshold)

    def __post_init__(self) -> None:
        check_range("--threshold", self.threshold, 0.0, 1.0)
        if self.bg_power is not None and self.bg_power <= 0:
            raise WsssError(f"--bg-power must be positive, got {self.bg_power}")
        if self.confident is not None:
            fg, bg = self.confident
            check_range("--fg-threshold", fg, 0.0, 1.0)
            check_range("--bg-threshold", bg, 0.0, 1.0)
            if bg > fg:
                raise WsssError(f"--bg-threshold ({bg}) must not exceed --fg-threshold ({fg})")
            if self.bg_power is not None:
                raise WsssError(
                    "--bg-power applies to plain mode only; in confident mode the powers follow "
                    "--fg-threshold and --bg-threshold"
                )

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "confident" if self.confident else "plain",
            "threshold": None if self.confident else self.threshold,
            "fg_threshold": self.confident[0] if self.confident else None,
            "bg_threshold": self.confident[1] if self.confident else None,
            "bg_power": self.bg_power,
            "crf": self.crf.to_json() if self.crf else None,
        }


def power_for_threshold(threshold: float) -> float:
    """The `a` with (1 - t)^a = t: background score and CAM cross exactly at t."""
    t = min(max(threshold, 1e-6), 1.0 - 1e-6)
    return math.log(t) / math.log(1.0 - t)


def threshold_indices(cams: np.ndarray, threshold: float) -> np.ndarray:
    """argmax over [threshold, cams...]: compact indices (0 = background), ties to background."""
    background = np.full((1, *cams.shape[1:]), threshold, dtype=cams.dtype)
    return np.concatenate([background, cams]).argmax(axis=0).astype(np.uint8)


def score_probabilities(cams: np.ndarray, power: float) -> np.ndarray:
    """[(1 - max cam)^a, cams...] normalised to sum to 1 at every pixel."""
    background = np.power(1.0 - cams.max(axis=0, initial=0.0, keepdims=True), power)
    scores = np.concatenate([background, cams]).astype(np.float32)
    return scores / np.maximum(scores.sum(axis=0, keepdims=True), 1e-12)


def threshold_labels(cam: CamRecord, threshold: float) -> np.ndarray:
    """Dataset labels (uint8, 0..C) of the thresholded CAMs, no refinement."""
    return _to_labels(cam, threshold_indices(_cams(cam), threshold))


def refined_indices(
    image: np.ndarray,
    cams: np.ndarray,
    threshold: float,
    crf: CrfParams | None,
    bg_power: float | None = None,
) -> np.ndarray:
    """Compact indices: threshold, then the CRF with the selected unary (if any)."""
    if crf is None:
        return threshold_indices(cams, threshold)
    if crf.unary == "labels":
        return crf_refine_labels(image, threshold_indices(cams, threshold), len(cams) + 1, crf)
    power = bg_power if bg_power is not None else power_for_threshold(threshold)
    return crf_refine_probs(image, score_probabilities(cams, power), crf)


def confident_labels(
    image: np.ndarray,
    cam: CamRecord,
    fg_threshold: float,
    bg_threshold: float,
    crf: CrfParams | None,
) -> np.ndarray:
    """Confident foreground keeps its class, confident background is 0, the rest 255.

    Follows IRN's cam_to_ir_label: conf = fg; conf[fg == 0] = 255; conf[bg + fg == 0] = 0.
    """
    cams = _cams(cam)
    fg = _to_labels(cam, refined_indices(image, cams, fg_threshold, crf))
    bg = _to_labels(cam, refined_indices(image, cams, bg_threshold, crf))
    labels = fg.copy()
    labels[fg == 0] = IGNORE
    labels[(fg == 0) & (bg == 0)] = 0
    return labels


def pseudo_label(image: np.ndarray, cam: CamRecord, params: PseudoParams) -> np.ndarray:
    """The label map `params` asks for: uint8, 0..C, 255 only in confident mode."""
    if params.confident is not None:
        fg, bg = params.confident
        return confident_labels(image, cam, fg, bg, params.crf)
    indices = refined_indices(image, _cams(cam), params.threshold, params.crf, params.bg_power)
    return _to_labels(cam, indices)


def _cams(cam: CamRecord) -> np.ndarray:
    return np.asarray(cam.hr_cam, dtype=np.float32)


def _to_labels(cam: CamRecord, indices: np.ndarray) -> np.ndarray:
    return np.asarray(cam.keys)[indices].astype(np.uint8)

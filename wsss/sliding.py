"""Segmenting one image of any size: whole when it fits a window, else in overlapping windows
whose probabilities are merged, one band (row of windows) at a time.

Windows are `window` pixels square (the image's side where that is shorter); neighbours share
`overlap` of a window, and the last window of a row or column ends at the image's edge. Each
window's probabilities are weighted by a ramp that rises from near 0 at an inner window edge
to 1 across the shared width (flat at the image's own edges), so the merged map cross-fades
between windows instead of jumping where one window's view ends. The windows form a grid, so
the weights at a pixel sum to (row sum) x (column sum), and each merged value is a weighted
mean of the windows' probabilities. Rows above the next band's first row get no more windows:
they are divided, turned into labels and dropped, so the float accumulator holds at most one
window's height of rows, whatever the image's height. An image that fits one window gives
exactly `segment_probs` of the whole image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from wsss.data.transforms import pil_bicubic, to_chw_uint8
from wsss.inference import Merge, Predictor, TtaConfig, segment_probs


@dataclass(frozen=True)
class Segmented:
    """One image's label map (H x W uint8), its merged probabilities (C x H x W float32,
    only when asked for), how many windows it took and whether every output was finite."""

    labels: np.ndarray
    probs: np.ndarray | None
    windows: int
    finite: bool


def window_starts(length: int, window: int, step: int) -> list[int]:
    """Where the windows of one axis start: every `step`, the last one ending at the edge."""
    if length <= window:
        return [0]
    return [*range(0, length - window, step), length - window]


def ramp(start: int, size: int, length: int, fade: int) -> np.ndarray:
    """A window's weights along one axis: rising over `fade` pixels from each inner edge."""
    weight = np.ones(size, dtype=np.float32)
    if fade > 0:
        rise = (np.arange(size, dtype=np.float32) + 0.5) / fade
        if start > 0:
            weight = np.minimum(weight, rise)
        if start + size < length:
            weight = np.minimum(weight, rise[::-1])
    return weight


@dataclass(frozen=True)
class _Axis:
    starts: list[int]
    size: int  # the windows' extent along this axis
    weights: list[torch.Tensor]  # one ramp per window
    total: torch.Tensor  # the ramps' sum at every pixel

    @classmethod
    def of(cls, length: int, window: int, overlap: float, device: torch.device) -> _Axis:
        fade = round(window * overlap)
        size = min(window, length)
        starts = window_starts(length, window, max(1, window - fade))
        ramps = [ramp(start, size, length, fade) for start in starts]
        total = np.zeros(length, dtype=np.float32)
        for start, weight in zip(starts, ramps, strict=True):
            total[start : start + size] += weight
        return cls(starts, size, [torch.from_numpy(r).to(device) for r in ramps],
                   torch.from_numpy(total).to(device))  # fmt: skip


@torch.inference_mode()
def segment_image(
    predictor: Predictor,
    image: torch.Tensor,
    tta: TtaConfig,
    merge: Merge = "probs",
    window: int = 1024,
    overlap: float = 0.25,
    batch_size: int = 1,
    keep_probs: bool = False,
) -> Segmented:
    """Labels of a uint8 3 x H x W image (host memory) by `segment_probs` over its windows,
    `batch_size` windows per forward (the module's docstring)."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    rows = _Axis.of(height, window, overlap, predictor.device)
    cols = _Axis.of(width, window, overlap, predictor.device)
    labels = np.empty((height, width), dtype=np.uint8)
    kept: list[np.ndarray] = []
    band: torch.Tensor | None = None  # merged sums of rows top .. top + len(band)
    top, finite = 0, True

    def finalise(done: torch.Tensor, first: int) -> None:
        weight = rows.total[first : first + done.shape[1], None] * cols.total[None, :]
        merged = done / weight
        labels[first : first + done.shape[1]] = merged.argmax(0).to(torch.uint8).cpu().numpy()
        if keep_probs:
            kept.append(merged.float().cpu().numpy())

    for i, y in enumerate(rows.starts):
        if band is not None:  # rows above y are complete: no later window reaches them
            finalise(band[:, : y - top], top)
            band, top = band[:, y - top :], y
        places = list(enumerate(cols.starts))
        for first in range(0, len(places), batch_size):
            chunk = places[first : first + batch_size]
            crops = torch.stack([image[:, y : y + rows.size, x : x + cols.size] for _, x in chunk])
            probs = segment_probs(
                predictor, predictor.to_device(crops), tta, merge, _pil_views(predictor, crops, tta)
            )
            finite = finite and bool(torch.isfinite(probs).all())
            if band is None:
                band = probs.new_zeros((probs.shape[1], rows.size, width))
            if band.shape[1] < y - top + rows.size:  # the new band's lower rows
                extra = y - top + rows.size - band.shape[1]
                band = torch.cat([band, band.new_zeros((band.shape[0], extra, width))], 1)
            for (j, x), window_probs in zip(chunk, probs, strict=True):
                weight = rows.weights[i][:, None] * cols.weights[j][None, :]
                band[:, y - top : y - top + rows.size, x : x + cols.size] += window_probs * weight
    assert band is not None  # every image has a window
    finalise(band, top)
    probs_out = np.concatenate(kept, axis=1) if keep_probs else None
    windows = len(rows.starts) * len(cols.starts)
    return Segmented(labels, probs_out, windows, finite)


def _pil_views(
    predictor: Predictor, crops: torch.Tensor, tta: TtaConfig
) -> Sequence[torch.Tensor] | None:
    """The windows at every scale resized by PIL (resize "pil-bicubic"; the image loader's
    way for whole images), on the device; None for the bilinear resize."""
    if not tta.pil_scales:
        return None
    pictures = [Image.fromarray(crop.permute(1, 2, 0).numpy()) for crop in crops]
    return [
        predictor.to_device(torch.stack([to_chw_uint8(pil_bicubic(p, s)) for p in pictures]))
        for s in tta.pil_scales
    ]

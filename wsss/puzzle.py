"""The puzzle module: tile the image, merge the tile CAMs, and the three losses.

Tiles are stacked piece-major on the batch axis in row-major grid order: for a 2 x 2 grid
the batch is [top-left of every image, top-right ..., bottom-left ..., bottom-right ...],
the order of the reference. When H or W is not divisible by the grid size the bottom rows
and right columns that do not fit are cropped (never padded: padding would add content the
whole-image CAM never saw), so `merge(tile(x))` equals `x` cropped to the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from wsss.cam_math import normalize_cams
from wsss.errors import WsssError, check_range
from wsss.models.classifier import CamClassifier


def grid_size(pieces: int) -> int:
    """Tiles per side; the number of pieces must be a square."""
    side = math.isqrt(pieces) if pieces > 0 else 0
    if side * side != pieces or side == 0:
        raise WsssError(f"puzzle pieces must be a square number (1, 4, 9, ...), got {pieces}")
    return side


def tile(x: Tensor, pieces: int) -> Tensor:
    """B x C x H x W -> (pieces * B) x C x H//g x W//g; the remainder rows/columns are cropped."""
    side = grid_size(pieces)
    batch, channels, height, width = x.shape
    tile_h, tile_w = height // side, width // side
    if tile_h == 0 or tile_w == 0:
        raise WsssError(f"a {height}x{width} input is too small for {pieces} puzzle pieces")
    x = x[..., : side * tile_h, : side * tile_w]
    x = x.reshape(batch, channels, side, tile_h, side, tile_w).permute(2, 4, 0, 1, 3, 5)
    return x.reshape(pieces * batch, channels, tile_h, tile_w)


def merge(x: Tensor, pieces: int) -> Tensor:
    """Inverse of `tile`: (pieces * B) x C x h x w -> B x C x g*h x g*w."""
    side = grid_size(pieces)
    count, channels, height, width = x.shape
    if count % pieces:
        raise ValueError(f"batch of {count} tiles is not a multiple of {pieces} pieces")
    x = x.reshape(side, side, count // pieces, channels, height, width).permute(2, 3, 0, 4, 1, 5)
    return x.reshape(count // pieces, channels, side * height, side * width)


def alpha_at(progress: float, alpha_max: float, warmup: float = 0.5, start: float = 0.0) -> float:
    """Weight of the reconstruction loss at `progress` = iteration / total iterations.

    0 before `start`, then a linear ramp to `alpha_max` over `warmup` (a fraction of the
    whole training, counted from `start`), then `alpha_max`; warmup 0 means no ramp.
    """
    if progress < start:
        return 0.0
    if warmup <= 0:
        return float(alpha_max)
    return float(alpha_max) * min(1.0, (progress - start) / warmup)


@dataclass(frozen=True)
class PuzzleConfig:
    """Puzzle-CAM options; the defaults are the paper's best (4 pieces, alpha 4, L1)."""

    pieces: int = 4
    alpha: float = 4.0
    alpha_warmup: float = 0.5
    puzzle_start: float = 0.0
    re_loss: Literal["l1", "l2"] = "l1"
    re_level: Literal["feature", "cam"] = "feature"
    pcl_maps: Literal["raw", "level"] = "raw"  # what L_p-cls pools (`puzzle_losses`)
    use_pcl: bool = True
    use_cls: bool = True

    def __post_init__(self) -> None:
        grid_size(self.pieces)
        check_range("puzzle alpha", self.alpha, 0.0, math.inf)
        check_range("alpha warmup", self.alpha_warmup, 0.0, 1.0)
        check_range("puzzle start", self.puzzle_start, 0.0, 1.0)
        if self.re_loss not in ("l1", "l2"):
            raise WsssError(f"reconstruction loss must be l1 or l2, got {self.re_loss!r}")
        if self.re_level not in ("feature", "cam"):
            raise WsssError(f"reconstruction level must be feature or cam, got {self.re_level!r}")
        if self.pcl_maps not in ("raw", "level"):
            raise WsssError(f"L_p-cls maps must be raw or level, got {self.pcl_maps!r}")
        if not (self.use_cls or (self.pieces > 1 and (self.use_pcl or self.alpha > 0))):
            raise WsssError("the puzzle options switch off every loss term (cls, p_cls and re)")

    def alpha_at(self, progress: float) -> float:
        return alpha_at(progress, self.alpha, self.alpha_warmup, self.puzzle_start)


def reconstruction_loss(
    full: Tensor, merged: Tensor, labels: Tensor, kind: str = "l1", level: str = "feature"
) -> Tensor:
    """Mean of |A_s - A_re| (or squared) over batch, classes and pixels, absent classes zeroed.

    As in the reference the mean runs over ALL classes, so absent classes add zeros to it
    rather than being left out of the denominator. At "cam" level both sides are
    normalised CAMs, so a map cannot lower the loss by merely shrinking.
    """
    if level == "cam":
        full, merged = normalize_cams(full), normalize_cams(merged)
    diff = full - merged
    error = diff.abs() if kind == "l1" else diff.square()
    return (error * labels[:, :, None, None]).mean()


def puzzle_losses(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    config: PuzzleConfig,
    alpha: float,
) -> dict[str, Tensor]:
    """One training step's losses: L = L_cls + L_p-cls + alpha * L_re.

    `model` maps images to class maps (B x C x h x w, before pooling); `alpha` is the
    current schedule value. The tiled forward runs only when a term needs it (p_cls on, or
    re with alpha > 0, and more than one piece), so the plain CAM baseline costs one
    forward; terms not computed are reported as 0. L_p-cls pools the raw merged maps
    (`pcl_maps="raw"`) or those L_re compares (`"level"`: the normalised CAMs at "cam" level,
    as the reference; their GAP is never negative, so it is a weaker loss).
    If H, W are not divisible by 2 x output stride the merged maps are one cell short of
    the whole-image maps and are resized to them bilinearly.
    """
    labels = labels.float()
    maps = model(images).float()
    # A zero still tied to the graph: backward works even when every term is switched off
    # for this step (e.g. only L_re configured, during its alpha warmup delay).
    zero = maps.sum() * 0.0
    losses = dict.fromkeys(("cls", "p_cls", "re"), zero)
    if config.use_cls:
        losses["cls"] = F.multilabel_soft_margin_loss(CamClassifier.logits(maps), labels)
    puzzle = config.pieces > 1
    want_pcl = puzzle and config.use_pcl
    want_re = puzzle and config.alpha > 0
    if want_pcl or (want_re and alpha > 0):
        merged = merge(model(tile(images, config.pieces)).float(), config.pieces)
        size = maps.shape[-2:]
        if merged.shape[-2:] != size:
            merged = F.interpolate(merged, size=size, mode="bilinear", align_corners=False)
        if want_pcl:
            pooled = merged
            if config.pcl_maps == "level" and config.re_level == "cam":
                pooled = normalize_cams(merged)
            losses["p_cls"] = F.multilabel_soft_margin_loss(CamClassifier.logits(pooled), labels)
        if want_re:
            kind, level = config.re_loss, config.re_level
            losses["re"] = reconstruction_loss(maps, merged, labels, kind, level)
    total = losses["cls"] + losses["p_cls"] + alpha * losses["re"]
    # A fill on the device: new_tensor would copy from the host and wait for the GPU.
    return {"loss": total, **losses, "alpha": maps.new_full((), float(alpha))}

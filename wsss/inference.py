"""Multi-scale + flip inference: CAMs from the classifier, class probabilities from DeepLab.

One engine, `tta_outputs`, runs a batch of same-size images through the network at every
scale, each scale together with its horizontal flip in ONE batch, and returns the outputs
with the flipped half flipped back. Making CAMs and predicting segments only differ in how
they merge those outputs (`make_cams`, `segment_probs`).

Batching across images: a batch holds images of one size (`wsss.data.loader` sorts the ids
by image size and cuts runs of equal size), so at each scale B images and their flips
go through the network as one 2B batch. Padding images to a common size would be simpler
but changes what the network sees near the borders, so the batched result would differ
from the per-image one; grouping keeps them equal (most VOC images share a few sizes).
On CUDA the default batch is several images; on the CPU one image (its 2-image flip batch
already keeps the cores busy), and `--batch-size` raises it.

Resizing to a scale (`TtaConfig.resize`): "bilinear" resizes the normalised batch on the
device (antialiased when shrinking); "pil-bicubic" is the official Puzzle-CAM code's way
(issue #25 row 2): the uint8 image resized with PIL's bicubic filter, then normalised. PIL
runs on the host, so the image loader makes those views (`image_loader(pil_scales=...)`)
and the engine is handed them (`scaled`); the result is the same on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss.cam_math import normalize_cams, strided_size
from wsss.camfile import CamRecord
from wsss.data.transforms import normalize_uint8, scaled_size
from wsss.engine.device import amp_policy
from wsss.errors import WsssError
from wsss.models.fold import fold_batchnorm
from wsss.transfers import upload

DEFAULT_SCALES: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
# hr_cam: each scale's map is resized to ceil(H/16)*16 and cropped to H x W, like the IRN and
# Puzzle-CAM tools, so that one map cell keeps covering 16 image pixels up to the border.
HR_STRIDE = 16

Forward = Callable[[torch.Tensor], torch.Tensor]
RESIZES = ("bilinear", "pil-bicubic")


@dataclass(frozen=True)
class TtaConfig:
    """Test-time augmentation: the scales, whether each is paired with its flip, and how an
    image is resized to a scale (the module's docstring)."""

    scales: tuple[float, ...] = DEFAULT_SCALES
    flip: bool = True
    resize: Literal["bilinear", "pil-bicubic"] = "bilinear"

    def __post_init__(self) -> None:
        if not self.scales:
            raise WsssError("--scales needs at least one scale")
        bad = [s for s in self.scales if not (s > 0 and math.isfinite(s))]
        if bad:
            raise WsssError(f"--scales must be positive numbers, got {bad[0]}")
        if self.resize not in RESIZES:
            raise WsssError(f"--resize must be one of {'|'.join(RESIZES)}, got '{self.resize}'")

    @property
    def views(self) -> int:
        return 2 if self.flip else 1

    @property
    def pil_scales(self) -> tuple[float, ...]:
        """The scales the image loader resizes with PIL (none unless resize is pil-bicubic)."""
        return self.scales if self.resize == "pil-bicubic" else ()


def _resize(x: torch.Tensor, size: tuple[int, int], antialias: bool = False) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)


# -- the engine -----------------------------------------------------------------------------


def tta_outputs(
    forward: Forward,
    images: torch.Tensor,
    tta: TtaConfig,
    scaled: Sequence[torch.Tensor] | None = None,
) -> Iterator[torch.Tensor]:
    """Per scale: float32 outputs B x V x C x h x w (V = 2 with flip: the flip flipped back).

    With resize "bilinear", `images` are resized bilinearly (antialiased when shrinking);
    with "pil-bicubic", `scaled` holds the batch at each scale, already resized and
    normalised (the module's docstring).
    """
    batch = images.shape[0]
    for x in _scaled_views(images, tta, scaled):
        if tta.flip:
            x = torch.cat([x, x.flip(-1)])
        out = forward(x).float().unflatten(0, (tta.views, batch))
        if tta.flip:
            out = torch.stack([out[0], out[1].flip(-1)])
        yield out.transpose(0, 1)


def _scaled_views(
    images: torch.Tensor, tta: TtaConfig, scaled: Sequence[torch.Tensor] | None
) -> Iterator[torch.Tensor]:
    size = (int(images.shape[-2]), int(images.shape[-1]))
    if tta.resize == "bilinear":
        for scale in tta.scales:
            yield _resize(images, scaled_size(size, scale), antialias=scale < 1)
        return
    if scaled is None or len(scaled) != len(tta.scales):
        raise ValueError("resize 'pil-bicubic' needs the images at every scale (`scaled`)")
    for scale, x in zip(tta.scales, scaled, strict=True):
        if tuple(x.shape[-2:]) != scaled_size(size, scale) or x.shape[0] != images.shape[0]:
            raise ValueError(f"the images at scale {scale} have shape {tuple(x.shape)}")
        yield x


@dataclass(frozen=True)
class CamBatch:
    """CAMs of a batch on the device (`maps`: the normalised stride-4 and image-size maps of
    every image's classes, image after image) and how they become records on the host."""

    keys: list[list[int]]  # each image's 0-based classes, sorted
    maps: list[torch.Tensor]  # [cam: K x h x w, hr_cam: K x H x W], K = all images' classes

    def records(self, arrays: Sequence[np.ndarray]) -> list[CamRecord]:
        """The records of `maps` read on the host (as numpy arrays, in the same order)."""
        strided, hr = (np.asarray(a, dtype=np.float32) for a in arrays)
        counts = [len(k) for k in self.keys]
        starts = np.cumsum([0, *counts[:-1]])
        return [
            CamRecord(
                keys=np.array([0, *(c + 1 for c in keys)], dtype=np.int64),
                cam=strided[start : start + count],
                hr_cam=hr[start : start + count],
            )
            for keys, start, count in zip(self.keys, starts, counts, strict=True)
        ]


@torch.inference_mode()
def cam_batch(
    forward: Forward,
    images: torch.Tensor,
    classes: Sequence[Sequence[int]],
    tta: TtaConfig,
    with_strided: bool = True,
    scaled: Sequence[torch.Tensor] | None = None,
) -> CamBatch:
    """CAMs of a batch of same-size images, each restricted to its labelled classes, left on
    the device (`make_cams` reads them at once; make-cam one batch later). `scaled`: the
    batch at every scale, for resize "pil-bicubic" (`tta_outputs`).

    `classes[i]` holds image i's 0-based foreground class indices. ReLU(A) is summed over
    the flip pair and over scales after resizing to the common size, then each class map is
    divided by its maximum. Without `with_strided` the stride-4 `cam` is left empty (for
    evaluation, which reads `hr_cam` only).
    """
    height, width = int(images.shape[-2]), int(images.shape[-1])
    keys = [sorted({int(c) for c in image_classes}) for image_classes in classes]
    strided = strided_size(height, width)
    up = (math.ceil(height / HR_STRIDE) * HR_STRIDE, math.ceil(width / HR_STRIDE) * HR_STRIDE)
    strided_sum = hr_sum = None
    if any(keys):
        pairs = np.array([(i, c) for i, k in enumerate(keys) for c in k], dtype=np.int64)
        index = upload(pairs.T.copy(), images.device)  # no wait for the GPU, unlike a list
        for out in tta_outputs(forward, images, tta, scaled):
            # ReLU, sum the flip pair, keep each image's own classes: 1 x K_total x h x w.
            maps = out.clamp_min(0).sum(1)[index[0], index[1]].unsqueeze(0)
            hr = _resize(maps, up)[..., :height, :width]
            hr_sum = hr if hr_sum is None else hr_sum + hr
            if with_strided:
                st = _resize(maps, strided)
                strided_sum = st if strided_sum is None else strided_sum + st
    return CamBatch(
        keys,
        [
            _normalised(strided_sum, strided if with_strided else (0, 0), images.device),
            _normalised(hr_sum, (height, width), images.device),
        ],
    )


def make_cams(*args: Any, **kwargs: Any) -> list[CamRecord]:
    """`cam_batch`'s CAMs (same arguments) as records on the host."""
    batch = cam_batch(*args, **kwargs)
    return batch.records([m.cpu().numpy() for m in batch.maps])


def _normalised(
    maps: torch.Tensor | None, size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    if maps is None:
        return torch.zeros((0, *size), dtype=torch.float32, device=device)
    return normalize_cams(maps)[0].float()


Merge = Literal["probs", "logits"]


@torch.inference_mode()
def segment_probs(
    forward: Forward,
    images: torch.Tensor,
    tta: TtaConfig,
    merge: Merge = "probs",
    scaled: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Class probabilities B x (C+1) x H x W from the views' logits at image size: with
    `merge` "probs" the mean of their softmaxes, with "logits" the softmax of their sum (the
    official Puzzle-CAM code's merge). `scaled`: the batch at every scale, for resize
    "pil-bicubic" (`tta_outputs`)."""
    if merge not in ("probs", "logits"):
        raise WsssError(f"--merge must be probs or logits, got '{merge}'")
    size = (int(images.shape[-2]), int(images.shape[-1]))
    total = None
    for out in tta_outputs(forward, images, tta, scaled):
        batch, views = out.shape[:2]
        resized = _resize(out.flatten(0, 1), size)
        resized = resized.float() if merge == "logits" else resized.softmax(1)
        summed = resized.unflatten(0, (batch, views)).sum(1)
        total = summed if total is None else total + summed
    assert total is not None  # TtaConfig guarantees a scale
    if merge == "logits":
        return total.softmax(1)
    return total / (len(tta.scales) * tta.views)


# -- running a model --------------------------------------------------------------------------


class Predictor:
    """A model called the way inference wants it on its device: in the process's precision
    (--amp) and the layout that runs fastest in it, returning fp32.

    Wrap a model that is already in place (e.g. during training) or use `prepare`.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.amp = amp_policy(device)
        self.memory_format = self.amp.memory_format
        self.amp.keep_outputs_fp32(model)

    @classmethod
    def prepare(cls, model: nn.Module, device: torch.device) -> Predictor:
        """`model` made an inference network: eval mode, the layout of the process's
        precision and, in reduced precision, BatchNorm folded into the convolutions, which
        are cast once."""
        policy = amp_policy(device)
        model.eval()
        if policy.enabled:
            # One bf16 layer instead of two, closer to fp32 (BENCHMARKS.md "Inference with
            # BatchNorm folded"). fp32 keeps its layers, so that its bits stay those every
            # figure of README and docs was measured with; the fold gains little there.
            fold_batchnorm(model)
        model.to(device=device, memory_format=policy.memory_format)
        policy.cast_convolutions(model)
        return cls(model, device)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """Images on the model's device, float and normalised (uint8 ones from the image
        loader are normalised there, after the copy)."""
        images = images.to(self.device, non_blocking=True)
        return normalize_uint8(images) if images.dtype == torch.uint8 else images

    def scaled_to_device(self, batch: dict) -> list[torch.Tensor] | None:
        """An image loader batch's views at every scale (`pil_scales`) on the device, or None."""
        views = batch.get("scaled")
        return None if views is None else [self.to_device(x) for x in views]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with self.amp.autocast():
            return self.model(x.contiguous(memory_format=self.memory_format))


def default_batch_size(device: torch.device) -> int:
    return 8 if device.type == "cuda" else 4

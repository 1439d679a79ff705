"""The one set of joint image/mask transforms used by every trainer and inference stage.

Randomness comes from a `numpy.random.Generator` the caller derives from (seed, epoch,
index), so an epoch's augmentation is the same whatever the number of loader workers or
processes, and a resumed run sees exactly the crops the uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from wsss.data.palette import IGNORE

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """`long-side`: the paper's random long side + crop; `resized-crop`: random-area crop."""

    crop: int = 512
    scale_range: tuple[int, int] = (320, 640)
    mode: Literal["long-side", "resized-crop"] = "long-side"
    crop_area: tuple[float, float] = (0.4, 1.0)
    hflip: bool = True
    color_jitter: float = 0.0


def normalize(image: Image.Image | np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float CHW tensor with ImageNet mean/std."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def to_chw_uint8(image: Image.Image | np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> uint8 CHW tensor, to be normalised by `normalize_uint8` later."""
    return torch.from_numpy(
        np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    )


# normalize() of every (channel, value), 3 x 256: normalising on the device by a lookup gives
# the same floats as normalize() bit for bit on any device (a division there may round
# differently). One copy per device, made once: a copy from host memory would wait for the GPU.
_VALUES = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (1, 1, 3))
_NORMALIZED: dict[torch.device, torch.Tensor] = {torch.device("cpu"): normalize(_VALUES)[:, 0]}


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 B x 3 x H x W -> float32 as `normalize` gives, computed where `images` are
    (after the copy to a GPU, which then moves a quarter of the bytes)."""
    device = images.device
    if device not in _NORMALIZED:
        _NORMALIZED[device] = _NORMALIZED[torch.device("cpu")].to(device)
    channel = torch.arange(3, device=device).view(1, 3, 1, 1)
    return _NORMALIZED[device][channel, images.long()]


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) times `scale`, rounded (Python's round, as the reference's inference scripts)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def pil_bicubic(image: Image.Image, scale: float) -> Image.Image:
    """`image` resized by `scale` with PIL's bicubic filter on its uint8 pixels: the official
    Puzzle-CAM code's inference resize (`--resize pil-bicubic`); the same size is the image."""
    height, width = scaled_size((image.height, image.width), scale)
    if (height, width) == (image.height, image.width):
        return image
    return image.resize((width, height), Image.BICUBIC)


def resize_pair(
    image: Image.Image, mask: np.ndarray | None, size: tuple[int, int]
) -> tuple[Image.Image, np.ndarray | None]:
    """Resize to (W, H): bilinear for the image, nearest for the mask."""
    if image.size == size:
        return image, mask
    image = image.resize(size, Image.BILINEAR)
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    return image, mask


def _jitter(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    from PIL import ImageEnhance

    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    return image


def random_crop(
    image: torch.Tensor, mask: torch.Tensor | None, crop: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Crop `crop` x `crop`, padding with 0 (image, after normalisation) and 255 (mask)."""
    _, h, w = image.shape
    out_image = image.new_zeros((image.shape[0], crop, crop))
    out_mask = None if mask is None else mask.new_full((crop, crop), IGNORE)
    top = int(rng.integers(0, h - crop + 1)) if h > crop else 0
    left = int(rng.integers(0, w - crop + 1)) if w > crop else 0
    dst_top = int(rng.integers(0, crop - h + 1)) if h < crop else 0
    dst_left = int(rng.integers(0, crop - w + 1)) if w < crop else 0
    ch, cw = min(h, crop), min(w, crop)
    out_image[:, dst_top : dst_top + ch, dst_left : dst_left + cw] = image[
        :, top : top + ch, left : left + cw
    ]
    if mask is not None and out_mask is not None:
        out_mask[dst_top : dst_top + ch, dst_left : dst_left + cw] = mask[
            top : top + ch, left : left + cw
        ]
    return out_image, out_mask


class TrainTransform:
    """Random scale, flip, colour jitter, normalise and crop, on image and mask together."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    def __call__(
        self, image: Image.Image, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        if cfg.mode == "resized-crop":
            image, mask = self._resized_crop(image, mask, rng)
        else:
            long_side = int(rng.integers(cfg.scale_range[0], cfg.scale_range[1] + 1))
            w, h = image.size
            scale = long_side / max(w, h)
            image, mask = resize_pair(
                image, mask, (max(1, round(w * scale)), max(1, round(h * scale)))
            )
        if cfg.hflip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            mask = None if mask is None else np.ascontiguousarray(mask[:, ::-1])
        if cfg.color_jitter > 0:
            image = _jitter(image, cfg.color_jitter, rng)
        tensor = normalize(image)
        mask_tensor = None if mask is None else torch.from_numpy(mask.astype(np.int64))
        if cfg.mode == "resized-crop":
            return tensor, mask_tensor
        return random_crop(tensor, mask_tensor, cfg.crop, rng)

    def _resized_crop(
        self, image: Image.Image, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[Image.Image, np.ndarray | None]:
        """Random crop covering a fraction of the area (aspect 3/4..4/3), resized to crop x crop."""
        w, h = image.size
        area = w * h * rng.uniform(*self.config.crop_area)
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw = int(min(w, max(1, round(np.sqrt(area * aspect)))))
        ch = int(min(h, max(1, round(np.sqrt(area / aspect)))))
        left = int(rng.integers(0, w - cw + 1))
        top = int(rng.integers(0, h - ch + 1))
        image = image.crop((left, top, left + cw, top + ch))
        if mask is not None:
            mask = mask[top : top + ch, left : left + cw]
        return resize_pair(image, mask, (self.config.crop, self.config.crop))


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one sample of one epoch (independent of workers and ranks)."""
    return np.random.default_rng([seed, epoch, index])

"""Training augmentation keeps image and mask aligned: random scale, flip and crop move both
the same way, padding is the fill value in the image and 255 in the mask.

The images encode their own coordinates (R = 5x, G = 7y) and the masks carry x or y as the
label, so after any transform every pixel's label can be checked against its colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss.data.datasets import SegmentationDataset
from wsss.data.palette import IGNORE, save_label_png
from wsss.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    TrainTransform,
    sample_rng,
)
from wsss.data.voc import VocDataset

W, H = 50, 36  # landscape, so a transposed crop or flip cannot line up by accident
DRAWS = 60
# Bilinear image vs nearest mask: the colour and the label of one pixel may differ by most of a
# source pixel; a crop or flip applied to one and not the other is off by one or many.
TOLERANCE = 0.9  # measured at most 0.71 over these draws


def coordinate_image() -> Image.Image:
    y, x = np.mgrid[0:H, 0:W]
    pixels = np.stack([5 * x, 7 * y, np.full_like(x, 255)], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


def coordinate_masks() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:H, 0:W]
    return x.astype(np.uint8), y.astype(np.uint8)


def decode(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source (x, y) of every output pixel, and where the image holds the padding fill."""
    array = image.numpy()
    rgb = (array * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]) * 255.0
    padded = np.all(array == 0.0, axis=0)  # 0 after normalisation: the mean colour
    return rgb[0] / 5.0, rgb[1] / 7.0, padded


def check_aligned(
    image: torch.Tensor, mask_x: torch.Tensor, mask_y: torch.Tensor, crop: int
) -> dict[str, bool]:
    """Assert the correspondence; return which of crop/pad/flip this draw exercised."""
    assert image.shape == (3, crop, crop) and mask_x.shape == mask_y.shape == (crop, crop)
    x, y, padded = decode(image)
    mx, my = mask_x.numpy(), mask_y.numpy()
    assert np.array_equal(mx == IGNORE, padded), "mask padding differs from image padding"
    assert np.array_equal(my == IGNORE, padded)
    inside = ~padded
    assert inside.any()
    # The encoded blue channel is 255 everywhere: no content pixel looks like padding.
    assert np.abs(x[inside] - mx[inside]).max() <= TOLERANCE
    assert np.abs(y[inside] - my[inside]).max() <= TOLERANCE
    rows, cols = np.nonzero(inside)
    # The content is one rectangle (the padding a border around it), not scattered.
    assert inside[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    row = mx[rows.min(), cols.min() : cols.max() + 1].astype(int)
    flipped = bool(row[0] > row[-1])
    return {
        "padded": bool(padded.any()),
        "cropped": bool(mx[inside].min() > 0 or mx[inside].max() < W - 1),
        "flipped": flipped,
    }


@pytest.mark.parametrize("mode", ["long-side", "resized-crop"])
def test_random_scale_flip_and_crop_keep_image_and_mask_aligned(mode: str) -> None:
    crop = 40
    config = AugmentConfig(crop=crop, scale_range=(24, 90), mode=mode, crop_area=(0.2, 1.0))
    transform = TrainTransform(config)
    image, (mask_x, mask_y) = coordinate_image(), coordinate_masks()
    seen = {"padded": 0, "cropped": 0, "flipped": 0}
    for index in range(DRAWS):
        # The same draw twice: the one with the x mask and the one with the y mask.
        tensor, out_x = transform(image, mask_x, sample_rng(7, 0, index))
        again, out_y = transform(image, mask_y, sample_rng(7, 0, index))
        assert torch.equal(tensor, again)
        for key, happened in check_aligned(tensor, out_x, out_y, crop).items():
            seen[key] += happened
    # Every augmentation happened in some draws and not in others.
    assert 0 < seen["flipped"] < DRAWS
    assert seen["cropped"] > 0
    if mode == "long-side":
        assert 0 < seen["padded"] < DRAWS


def test_segmentation_dataset_feeds_its_mask_through_the_same_draw(tmp_path: Path) -> None:
    """The dataset's image (from JPEGImages) and label (from a label folder) stay aligned."""
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    # PNG content under the .jpg name: PIL reads it by content, and it is lossless.
    coordinate_image().save(root / "JPEGImages" / "img.jpg", format="PNG")
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(W)))
    voc = VocDataset.open(root)
    mask_x, mask_y = coordinate_masks()
    save_label_png(tmp_path / "x" / "img.png", mask_x)
    save_label_png(tmp_path / "y" / "img.png", mask_y)
    transform = TrainTransform(AugmentConfig(crop=40, scale_range=(24, 90)))
    by_x = SegmentationDataset(voc, ["img"] * 12, transform, tmp_path / "x", seed=5)
    by_y = SegmentationDataset(voc, ["img"] * 12, transform, tmp_path / "y", seed=5)
    flips = 0
    for epoch in (0, 1):
        by_x.set_epoch(epoch)
        by_y.set_epoch(epoch)
        for index in range(len(by_x)):
            a, b = by_x[index], by_y[index]
            assert torch.equal(a["image"], b["image"])
            flips += check_aligned(a["image"], a["mask"], b["mask"], 40)["flipped"]
    assert 0 < flips < 24

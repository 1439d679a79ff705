"""Pictures for a quick look: CAM heatmaps over their image, label colours over their image,
and the threshold curve.

matplotlib draws through a bare `Figure` (Agg, no display, no pyplot state); its colour maps
colour the CAMs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from wsss.camfile import load_cam_file
from wsss.data.palette import colorize
from wsss.data.voc import VocDataset
from wsss.io import atomic_write_bytes
from wsss.resume import output_path

HEATMAP_WEIGHT = 0.5
OVERLAY_DIR = "overlays"  # beside the CAM files
LABEL_HEIGHT = 12


def heatmap(cam: np.ndarray) -> np.ndarray:
    """A CAM in [0, 1] (H x W) as a jet-coloured uint8 RGB image."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3]
    return (colours * 255).round().astype(np.uint8)


def cam_overlay(image: np.ndarray, cams: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """A strip: the image, then the image blended with each class's heatmap, with captions."""
    panels = [image] + [
        (image * (1 - HEATMAP_WEIGHT) + heatmap(cam) * HEATMAP_WEIGHT).round().astype(np.uint8)
        for cam in cams
    ]
    strip = Image.fromarray(np.concatenate(panels, axis=1))
    canvas = Image.new("RGB", (strip.width, strip.height + LABEL_HEIGHT), (0, 0, 0))
    canvas.paste(strip, (0, LABEL_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    width = image.shape[1]
    for i, name in enumerate(["image", *names]):
        draw.text((i * width + 2, 0), name, fill=(255, 255, 255))
    return np.asarray(canvas)


def label_overlay(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The image with each non-background pixel blended half-and-half with its class's
    palette colour (background pixels unchanged); integer arithmetic: 2 bytes per value of a
    possibly very large image, not 8."""
    blended = ((image.astype(np.uint16) + colorize(label) + 1) // 2).astype(np.uint8)
    return np.where((label > 0)[..., None], blended, image)


def save_jpeg(path: str | Path, pixels: np.ndarray, quality: int = 90) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return atomic_write_bytes(path, buffer.getvalue())


def save_png(path: str | Path, pixels: np.ndarray) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


def plot_curve(
    path: str | Path, curve: Sequence[tuple[float, float]], best: tuple[float, float], title: str
) -> Path:
    """The threshold-mIoU curve with its best point marked, as a PNG."""
    return atomic_write_bytes(path, curves_png({"": (curve, best)}, title))


def curves_png(
    curves: dict[str, tuple[Sequence[tuple[float, float]], tuple[float, float]]], title: str
) -> bytes:
    """Threshold-mIoU curves (name -> (curve, best point)) on one axes, as PNG bytes; a
    single unnamed curve gets no legend."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5), dpi=100)  # no pyplot: no global state, no display
    axes = figure.subplots()
    for name, (curve, best) in curves.items():
        thresholds, mious = zip(*curve, strict=True)
        text = f"{best[1]:.2f} @ {best[0]:.2f}"
        # named curves carry their best point in the legend: annotations would collide
        label = f"{name}: best {text}" if name else None
        (line,) = axes.plot(thresholds, mious, marker="o", markersize=3, label=label)
        colour = line.get_color() if name else "tab:red"
        axes.plot([best[0]], [best[1]], marker="*", markersize=12, color=colour)
        if not name:
            axes.annotate(text, best, textcoords="offset points", xytext=(6, -12))
    if any(curves):
        axes.legend(loc="best", fontsize="small")
    axes.set_xlabel("background threshold")
    axes.set_ylabel("mIoU %")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure_png(figure)


def figure_png(figure: Any) -> bytes:
    """A matplotlib `Figure` laid out tightly, as PNG bytes."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_overlays(voc: VocDataset, ids: list[str], out: Path, suffix: str) -> list[Path]:
    """Heatmap strips (image + one jet-coloured CAM per class) of the ids whose CAMs exist."""
    written = []
    for image_id in ids:
        cam_path = output_path(out, image_id, suffix)
        if not cam_path.is_file():
            continue  # another shard's image that is not finished yet
        image = np.asarray(voc.load_image(image_id))
        record = load_cam_file(cam_path, voc.num_classes, image.shape[:2])
        names = [voc.classes[label - 1] for label in record.labels]
        path = output_path(out / OVERLAY_DIR, image_id, ".png")
        written.append(save_png(path, cam_overlay(image, record.hr_cam, names)))
    return written

"""Pictures of a pipeline run for people: image, CAM, pseudo label, prediction, ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wsss.camfile import find_cam_file, load_cam_file
from wsss.data.palette import IGNORE, colorize, read_label_png
from wsss.data.voc import VocDataset
from wsss.io import safe_child
from wsss.overlay import HEATMAP_WEIGHT, heatmap, save_png

CAPTION_HEIGHT = 14


def labelled_grid(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[str]) -> np.ndarray:
    """Equal-size RGB tiles in rows, with one caption per column on top."""
    height, width = rows[0][0].shape[:2]
    canvas = Image.new("RGB", (width * len(captions), CAPTION_HEIGHT + height * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, caption in enumerate(captions):
        draw.text((column * width + 3, 1), caption, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            canvas.paste(Image.fromarray(tile), (c * width, CAPTION_HEIGHT + r * height))
    return np.asarray(canvas)


def label_picture(label: np.ndarray) -> np.ndarray:
    """Palette colours, with ignore (255) shown white rather than the VOC cream."""
    rgb = colorize(label)
    rgb[label == IGNORE] = 255
    return rgb


def cam_picture(image: np.ndarray, cam_path: Path, num_classes: int) -> np.ndarray:
    """The image blended with the heatmap of the strongest class at each pixel."""
    record = load_cam_file(cam_path, num_classes)
    strongest = record.hr_cam.max(axis=0) if len(record.hr_cam) else np.zeros(image.shape[:2])
    blended = image * (1 - HEATMAP_WEIGHT) + heatmap(strongest) * HEATMAP_WEIGHT
    return blended.round().astype(np.uint8)


def pipeline_figures(run_dir: Path, data: Path, cam_split: str, eval_split: str,
                     count: int = 4) -> list[Path]:  # fmt: skip
    """`samples_train.png` (image, CAM, pseudo label, GT) and `samples_val.png`
    (image, prediction, GT) for the first `count` images of each split."""
    voc = VocDataset.open(data)
    train_rows, val_rows = [], []
    for image_id in voc.split_ids(cam_split)[:count]:
        image = np.asarray(voc.load_image(image_id))
        train_rows.append([
            image,
            cam_picture(image, find_cam_file(run_dir / "cams", image_id), voc.num_classes),
            label_picture(read_label_png(safe_child(run_dir / "pseudo", image_id, ".png"))),
            label_picture(voc.load_mask(image_id)),
        ])  # fmt: skip
    for image_id in voc.split_ids(eval_split)[:count]:
        image = np.asarray(voc.load_image(image_id))
        prediction = read_label_png(safe_child(run_dir / f"pred_{eval_split}", image_id, ".png"))
        val_rows.append([image, label_picture(prediction), label_picture(voc.load_mask(image_id))])
    return [
        save_png(run_dir / "samples_train.png",
                 labelled_grid(train_rows, ["image", "CAM", "pseudo label", "ground truth"])),
        save_png(run_dir / "samples_val.png",
                 labelled_grid(val_rows, ["image", "prediction", "ground truth"])),
    ]  # fmt: skip


def cam_comparison_figure(out_png: Path, data: Path, cam_dirs: dict[str, Path],
                          ids: Sequence[str]) -> Path:  # fmt: skip
    """One row per image: the image, each run's CAM (strongest class), the ground truth."""
    voc = VocDataset.open(data)
    rows = []
    for image_id in ids:
        image = np.asarray(voc.load_image(image_id))
        cams = [cam_picture(image, find_cam_file(d, image_id), voc.num_classes)
                for d in cam_dirs.values()]  # fmt: skip
        rows.append([image, *cams, label_picture(voc.load_mask(image_id))])
    return save_png(out_png, labelled_grid(rows, ["image", *cam_dirs, "ground truth"]))

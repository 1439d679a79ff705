"""Pictures of a pipeline run for people: image, CAM, pseudo label, prediction, ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from wsss.camfile import find_cam_file, load_cam_file
from wsss.data.palette import IGNORE, colorize, read_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
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


@dataclass(frozen=True)
class Column:
    """One column of a sample grid: a folder of CAM files (`cam`) or of label PNGs (`label`)."""

    caption: str
    folder: Path
    kind: Literal["cam", "label"]


def sample_grid(voc: VocDataset, ids: Sequence[str], columns: Sequence[Column],
                tile: int | None = None,
                damaged: list[str] | None = None) -> np.ndarray:  # fmt: skip
    """One row per image: the image, each column's picture of it, and the ground truth when
    any of the images has a mask. A file a column lacks (an interrupted stage) shows as a
    grey "missing" tile; `tile` fits every picture into a tile x tile square (images of
    different sizes), else all images must share one size. With `damaged`, a file that
    cannot be read (a truncated CAM file) shows as a "damaged" tile and is named in it;
    without, it is a one-line error."""
    with_gt = any(voc.has_mask(image_id) for image_id in ids)
    rows = []
    for image_id in ids:
        image = np.asarray(voc.load_image(image_id))
        row = [image]
        for column in columns:
            try:
                row.append(_column_picture(image, image_id, column, voc))
            except WsssError as exc:
                if damaged is None:
                    raise
                damaged.append(str(exc))
                row.append(missing_tile(image.shape[:2], "damaged"))
        if with_gt:
            row.append(label_picture(voc.load_mask(image_id)) if voc.has_mask(image_id)
                       else missing_tile(image.shape[:2], "no mask"))  # fmt: skip
        rows.append([fit_tile(picture, tile) for picture in row] if tile else row)
    captions = ["image", *(column.caption for column in columns)]
    return labelled_grid(rows, captions + ["ground truth"] if with_gt else captions)


def _column_picture(
    image: np.ndarray, image_id: str, column: Column, voc: VocDataset
) -> np.ndarray:
    if column.kind == "cam":
        try:
            path = find_cam_file(column.folder, image_id)
        except WsssError:
            return missing_tile(image.shape[:2])
        return cam_picture(image, path, voc.num_classes)
    path = safe_child(column.folder, image_id, ".png")
    if not path.is_file():
        return missing_tile(image.shape[:2])
    return label_picture(read_label_png(path))


def missing_tile(size: tuple[int, int], text: str = "missing") -> np.ndarray:
    """A light grey tile saying why a picture is absent."""
    canvas = Image.new("RGB", (size[1], size[0]), (224, 224, 224))
    ImageDraw.Draw(canvas).text((4, size[0] // 2 - 6), text, fill=(96, 96, 96))
    return np.asarray(canvas)


def fit_tile(picture: np.ndarray, tile: int) -> np.ndarray:
    """The picture scaled to fit a tile x tile square, centred on white; label pictures are
    scaled nearest-neighbour so that no blended colours appear between classes."""
    height, width = picture.shape[:2]
    scale = tile / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    scaled = Image.fromarray(picture).resize(size, resample)
    canvas = Image.new("RGB", (tile, tile), "white")
    canvas.paste(scaled, ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return np.asarray(canvas)


def pipeline_figures(run_dir: Path, data: Path, cam_split: str, eval_split: str,
                     count: int = 4) -> list[Path]:  # fmt: skip
    """`samples_train.png` (image, CAM, pseudo label, GT) and `samples_val.png`
    (image, prediction, GT) for the first `count` images of each split."""
    voc = VocDataset.open(data)
    train = [
        Column("CAM", run_dir / "cams", "cam"),
        Column("pseudo label", run_dir / "pseudo", "label"),
    ]
    val = [Column("prediction", run_dir / f"pred_{eval_split}", "label")]
    train_ids, val_ids = voc.split_ids(cam_split)[:count], voc.split_ids(eval_split)[:count]
    return [
        save_png(run_dir / "samples_train.png", sample_grid(voc, train_ids, train)),
        save_png(run_dir / "samples_val.png", sample_grid(voc, val_ids, val)),
    ]


def cam_comparison_figure(out_png: Path, data: Path, cam_dirs: dict[str, Path],
                          ids: Sequence[str]) -> Path:  # fmt: skip
    """One row per image: the image, each run's CAM (strongest class), the ground truth."""
    voc = VocDataset.open(data)
    columns = [Column(name, folder, "cam") for name, folder in cam_dirs.items()]
    return save_png(out_png, sample_grid(voc, ids, columns))

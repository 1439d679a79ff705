"""Ground truth to score against: a dataset root (VOC layout) or a plain folder of label PNGs."""

from __future__ import annotations

from pathlib import Path

from wsss.data.classes import dataset_classes, read_class_list
from wsss.data.palette import read_label_png
from wsss.data.voc import IMAGES, VocDataset, check_mask, image_size
from wsss.errors import WsssError, file_error
from wsss.io import safe_child


class GroundTruth:
    """A dataset root (VOC layout) or a plain directory of label PNGs."""

    def __init__(self, path: Path, class_list: Path | None) -> None:
        if not path.is_dir():
            raise file_error(path, "ground-truth directory not found")
        self.path = path
        self.dataset = VocDataset.open(path, class_list) if (path / IMAGES).is_dir() else None
        if self.dataset is not None:
            self.classes = self.dataset.classes
        elif class_list is not None:
            self.classes = read_class_list(class_list)
        else:
            # A bare mask folder: look for classes.txt beside it (e.g. ROOT/SegmentationClass).
            self.classes = dataset_classes(
                path.parent if not (path / "classes.txt").is_file() else path
            )

    def mask(self, image_id: str):
        if self.dataset is not None:
            # The image header (not its pixels) tells a mask of the wrong size from a wrong
            # prediction or CAM; without the image the comparison names the other file.
            image = self.dataset.image_path(image_id)
            size = image_size(image) if image.is_file() else None
            return self.dataset.load_mask(image_id, expect_size=size)
        path = safe_child(self.path, image_id, ".png")
        mask = read_label_png(path)
        check_mask(mask, path, len(self.classes))
        return mask

    def has_mask(self, image_id: str) -> bool:
        if self.dataset is not None:
            return self.dataset.has_mask(image_id)
        return safe_child(self.path, image_id, ".png").is_file()

    def default_ids(self) -> list[str]:
        if self.dataset is not None:
            raise WsssError(
                f"{self.path}: a dataset root needs --list or --split to choose the images"
            )
        ids = sorted(p.stem for p in self.path.glob("*.png"))
        if not ids:
            raise file_error(self.path, "no ground-truth PNGs found")
        return ids

"""torch Datasets over a `VocDataset` split, for the trainers.

Each worker loads and decodes its own images; nothing holds a whole split in memory.
Call `set_epoch` before every epoch so augmentation depends on (seed, epoch, index) only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wsss.data.palette import IGNORE, read_label_png
from wsss.data.transforms import TrainTransform, sample_rng
from wsss.data.voc import VocDataset, check_mask
from wsss.errors import file_error
from wsss.io import safe_child

# What each part of a training set's fingerprint covers (recorded in last.pt; `--resume`
# refuses a set whose fingerprint changed, naming these).
FINGERPRINT_PARTS = {
    "ids": "the split's image ids",
    "labels": "the training labels",
    "images": "the image files (their sizes)",
}


def _digest(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "little"))
        digest.update(chunk)
    return digest.hexdigest()


def _ids_and_images(voc: VocDataset, ids: list[str]) -> dict[str, str]:
    sizes = (str(voc.image_path(i).stat().st_size).encode() for i in ids)
    return {"ids": _digest(i.encode() for i in ids), "images": _digest(sizes)}


class ClassificationDataset(Dataset):
    """(image, multi-hot label) pairs for the CAM classifier."""

    def __init__(
        self, voc: VocDataset, ids: list[str], transform: TrainTransform, seed: int = 0
    ) -> None:
        self.voc, self.ids, self.transform, self.seed = voc, ids, transform, seed
        self.epoch = 0
        # Labels are read up front: a bad XML fails before training starts, not in a worker.
        self.labels = torch.from_numpy(np.stack([voc.image_labels(i) for i in ids]))
        empty = [i for i, row in zip(ids, self.labels, strict=True) if row.sum() == 0]
        if empty:
            raise file_error(
                voc.label_source(empty[0]),
                f"image has no class label ('{empty[0]}', one of {len(empty)} in the split); "
                "the classifier needs at least one class per image",
            )

    def fingerprint(self) -> dict[str, str]:
        """The split's ids, image-level labels and image file sizes, hashed."""
        labels = _digest([self.labels.numpy().tobytes()])
        return {**_ids_and_images(self.voc, self.ids), "labels": labels}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.voc.load_image(self.ids[index])
        tensor, _ = self.transform(image, None, sample_rng(self.seed, self.epoch, index))
        return {"image": tensor, "label": self.labels[index], "index": torch.tensor(index)}


class SegmentationDataset(Dataset):
    """(image, mask) pairs; masks from a label directory (pseudo labels) or the ground truth."""

    def __init__(
        self,
        voc: VocDataset,
        ids: list[str],
        transform: TrainTransform,
        labels_dir: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        self.voc, self.ids, self.transform, self.seed = voc, ids, transform, seed
        self.labels_dir = Path(labels_dir) if labels_dir is not None else None
        self.epoch = 0
        if self.labels_dir is not None:
            for image_id in ids:
                path = safe_child(self.labels_dir, image_id, ".png")
                if not path.is_file():
                    raise file_error(path, f"label of list entry '{image_id}' not found")
        self._require_labelled_pixels()

    def _label_path(self, image_id: str) -> Path:
        if self.labels_dir is None:
            return self.voc.mask_path(image_id)
        return safe_child(self.labels_dir, image_id, ".png")

    def fingerprint(self) -> dict[str, str]:
        """The split's ids, its label files' bytes (pseudo labels or masks: a re-made set
        with other thresholds differs) and image file sizes, hashed."""
        labels = _digest(self._label_path(i).read_bytes() for i in self.ids)
        return {**_ids_and_images(self.voc, self.ids), "labels": labels}

    def _require_labelled_pixels(self) -> None:
        """Refuse a split whose every label pixel is 255: training would run on a loss of 0.
        Reading stops at the first file with a labelled pixel, usually the first one."""
        for image_id in self.ids:
            path = self._label_path(image_id)
            if not path.is_file() or (read_label_png(path) != IGNORE).any():
                return
        folder = self.labels_dir or self.voc.mask_path(self.ids[0]).parent
        raise file_error(
            folder,
            f"every pixel of the {len(self.ids)} label files of this split is 255 (ignore): "
            "nothing to train on (pseudo labels made with thresholds that leave no region?)",
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def load_mask(self, image_id: str, size: tuple[int, int]):
        if self.labels_dir is None:
            return self.voc.load_mask(image_id, size)
        path = self._label_path(image_id)
        mask = read_label_png(path)
        check_mask(mask, path, self.voc.num_classes, size)
        return mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_id = self.ids[index]
        image = self.voc.load_image(image_id)
        mask = self.load_mask(image_id, image.size)
        tensor, mask_tensor = self.transform(image, mask, sample_rng(self.seed, self.epoch, index))
        return {"image": tensor, "mask": mask_tensor, "index": torch.tensor(index)}

"""torch Datasets over a `VocDataset` split, for the trainers.

Each worker loads and decodes its own images; nothing holds a whole split in memory.
Call `set_epoch` before every epoch so augmentation depends on (seed, epoch, index) only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from wsss.data.palette import read_label_png
from wsss.data.transforms import TrainTransform, sample_rng
from wsss.data.voc import VocDataset, check_mask
from wsss.errors import file_error
from wsss.io import safe_child


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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def load_mask(self, image_id: str, size: tuple[int, int]):
        if self.labels_dir is None:
            return self.voc.load_mask(image_id, size)
        path = safe_child(self.labels_dir, image_id, ".png")
        mask = read_label_png(path)
        check_mask(mask, path, self.voc.num_classes, size)
        return mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_id = self.ids[index]
        image = self.voc.load_image(image_id)
        mask = self.load_mask(image_id, image.size)
        tensor, mask_tensor = self.transform(image, mask, sample_rng(self.seed, self.epoch, index))
        return {"image": tensor, "mask": mask_tensor, "index": torch.tensor(index)}

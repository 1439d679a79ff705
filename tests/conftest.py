"""Shared test setup: the helpers module is importable from every test file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _all_background_miou(root: str | Path, split: str) -> float:
    """The mIoU (%) of predicting background everywhere on a split's ground truth: the trivial
    baseline a trained model's figure must beat."""
    import numpy as np

    from wsss.data.voc import VocDataset
    from wsss.metrics import ConfusionMatrix

    voc = VocDataset.open(root)
    matrix = ConfusionMatrix(voc.num_classes + 1)
    for image_id in voc.split_ids(split):
        gt = voc.load_mask(image_id)
        matrix.update(gt, np.zeros_like(gt))
    return matrix.compute().miou


@pytest.fixture
def all_background_miou():
    """`all_background_miou(root, split)`: see `_all_background_miou`."""
    return _all_background_miou


def _cams_miou(voc, folder: Path, split: str, threshold: float) -> float:
    """mIoU (%) of a split's CAM files at one background threshold, recomputed from the files:
    each pixel takes the argmax of [threshold, CAMs], mapped through the file's keys."""
    import numpy as np

    from wsss.camfile import find_cam_file, load_cam_file
    from wsss.metrics import ConfusionMatrix

    matrix = ConfusionMatrix(voc.num_classes + 1)
    for image_id in voc.split_ids(split):
        record = load_cam_file(find_cam_file(folder, image_id), voc.num_classes)
        padded = np.pad(record.hr_cam, ((1, 0), (0, 0), (0, 0)), constant_values=threshold)
        matrix.update(voc.load_mask(image_id), record.keys[np.argmax(padded, axis=0)])
    return matrix.compute().miou


@pytest.fixture
def cams_miou():
    """`cams_miou(voc, folder, split, threshold)`: see `_cams_miou`."""
    return _cams_miou

"""Shared test setup: the helpers module is importable from every test file, and the tiny
datasets and untrained checkpoints that several test files run stages on are built here."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers_tinyvoc import make_tiny_voc, one_torch_thread, save_model  # noqa: E402

CLASSES = ("cat", "dog")
RW_SIZE = 40


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test with one torch thread (see `one_torch_thread`)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def voc4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 40 px images, classes cat and dog; val is the first two."""
    return make_tiny_voc(tmp_path_factory.mktemp("voc4"), n=4, size=40)


@pytest.fixture(scope="session")
def cam_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six 40 px images and an untrained ResNet-18 CAM classifier: (root, checkpoint)."""
    from wsss.models.classifier import CamClassifier

    base = tmp_path_factory.mktemp("make_cam")
    root = make_tiny_voc(base / "voc", n=6, size=40, classes=CLASSES)
    return root, save_model(base / "cls.pt", CamClassifier("resnet18", len(CLASSES)), CLASSES)


@pytest.fixture(scope="session")
def seg_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six 36 px images (one of them 44 x 28) and an untrained DeepLab: (root, checkpoint)."""
    import torch
    from PIL import Image

    from wsss.models.deeplab import DeepLabV3Plus

    base = tmp_path_factory.mktemp("predict")
    root = make_tiny_voc(base / "voc", n=6, size=36, classes=CLASSES)
    # one image of another size: outputs follow each image's own size
    path = root / "JPEGImages" / "img_001.jpg"
    Image.open(path).resize((44, 28)).save(path)
    torch.manual_seed(0)
    model = DeepLabV3Plus("resnet18", len(CLASSES) + 1)
    return root, save_model(base / "seg.pt", model, CLASSES)


@pytest.fixture(scope="session")
def rw_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny VOC, confident labels (GT with its 255 borders), CAM files, an affinity checkpoint."""
    from wsss.cam_math import strided_size
    from wsss.camfile import CamRecord, save_cam_file
    from wsss.data.palette import save_label_png
    from wsss.data.voc import VocDataset
    from wsss.models.affinity import AffinityNet

    base = tmp_path_factory.mktemp("make_rw")
    root = make_tiny_voc(base / "voc", n=6, size=RW_SIZE, classes=CLASSES)
    voc = VocDataset.open(root)
    rng = np.random.default_rng(0)
    for image_id in voc.split_ids("train"):
        save_label_png(base / "labels" / f"{image_id}.png", voc.load_mask(image_id))
        keys = np.array([0, *(c + 1 for c in voc.image_classes(image_id))])
        cam = rng.random((len(keys) - 1, *strided_size(RW_SIZE, RW_SIZE)), dtype=np.float32)
        hr = rng.random((len(keys) - 1, RW_SIZE, RW_SIZE), dtype=np.float32)
        save_cam_file(base / "cams" / f"{image_id}.npy", CamRecord(keys, cam, hr))
    return {
        "root": root,
        "labels": base / "labels",
        "cams": base / "cams",
        "checkpoint": save_model(base / "aff.pt", AffinityNet("resnet18"), CLASSES),
    }

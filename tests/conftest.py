"""Shared test setup: the helpers module is importable from every test file, and the tiny
datasets and untrained checkpoints that several test files run stages on are built here."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
# benchmarks/ and experiments/ live outside the installed package, in the repository
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from helpers_tinyvoc import make_tiny_voc, one_torch_thread, save_model  # noqa: E402

from wsss.data.voc import VocDataset  # noqa: E402


@pytest.fixture
def labels_only_dataset(tmp_path: Path) -> Callable[..., Path]:
    """A maker of the weakly-supervised user's dataset: JPEGImages, classes.txt, split lists
    and one labels file (`fmt` csv or json), with no XML and no mask anywhere."""

    def make(name: str = "data", fmt: str = "csv", n: int = 6, size: int = 40) -> Path:
        root = make_tiny_voc(tmp_path / name, n=n, size=size)
        voc = VocDataset.open(root)
        labels = {i: [voc.classes[c] for c in voc.image_classes(i)] for i in voc.split_ids("train")}
        shutil.rmtree(root / "Annotations")
        shutil.rmtree(root / "SegmentationClass")
        if fmt == "csv":
            rows = [f"{image_id},{';'.join(names)}" for image_id, names in labels.items()]
            (root / "labels.csv").write_text("id,labels\n" + "\n".join(rows) + "\n")
        else:
            (root / "labels.json").write_text(json.dumps(labels))
        return root

    return make


# -- a COCO 2014-format dataset, small enough to paint the expected masks by hand -----------
COCO_SIZE = (48, 40)  # width, height
# Non-contiguous category ids, listed out of order: labels follow the id order 1, 3, 18, 90.
COCO_CATEGORIES = [(18, "dog"), (1, "person"), (90, "toothbrush"), (3, "car")]
COCO_CLASSES = ("person", "car", "dog", "toothbrush")
PERSON, CAR, DOG, TOOTHBRUSH = 1, 2, 3, 4


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """A polygon whose pycocotools rasterisation is exactly pixels [y0:y1, x0:x1]."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with zeros."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((COCO_SIZE[1], COCO_SIZE[0]), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def write_coco(root: Path) -> dict[str, np.ndarray]:
    """Write train2014/, val2014/ and annotations/ under `root`; return the expected masks.

    - ..._09: a small person listed before a large dog it overlaps (the smaller stays on
      top), and a crowd car in uncompressed RLE overlapping the dog (smaller: on top).
    - ..._25: a compressed-RLE toothbrush, a two-part person polygon, and a dog and a car of
      equal area overlapping (the tie keeps annotation order: the dog, listed first).
    - ..._30 (train) and ..._73 (val): no objects, so in no list.
    - val ..._42: a person over the whole image and a dog without an `area` field.
    """
    from pycocotools import mask as mask_utils

    width, height = COCO_SIZE
    rng = np.random.default_rng(0)
    expected: dict[str, np.ndarray] = {}
    ann_id = iter(range(1000, 2000))

    def ann(image_id: int, category: int, segmentation, area: float | None, crowd: int = 0):
        record = {"id": next(ann_id), "image_id": image_id, "category_id": category,
                  "segmentation": segmentation, "iscrowd": crowd, "bbox": [0, 0, 1, 1]}  # fmt: skip
        if area is not None:
            record["area"] = area
        return record

    splits = {
        "train2014": {
            9: [
                ann(9, 1, [_rect(10, 10, 20, 20)], 100.0),  # person (small), listed first
                ann(9, 18, [_rect(4, 4, 30, 30)], 676.0),  # dog (large)
                ann(9, 3, _uncompressed_rle(_box(26, 38, 26, 46)), 240.0, crowd=1),  # car
            ],
            25: [
                ann(25, 90, _compressed(mask_utils, _box(24, 36, 4, 20)), 192.0),
                ann(25, 1, [_rect(38, 2, 46, 10), _rect(38, 28, 46, 36)], 128.0),
                ann(25, 18, [_rect(20, 10, 30, 20)], 100.0),  # dog, tie with the car: first
                ann(25, 3, [_rect(25, 10, 35, 20)], 100.0),
            ],
            30: [],
        },
        "val2014": {
            42: [
                ann(42, 1, [_rect(0, 0, width, height)], float(width * height)),
                ann(42, 18, [_rect(8, 8, 16, 16)], None),
            ],  # fmt: skip
            73: [],
        },
    }
    expected_values = {
        9: [(PERSON, _box(10, 20, 10, 20)), (CAR, _box(26, 38, 26, 46)), (DOG, _box(4, 30, 4, 30))],
        25: [
            (DOG, _box(10, 20, 20, 30)),
            (CAR, _box(10, 20, 25, 35)),
            (PERSON, _box(2, 10, 38, 46) | _box(28, 36, 38, 46)),
            (TOOTHBRUSH, _box(24, 36, 4, 20)),
        ],  # fmt: skip
        42: [(DOG, _box(8, 16, 8, 16)), (PERSON, _box(0, height, 0, width))],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for folder, images in splits.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        records, annotations = [], []
        for image_id, anns in images.items():
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / name, quality=90)
            records.append({"id": image_id, "file_name": name, "width": width, "height": height})
            annotations += anns
            if image_id in expected_values:
                label = np.zeros((height, width), dtype=np.uint8)
                for value, region in expected_values[image_id]:  # top first: paint under it
                    label[(region > 0) & (label == 0)] = value
                expected[Path(name).stem] = label
        categories = [{"id": i, "name": n, "supercategory": "x"} for i, n in COCO_CATEGORIES]
        data = {"images": records, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(data))
    return expected


def _compressed(mask_utils, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


@pytest.fixture
def coco_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A COCO 2014-layout root and the hand-painted masks its conversion must produce."""
    root = tmp_path / "coco"
    return root, write_coco(root)


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
    import torch

    from wsss.models.classifier import CamClassifier

    base = tmp_path_factory.mktemp("make_cam")
    root = make_tiny_voc(base / "voc", n=6, size=40, classes=CLASSES)
    torch.manual_seed(0)  # one network every session: figures such as bf16's error repeat
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


def _all_background_miou(root: str | Path, split: str) -> float:
    """The mIoU (%) of predicting background everywhere on a split's ground truth: the trivial
    baseline a trained model's figure must beat."""
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

"""The demo generator: reproducible bytes, a complete VOC layout, and parts inside objects."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from wsss.data.classes import read_class_list
from wsss.data.demo import DEMO_CLASSES, PART_DIR, generate_demo, render_sample
from wsss.data.palette import IGNORE, read_label_png
from wsss.errors import WsssError

SIZE = 64
N_TRAIN, N_VAL = 6, 2
C = len(DEMO_CLASSES)


def make(root: Path, seed: int = 3, n_train: int = N_TRAIN, n_val: int = N_VAL) -> Path:
    summary = generate_demo(
        root, n_train=n_train, n_val=n_val, size=SIZE, seed=seed, progress=False
    )
    assert summary.root == root and summary.classes == DEMO_CLASSES
    return root


def all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def object_names(xml_path: Path) -> list[str]:
    return [node.findtext("name") for node in ET.parse(xml_path).getroot().iter("object")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make(tmp_path_factory.mktemp("demo") / "data")


@pytest.fixture(scope="module")
def samples(demo: Path) -> list[tuple[str, np.ndarray, np.ndarray, Path]]:
    ids = (demo / "ImageSets" / "Segmentation" / "trainval.txt").read_text().split()
    return [
        (
            image_id,
            read_label_png(demo / "SegmentationClass" / f"{image_id}.png"),
            read_label_png(demo / PART_DIR / f"{image_id}.png"),
            demo / "Annotations" / f"{image_id}.xml",
        )
        for image_id in ids
    ]


def test_same_seed_gives_identical_bytes_and_other_seed_differs(demo: Path, tmp_path: Path) -> None:
    first = all_files(demo)
    again = all_files(make(tmp_path / "again"))
    assert first == again
    other = all_files(make(tmp_path / "other", seed=4))
    assert other.keys() == first.keys()
    changed = [name for name in first if name.endswith(".jpg") and first[name] != other[name]]
    assert len(changed) == N_TRAIN + N_VAL


def test_an_image_does_not_depend_on_how_many_are_generated(demo: Path, tmp_path: Path) -> None:
    smaller = make(tmp_path / "smaller", n_train=2, n_val=1)
    for name in ("JPEGImages/demo_000002.jpg", "SegmentationClass/demo_000003.png"):
        assert (smaller / name).read_bytes() == (demo / name).read_bytes()


def test_lists_and_class_file(demo: Path) -> None:
    lists = demo / "ImageSets" / "Segmentation"
    train = (lists / "train.txt").read_text().split()
    val = (lists / "val.txt").read_text().split()
    assert train == [f"demo_{i:06d}" for i in range(1, N_TRAIN + 1)]
    assert val == [f"demo_{i:06d}" for i in range(N_TRAIN + 1, N_TRAIN + N_VAL + 1)]
    assert (lists / "trainval.txt").read_text().split() == train + val
    assert read_class_list(demo / "classes.txt") == DEMO_CLASSES


def test_every_listed_id_has_all_files_at_the_right_size(demo: Path, samples) -> None:
    for image_id, label, parts, xml_path in samples:
        with Image.open(demo / "JPEGImages" / f"{image_id}.jpg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (SIZE, SIZE))
        for folder in ("SegmentationClass", PART_DIR):
            with Image.open(demo / folder / f"{image_id}.png") as png:
                assert png.mode == "P"
        assert label.shape == parts.shape == (SIZE, SIZE)
        root = ET.parse(xml_path).getroot()
        assert root.findtext("filename") == f"{image_id}.jpg"
        dims = [root.findtext(f"size/{tag}") for tag in ("width", "height", "depth")]
        assert dims == [str(SIZE), str(SIZE), "3"]


def test_ground_truth_values_and_object_names_match(samples) -> None:
    for image_id, label, _, xml_path in samples:
        values = set(np.unique(label).tolist())
        assert values <= set(range(C + 1)) | {IGNORE}, image_id
        names = object_names(xml_path)
        assert 1 <= len(names) <= 3, image_id
        present = {DEMO_CLASSES[v - 1] for v in values - {0, IGNORE}}
        assert set(names) == present, image_id


def test_boxes_cover_their_class_pixels(samples) -> None:
    for image_id, label, _, xml_path in samples:
        for node in ET.parse(xml_path).getroot().iter("object"):
            assert node.findtext("difficult") == "0"
        for value in set(np.unique(label).tolist()) - {0, IGNORE}:
            covered = np.zeros_like(label, dtype=bool)
            for node in ET.parse(xml_path).getroot().iter("object"):
                if node.findtext("name") == DEMO_CLASSES[value - 1]:
                    x0, y0, x1, y1 = (
                        int(node.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")
                    )
                    assert 1 <= x0 <= x1 <= SIZE and 1 <= y0 <= y1 <= SIZE
                    covered[y0 - 1 : y1, x0 - 1 : x1] = True
            assert covered[label == value].all(), image_id


def test_ignore_band_is_thin_and_separates_regions(samples) -> None:
    for image_id, label, _, _ in samples:
        band = label == IGNORE
        assert band.any(), image_id
        assert not ndimage.binary_erosion(band, np.ones((5, 5), bool)).any(), image_id
        assert band.sum() < 0.25 * (label > 0).sum(), image_id
        for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
            touching = (a != IGNORE) & (b != IGNORE)
            assert np.all(a[touching] == b[touching]), f"{image_id}: classes meet without a band"


def test_parts_lie_inside_their_object_and_are_small(samples) -> None:
    for image_id, label, parts, xml_path in samples:
        assert set(np.unique(parts).tolist()) <= set(range(C + 1))
        for name in set(object_names(xml_path)):
            value = DEMO_CLASSES.index(name) + 1
            part = parts == value
            assert part.any(), f"{image_id}: {name} has no visible part"
            assert np.isin(label[part], [value, IGNORE]).all(), image_id
            assert (label[part] == value).mean() > 0.7, image_id
            share = part.sum() / np.isin(label, [value]).sum()
            assert 0.01 < share < 0.15, f"{image_id}: part is {share:.1%} of its object"


def test_body_only_rendering_changes_only_the_parts() -> None:
    full = render_sample(seed=1, index=0, size=SIZE)
    bare = render_sample(seed=1, index=0, size=SIZE, draw_parts=False)
    assert np.array_equal(full.label, bare.label) and np.array_equal(full.parts, bare.parts)
    changed = np.any(full.image != bare.image, axis=-1)
    assert changed.any()
    assert not (changed & ~ndimage.binary_dilation(full.parts > 0, iterations=1)).any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_train": 0}, "train image"), ({"size": 16}, "at least 32")],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(WsssError, match=message):
        generate_demo(tmp_path / "bad", progress=False, **kwargs)

"""The demo generator: reproducible bytes, a complete VOC layout, and parts inside objects."""

from __future__ import annotations

import hashlib
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


# sha256 of files and rendered arrays at the default knobs, recorded from the generator before
# it grew its knobs: the defaults must keep producing today's demo, byte for byte. The JPEG
# hashes also pin the encoder (Pillow's libjpeg); the array hashes do not depend on it.
PINNED_FILES = {
    "JPEGImages/demo_000001.jpg": "a23856dbe08ac6a4139876acdbc5c2fe"
    "0f5e8e484f97ec6eac312938ff29f231",
    "JPEGImages/demo_000004.jpg": "c08fb5cbd103c8f0f9dcd9295631c0f1"
    "17f6f21be6958bbfa8f7b3cfb1c2e517",
    "SegmentationClass/demo_000002.png": "43e70ef42df56b9099d8de9f88a766ed"
    "963b30854890636312cb97ec0ca75649",
    "PartMasks/demo_000003.png": "41c2f63f5440c119897d3805a2790e2c754744826b9d04f7fc89bf1e26d84803",
    "Annotations/demo_000001.xml": "a36772804837822d55e68373d2d545b2"
    "c6744935f5af3b829aadd1cc103f7ef4",
    "classes.txt": "95331b4ffcbc34df498a8c97de10cfc198eb427a80e21d23f9dc2fed29322c3b",
    "ImageSets/Segmentation/trainval.txt": "15d924aeda2aec983e2e56841aa2dce2"
    "9f5425b15c2fea42c517c80fd7429815",
}

PINNED_RENDERS = {
    (0, 0, 128): "143b340294283656b97cdc27343f86657d90eced54b8b40dd5192c668cd93bc4",
    (0, 5, 128): "0192f3a2a474e07f2623a3ac05008d70ef7469171ae90251802f80e0084e1d94",
    (11, 2, 96): "5ecd8a209c57744808699eac9186bb5b3e82015c4f02a8b649551787274df9e2",
}


def test_defaults_reproduce_the_original_demo_bytes(tmp_path: Path) -> None:
    root = tmp_path / "pinned"
    generate_demo(root, n_train=3, n_val=1, seed=0, progress=False)
    for name, digest in PINNED_FILES.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name


def test_default_renders_reproduce_the_original_arrays() -> None:
    for (seed, index, size), digest in PINNED_RENDERS.items():
        sample = render_sample(seed, index, size)
        h = hashlib.sha256()
        for array in (sample.image, sample.label, sample.parts):
            h.update(np.ascontiguousarray(array).tobytes())
        assert h.hexdigest() == digest, (seed, index, size)

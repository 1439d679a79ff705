"""The VOC-layout reader, SBD conversion, prepare-voc and their one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from cli.main import main
from wsss.data.classes import VOC_CLASSES, read_class_list
from wsss.data.palette import read_label_png, save_label_png
from wsss.data.voc import LABEL_CACHE, VocDataset
from wsss.errors import WsssError
from wsss.stages.prepare_voc import PrepareVocConfig, run

ROOT_DIR = Path(__file__).resolve().parents[1]


def write_xml(path: Path, names: list[str]) -> None:
    objects = "".join(f"<object><name>{n}</name><difficult>1</difficult></object>" for n in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{objects}</annotation>")


def add_image(
    root: Path,
    image_id: str,
    names: list[str],
    mask_values: list[int] | None,
    size: tuple[int, int] = (20, 16),
) -> None:
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(image_id)) % 2**32)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg")
    write_xml(root / "Annotations" / f"{image_id}.xml", names)
    if mask_values is not None:
        mask = np.zeros((size[1], size[0]), dtype=np.uint8)
        for k, value in enumerate(mask_values):
            mask[2 + k * 4 : 5 + k * 4, 3:10] = value
        mask[0, :] = 255
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)


def write_list(root: Path, name: str, ids: list[str]) -> None:
    path = root / "ImageSets" / "Segmentation" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """A miniature VOC 2012: 3 train + 2 val images with masks, one extra image for SBD."""
    root = tmp_path / "VOC2012"
    add_image(root, "2007_000001", ["dog", "person"], [12, 15])
    add_image(root, "2007_000002", ["cat"], [8])
    add_image(root, "2007_000003", ["car", "car"], [7])
    add_image(root, "2007_000004", ["bus"], [6])
    add_image(root, "2007_000005", ["sheep"], [17])
    add_image(root, "2008_000100", ["horse"], None)  # SBD-only image: no VOC mask
    write_list(root, "train", ["2007_000001", "2007_000002", "2007_000003"])
    write_list(root, "val", ["2007_000004", "2007_000005"])
    return root


@pytest.fixture
def sbd_root(tmp_path: Path) -> Path:
    """SBD with cls/*.mat written by scipy, overlapping VOC val (must be dropped) and train."""
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    (root / "cls").mkdir(parents=True)
    for image_id, value in [("2008_000100", 13), ("2007_000004", 6), ("2007_000002", 8)]:
        seg = np.zeros((16, 20), dtype=np.uint8)
        seg[4:12, 5:15] = value
        scipy.io.savemat(root / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": seg}})
    (root / "train.txt").write_text("2008_000100\n2007_000002\n")
    (root / "val.txt").write_text("2007_000004\n")
    return root


def test_labels_from_xml_count_difficult_and_repeat_once(voc_root: Path) -> None:
    voc = VocDataset.open(voc_root)
    assert voc.classes == VOC_CLASSES
    assert voc.image_classes("2007_000001") == [
        VOC_CLASSES.index("dog"),
        VOC_CLASSES.index("person"),
    ]
    labels = voc.image_labels("2007_000003")
    assert labels.sum() == 1 and labels[VOC_CLASSES.index("car")] == 1
    assert voc.split_ids("train") == ["2007_000001", "2007_000002", "2007_000003"]


def test_split_by_path_and_deeplab_style_lines(voc_root: Path, tmp_path: Path) -> None:
    listing = tmp_path / "mine.txt"
    listing.write_text("/JPEGImages/2007_000002.jpg /SegmentationClassAug/2007_000002.png\n")
    assert VocDataset.open(voc_root).split_ids(listing) == ["2007_000002"]


def test_mask_size_and_values_checked(voc_root: Path) -> None:
    voc = VocDataset.open(voc_root)
    mask = voc.load_mask("2007_000001", (20, 16))
    assert set(np.unique(mask)) == {0, 12, 15, 255}
    with pytest.raises(
        WsssError, match="2007_000001.png: mask size 20x16 differs from its image 21x16"
    ):
        voc.load_mask("2007_000001", (21, 16))


def test_prepare_voc_builds_train_aug_and_converts_sbd(voc_root: Path, sbd_root: Path) -> None:
    result = run(PrepareVocConfig(voc=voc_root, sbd=sbd_root))
    voc = VocDataset.open(voc_root)
    # (VOC train ∪ SBD train ∪ SBD val) − VOC val
    assert voc.split_ids("train_aug") == [
        "2007_000001",
        "2007_000002",
        "2007_000003",
        "2008_000100",
    ]
    assert result.counts["train_aug"] == 4 and result.converted_sbd == 1
    converted = read_label_png(voc_root / "SegmentationClassAug" / "2008_000100.png")
    assert converted.shape == (16, 20) and set(np.unique(converted)) == {0, 13}
    # VOC masks win over SBD ones (they carry the 255 borders)
    kept = read_label_png(voc_root / "SegmentationClassAug" / "2007_000002.png")
    assert (kept == 255).any()
    assert voc.mask_path("2008_000100").parent.name == "SegmentationClassAug"
    assert (voc_root / LABEL_CACHE).is_file()
    assert VocDataset.open(voc_root).image_classes("2008_000100") == [VOC_CLASSES.index("horse")]


def test_custom_class_list_from_root(voc_root: Path) -> None:
    (voc_root / "classes.txt").write_text("background\ndog\nperson\n")
    assert read_class_list(voc_root / "classes.txt") == ("dog", "person")
    voc = VocDataset.open(voc_root)
    assert voc.image_classes("2007_000001") == [0, 1]
    with pytest.raises(WsssError, match="2007_000002.xml: unknown class name 'cat'"):
        voc.image_classes("2007_000002")


def _truncate_jpeg(root: Path) -> str:
    path = root / "JPEGImages" / "2007_000002.jpg"
    path.write_bytes(path.read_bytes()[:200])
    return "2007_000002.jpg: unreadable image"


def _wrong_mask_size(root: Path) -> str:
    save_label_png(root / "SegmentationClass" / "2007_000003.png", np.zeros((5, 5), np.uint8))
    return "2007_000003.png: mask size 5x5 differs from its image 20x16"


def _bad_mask_value(root: Path) -> str:
    save_label_png(root / "SegmentationClass" / "2007_000003.png", np.full((16, 20), 42, np.uint8))
    return "2007_000003.png: label value 42 outside 0..20"


def _zero_byte_mask(root: Path) -> str:
    (root / "SegmentationClass" / "2007_000003.png").write_bytes(b"")
    return "2007_000003.png: unreadable PNG"


def _unknown_class(root: Path) -> str:
    write_xml(root / "Annotations" / "2007_000001.xml", ["dog", "unicorn"])
    return "2007_000001.xml: unknown class name 'unicorn'"


def _malformed_xml(root: Path) -> str:
    (root / "Annotations" / "2007_000001.xml").write_text("<annotation><object>")
    return "2007_000001.xml: malformed XML"


def _missing_image(root: Path) -> str:
    (root / "JPEGImages" / "2007_000001.jpg").unlink()
    return "2007_000001.jpg: image not found"


def _empty_list(root: Path) -> str:
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n")
    return "train.txt: split list is empty"


def _missing_list(root: Path) -> str:
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    return "val.txt: split list not found"


def _escaping_id(root: Path) -> str:
    write_list(root, "train", ["../../etc/passwd"])
    return "points outside"


@pytest.mark.parametrize(
    "corrupt",
    [
        _truncate_jpeg,
        _wrong_mask_size,
        _bad_mask_value,
        _zero_byte_mask,
        _unknown_class,
        _malformed_xml,
        _missing_image,
        _empty_list,
        _missing_list,
        _escaping_id,
    ],
)
def test_prepare_voc_bad_input_is_one_line_error(voc_root: Path, corrupt, capsys) -> None:
    expected = corrupt(voc_root)
    code = main(["prepare-voc", "--voc", str(voc_root)])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in " ".join(err.split())
    assert "Traceback" not in err
    # one message (it may wrap); a log's progress lines before it are not part of it
    progress = re.compile(r"^[\w -]+: \d+/\d+ img \(\d+%\)")
    lines = [line for line in err.splitlines() if line.strip() and not progress.match(line)]
    assert len(lines) <= 2


def test_voc_class_list_shipped_in_data_matches_code() -> None:
    assert read_class_list(ROOT_DIR / "data" / "voc_classes.txt") == VOC_CLASSES

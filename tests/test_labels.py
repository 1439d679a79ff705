"""Image-level labels from one labels file (CSV or JSON), and a dataset with no masks at all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import cli_train_cam_and_make_cam, make_tiny_voc

from cli.main import main
from wsss.camfile import load_cam_file
from wsss.data.labels import read_labels_file, write_labels_json
from wsss.data.voc import VocDataset
from wsss.errors import WsssError

CLASSES = ("cat", "dog", "traffic light")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A root with JPEGImages a, b, c (empty files: the reader only lists names)."""
    root = tmp_path / "root"
    (root / "JPEGImages").mkdir(parents=True)
    for image_id in ("a", "b", "c"):
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def test_csv_with_header_comments_quotes_and_numeric_ids(images: Path) -> None:
    path = images / "labels.csv"
    path.write_text(
        "\ufeffid,labels\n"
        "# a comment line\n"
        "a,dog;cat\n"
        '"b","traffic light; 1"\n'  # quoted, spaced, a label value 1..C mixed with a name
        "c.jpg,\n"  # a trailing .jpg is the same id; an empty field: no class
    )
    labels = read_labels_file(path, CLASSES, {"a", "b", "c"})
    assert labels == {"a": [0, 1], "b": [0, 2], "c": []}


def test_json_reads_the_same_as_csv_and_round_trips(images: Path) -> None:
    path = write_labels_json(images / "labels.json", {"a": ["dog", "cat"], "b": ["traffic light"]})
    assert read_labels_file(path, CLASSES) == {"a": [0, 1], "b": [2]}
    data = json.loads(path.read_text())
    data["c"] = [3, "cat"]  # numbers are label values 1..C here as well
    path.write_text(json.dumps(data))
    assert read_labels_file(path, CLASSES)["c"] == [0, 2]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("labels.csv", "id,labels\na,cat\nb,zebra\n", "labels.csv: line 3: unknown class 'zebra'"),
        ("labels.csv", "a,cat\nb,0\n", "labels.csv: line 2: unknown class id 0 (ids run 1..3"),
        ("labels.csv", "a,4\n", "labels.csv: line 1: unknown class id 4"),
        ("labels.csv", "a,cat\n\nb,dog\na,dog\n", "labels.csv: line 4: id 'a' repeats line 1"),
        ("labels.csv", "a,cat\nzz,dog\n", "labels.csv: line 2: no image JPEGImages/zz.jpg"),
        ("labels.csv", "a,cat,dog\n", "labels.csv: line 1: 3 fields; expected 'id,class1;class2'"),
        ("labels.csv", "", "labels.csv: labels file is empty"),
        ("labels.csv", "id,labels\n# nothing\n", "labels.csv: labels file is empty"),
        ("labels.json", '{"a": ["cat"], "b": ["zebra"]}', "labels.json: entry 'b': unknown class"),
        ("labels.json", '{"a": [9]}', "labels.json: entry 'a': unknown class id 9"),
        ("labels.json", '{"a": ["cat"], "a": ["dog"]}', "labels.json: entry 'a' appears twice"),
        ("labels.json", '{"zz": ["cat"]}', "labels.json: entry 'zz': no image JPEGImages/zz.jpg"),
        ("labels.json", '{"a": "cat"}', "labels.json: entry 'a': expected a list of classes"),
        ("labels.json", "{}", "labels.json: labels file is empty"),
        ("labels.json", '["a"]', "labels.json: expected an object"),
        ("labels.json", '{"a": ["cat"],', "labels.json: line 1: not valid JSON"),
    ],
)
def test_bad_labels_file_is_a_one_line_error_naming_file_and_line(
    images: Path, name: str, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (images / name).write_text(text)
    (images / "ImageSets" / "Segmentation").mkdir(parents=True)
    (images / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    voc = VocDataset.open(images)
    with pytest.raises(WsssError) as error:
        voc.image_classes("a")
    assert message in str(error.value) and "\n" not in str(error.value)
    # The same through the CLI: exit 2 and one line on stderr, before any training.
    args = ["train-cam", "--data", str(images), "--split", "train", "--out", str(images / "run")]
    assert main([*args, "--pretrained", "none", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_labels_file_wins_over_xml_and_names_itself_in_errors(tmp_path: Path) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=4, size=32)
    xml_labels = VocDataset.open(root).image_classes("img_000")
    assert xml_labels == [0]
    (root / "labels.csv").write_text("img_000,dog\nimg_001,cat;dog\n")
    voc = VocDataset.open(root)
    assert voc.labels_file == root / "labels.csv"
    assert voc.image_classes("img_000") == [1] and voc.image_classes("img_001") == [0, 1]
    np.testing.assert_array_equal(voc.image_labels("img_001"), [1.0, 1.0])
    with pytest.raises(WsssError, match=r"labels.csv: no entry for image 'img_002'"):
        voc.image_classes("img_002")
    (root / "labels.json").write_text('{"img_000": ["cat"]}')
    with pytest.raises(WsssError, match="labels.csv: and labels.json both present"):
        VocDataset.open(root)


def test_an_explicit_labels_path(tmp_path: Path) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=2, size=32)
    elsewhere = write_labels_json(tmp_path / "mine.json", {"img_000": ["dog"], "img_001": []})
    voc = VocDataset.open(root, labels=elsewhere)
    assert voc.image_classes("img_000") == [1] and voc.image_classes("img_001") == []
    assert voc.label_source("img_001") == elsewhere
    with pytest.raises(WsssError, match="nope.csv: labels file not found"):
        VocDataset.open(root, labels=tmp_path / "nope.csv")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_train_cam_and_make_cam_on_images_class_list_and_labels_file_only(
    labels_only_dataset, tmp_path: Path, fmt: str
) -> None:
    root = labels_only_dataset(fmt=fmt, n=6, size=40)
    assert not (root / "SegmentationClass").exists() and not (root / "Annotations").exists()
    voc = VocDataset.open(root)
    cams = cli_train_cam_and_make_cam(root, tmp_path, "train", "32,40", "--overlays", "2")
    ids = voc.split_ids("train")
    assert sorted(p.stem for p in cams.glob("*.npy")) == sorted(ids)
    labels_text = (root / f"labels.{fmt}").read_text()
    for image_id in ids:
        record = load_cam_file(cams / f"{image_id}.npy", voc.num_classes, (40, 40))
        # The CAM keys are the labels file's classes (+ background), read back from disk.
        expected = [0, *(c + 1 for c in voc.image_classes(image_id))]
        np.testing.assert_array_equal(record.keys, expected)
        for c in expected[1:]:
            assert voc.classes[c - 1] in labels_text
        assert record.hr_cam.shape == (len(expected) - 1, 40, 40)
        assert np.isfinite(record.hr_cam).all() and record.hr_cam.max() <= 1.0 + 1e-6
    assert len(list((cams / "overlays").glob("*.png"))) == 2

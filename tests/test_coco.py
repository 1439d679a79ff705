"""`wsss prepare-coco` on a COCO 2014-format set the tests write (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COCO_CLASSES
from helpers_tinyvoc import cli_train_cam_and_make_cam
from PIL import Image

from cli.main import main
from wsss.camfile import load_cam_file
from wsss.data.classes import read_class_list
from wsss.data.palette import read_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import read_manifest
from wsss.stages.prepare_coco import PrepareCocoConfig, run

TRAIN_IDS = ["COCO_train2014_000000000009", "COCO_train2014_000000000025"]
VAL_IDS = ["COCO_val2014_000000000042"]
ROOT = Path(__file__).resolve().parents[1]
LABELS = {
    "COCO_train2014_000000000009": ["person", "car", "dog"],
    "COCO_train2014_000000000025": ["person", "car", "dog", "toothbrush"],
    "COCO_val2014_000000000042": ["person", "dog"],
}


def _check_converted(out: Path, coco: Path, expected: dict[str, np.ndarray]) -> None:
    lists = out / "ImageSets" / "Segmentation"
    assert (lists / "train.txt").read_text().split() == TRAIN_IDS
    assert (lists / "val.txt").read_text().split() == VAL_IDS
    assert read_class_list(out / "classes.txt") == COCO_CLASSES
    assert json.loads((out / "labels.json").read_text()) == LABELS
    for image_id, want in expected.items():
        path = out / "SegmentationClass" / f"{image_id}.png"
        with Image.open(path) as image:
            assert image.mode == "P"  # a palette PNG: shows in colour, reads as indices
        np.testing.assert_array_equal(read_label_png(path), want, err_msg=image_id)
        link = out / "JPEGImages" / f"{image_id}.jpg"
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        folder = "train2014" if "train2014" in image_id else "val2014"
        assert link.read_bytes() == (coco / folder / f"{image_id}.jpg").read_bytes()
    # Images without objects are nowhere.
    for empty in ("COCO_train2014_000000000030", "COCO_val2014_000000000073"):
        assert not (out / "SegmentationClass" / f"{empty}.png").exists()
        assert not (out / "JPEGImages" / f"{empty}.jpg").exists()
    # The toolkit's reader sees the same labels, masks and lists.
    voc = VocDataset.open(out)
    assert voc.classes == COCO_CLASSES and voc.labels_file == out / "labels.json"
    for image_id, names in LABELS.items():
        assert [voc.classes[c] for c in voc.image_classes(image_id)] == sorted(
            names, key=COCO_CLASSES.index
        )
        np.testing.assert_array_equal(voc.load_mask(image_id, (48, 40)), expected[image_id])


def test_masks_labels_lists_and_classes_match_the_hand_painted_set(coco_root) -> None:
    root, expected = coco_root
    assert main(["prepare-coco", "--coco", str(root)]) == 0  # default: into the COCO root
    _check_converted(root, root, expected)
    manifest = read_manifest(root / "SegmentationClass", "prepare-coco")
    assert manifest["complete"] and manifest["files"] == 3
    assert "smaller area on top" in manifest["params"]["convention"]


def test_out_elsewhere_resume_and_redo_of_a_deleted_output(coco_root, tmp_path: Path) -> None:
    root, expected = coco_root
    out = tmp_path / "converted"
    first = run(PrepareCocoConfig(coco=root, out=out))
    assert (first.written, first.skipped, first.files, first.complete) == (3, 0, 3, True)
    _check_converted(out, root, expected)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "SegmentationClass").glob("*.png")}
    second = run(PrepareCocoConfig(coco=root, out=out))
    assert (second.written, second.skipped) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing rewritten
    (out / "SegmentationClass" / f"{TRAIN_IDS[1]}.png").unlink()
    (out / "JPEGImages" / f"{VAL_IDS[0]}.jpg").unlink()
    (out / "SegmentationClass" / ".x.png.123.tmp").write_bytes(b"half")  # a killed write
    third = run(PrepareCocoConfig(coco=root, out=out))
    assert (third.written, third.skipped, third.complete) == (1, 2, True)
    assert not (out / "SegmentationClass" / ".x.png.123.tmp").exists()
    _check_converted(out, root, expected)


def test_sharded_under_torchrun_each_rank_converts_its_share(
    coco_root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, expected = coco_root
    out = tmp_path / "converted"
    monkeypatch.delenv("MASTER_ADDR", raising=False)  # started by hand: no process group
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    second_rank = run(PrepareCocoConfig(coco=root, out=out))
    # Rank 1 takes every 2nd id of each split: train ..._25 only (val has one id, rank 0's).
    assert second_rank.written == 1 and not second_rank.complete
    assert sorted(p.stem for p in (out / "SegmentationClass").glob("*.png")) == [TRAIN_IDS[1]]
    assert not (out / "labels.json").exists()  # rank 0 writes the shared files
    monkeypatch.setenv("RANK", "0")
    first_rank = run(PrepareCocoConfig(coco=root, out=out))
    assert first_rank.written == 2 and first_rank.complete
    _check_converted(out, root, expected)


@pytest.mark.slow
def test_under_torchrun_two_processes_convert_everything_once(coco_root, tmp_path: Path) -> None:
    root, expected = coco_root
    out = tmp_path / "converted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "cli.main", "prepare-coco"]
    done = subprocess.run(
        [*command, "--coco", str(root), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _check_converted(out, root, expected)
    # The barrier lets rank 0 see the other rank's masks before it writes the manifest.
    manifest = read_manifest(out / "SegmentationClass", "prepare-coco")
    assert manifest["complete"] and manifest["files"] == 3
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("annotations/instances_val2014.json", "instances_val2014.json: annotation file not found"),
        ("train2014/COCO_train2014_000000000025.jpg", "000000000025.jpg: image not found"),
        ("val2014", "val2014: image folder not found"),
    ],
)
def test_bad_input_is_a_one_line_error(
    coco_root, damage: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = coco_root
    target = root / damage
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    assert main(["prepare-coco", "--coco", str(root), "--out", str(root / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_annotations_are_one_line_errors(coco_root, tmp_path: Path) -> None:
    root, _ = coco_root
    path = root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 12  # a gap in COCO's ids: no such category
    path.write_text(json.dumps(data))
    with pytest.raises(WsssError, match="instances_train2014.json: annotation 1000 has unknown"):
        run(PrepareCocoConfig(coco=root, out=tmp_path / "o1"))
    data["annotations"][0]["category_id"] = 1
    data["annotations"][0]["segmentation"] = {"size": [8, 8], "counts": [64]}
    path.write_text(json.dumps(data))
    with pytest.raises(WsssError, match="annotation 1000: RLE size \\[8, 8\\] differs"):
        run(PrepareCocoConfig(coco=root, out=tmp_path / "o2"))
    path.write_text('{"images": [')
    with pytest.raises(WsssError, match="instances_train2014.json: not a COCO instances file"):
        run(PrepareCocoConfig(coco=root, out=tmp_path / "o3"))


def test_a_labels_csv_already_at_the_output_is_refused_not_deleted(coco_root) -> None:
    root, _ = coco_root
    (root / "labels.csv").write_text("mine,person\n")
    with pytest.raises(WsssError, match="labels.csv: would conflict with the labels.json"):
        run(PrepareCocoConfig(coco=root))
    assert (root / "labels.csv").read_text() == "mine,person\n"
    assert not (root / "SegmentationClass").exists()


@pytest.mark.slow
def test_train_cam_and_make_cam_read_the_converted_set(coco_root, tmp_path: Path) -> None:
    root, _ = coco_root
    out = tmp_path / "converted"
    assert main(["prepare-coco", "--coco", str(root), "--out", str(out)]) == 0
    cams = cli_train_cam_and_make_cam(out, tmp_path, "val", "32,48")
    assert main(["eval-cam", "--cams", str(cams), "--gt", str(out), "--no-plot"]) == 0
    record = load_cam_file(cams / f"{VAL_IDS[0]}.npy", len(COCO_CLASSES), (40, 48))
    np.testing.assert_array_equal(record.keys, [0, 1, 3])  # background, person, dog
    assert record.hr_cam.shape == (2, 40, 48)
    assert json.loads((cams / "eval_cam.json").read_text())["images"] == 1

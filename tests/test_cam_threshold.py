"""The label-free background threshold: the rule on CAMs with a known answer, its record,
and `wsss pick-threshold`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc

from cli.main import main
from wsss.cam_threshold import (
    RECORD,
    MeanCam,
    confident_thresholds,
    label_free_threshold,
    pick_threshold,
)
from wsss.camfile import CamRecord, save_cam_file, strided_size
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import read_json


def record(maps: list[np.ndarray], labels: list[int]) -> CamRecord:
    hr = np.stack(maps).astype(np.float32) if maps else np.zeros((0, 8, 8), np.float32)
    cam = np.zeros((len(maps), *strided_size(*hr.shape[1:])), np.float32)
    return CamRecord(keys=np.array([0, *labels]), cam=cam, hr_cam=hr)


def test_the_rule_is_the_mean_of_the_strongest_cam_over_labelled_images() -> None:
    mean = MeanCam()
    half = np.zeros((8, 8), np.float32)
    half[:, :4] = 1.0  # an object over half the image, nothing elsewhere: mean 0.5
    mean.update(half[None])
    # two classes: the strongest per pixel counts, 0.8 over a quarter, 0.2 elsewhere -> 0.35
    a = np.full((8, 8), 0.2, np.float32)
    b = np.zeros((8, 8), np.float32)
    b[:4, :4] = 0.8
    mean.update(np.stack([a, b]))
    mean.update(np.zeros((0, 8, 8), np.float32))  # no labelled class: left out
    choice = mean.result()
    assert choice.threshold == pytest.approx((0.5 + 0.35) / 2)
    assert (choice.images, choice.pixels, choice.rule) == (2, 128, "mean-cam")
    with pytest.raises(WsssError, match="no image with a labelled class"):
        MeanCam().result()


def test_images_of_other_sizes_weigh_by_their_pixels() -> None:
    mean = MeanCam()
    mean.update(np.ones((1, 4, 4), np.float32))  # 16 pixels at 1
    mean.update(np.zeros((1, 8, 6), np.float32))  # 48 pixels at 0
    assert mean.result().threshold == pytest.approx(0.25)


def test_confident_thresholds_bracket_the_threshold() -> None:
    assert confident_thresholds(0.2) == pytest.approx((0.4, 0.1))
    assert confident_thresholds(0.7) == pytest.approx((1.0, 0.35))


@pytest.fixture
def cam_folder(tmp_path: Path) -> tuple[VocDataset, Path]:
    voc = VocDataset.open(make_tiny_voc(tmp_path / "voc", n=4, size=16))
    cams = tmp_path / "cams"
    rng = np.random.default_rng(0)
    for image_id in voc.split_ids("train"):
        labels = [c + 1 for c in voc.image_classes(image_id)]
        maps = [rng.random((16, 16)).astype(np.float32) for _ in labels]
        save_cam_file(cams / f"{image_id}.npy", record(maps, labels))
    return voc, cams


def test_the_choice_is_recorded_and_reused_for_the_same_images(cam_folder) -> None:
    voc, cams = cam_folder
    ids = voc.split_ids("train")
    first = pick_threshold(cams, ids, voc.num_classes)
    assert first == label_free_threshold(cams, ids, voc.num_classes)
    saved = read_json(cams / RECORD)
    assert saved["threshold"] == first.threshold and saved["rule"] == "mean-cam"
    # the record stands for these images only: a different list is picked afresh
    saved_time = (cams / RECORD).stat().st_mtime_ns
    assert pick_threshold(cams, ids, voc.num_classes) == first
    assert (cams / RECORD).stat().st_mtime_ns == saved_time
    fewer = pick_threshold(cams, ids[:2], voc.num_classes)
    assert fewer == label_free_threshold(cams, ids[:2], voc.num_classes)
    assert read_json(cams / RECORD)["ids"] == 2


def test_pick_threshold_command_needs_no_masks(cam_folder, capsys) -> None:
    voc, cams = cam_folder
    for mask in (voc.root / "SegmentationClass").glob("*.png"):
        mask.unlink()
    args = ["pick-threshold", "--cams", str(cams), "--data", str(voc.root), "--split", "train"]
    assert main(args) == 0
    expected = label_free_threshold(cams, voc.split_ids("train"), voc.num_classes)
    assert read_json(cams / RECORD)["threshold"] == expected.threshold
    assert f"{expected.threshold:.4f}" in capsys.readouterr().out

"""The threshold sweep: one pass equals a per-threshold confusion matrix, exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_tinyvoc import make_tiny_voc
from torch import nn

from cli.main import main
from wsss.cam_eval import ThresholdSweep, count_below, evaluate_model_cams
from wsss.cam_math import strided_size
from wsss.cam_threshold import parse_thresholds
from wsss.camfile import CamRecord, save_cam_file
from wsss.data.transforms import normalize
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.inference import TtaConfig, make_cams
from wsss.io import write_manifest
from wsss.metrics import ConfusionMatrix

CLASSES = ("cat", "dog", "bird")
THRESHOLDS = (0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 0.95)


def _reference_matrix(images, threshold: float) -> ConfusionMatrix:
    """The reference evaluation: argmax over the padded [threshold, cams...], mapped by keys."""
    matrix = ConfusionMatrix(len(CLASSES) + 1)
    for cams, keys, gt in images:
        padded = np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=threshold)
        matrix.update(gt, keys[np.argmax(padded, axis=0)])
    return matrix


@pytest.fixture
def images() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    result = []
    for labels in ([1, 3], [2], [], [1, 2, 3]):
        shape = (9, 11)
        # values on a 0.05 grid: many pixels tie exactly with a threshold
        cams = (rng.integers(0, 21, (len(labels), *shape)) * 0.05).astype(np.float32)
        gt = rng.integers(0, 4, shape).astype(np.uint8)
        gt[rng.random(shape) < 0.1] = 255
        result.append((cams, np.array([0, *labels]), gt))
    return result


def test_sweep_equals_per_threshold_confusion(images) -> None:
    sweep = ThresholdSweep(CLASSES, THRESHOLDS)
    for cams, keys, gt in images:
        sweep.update(cams, keys[1:], gt)
    matrices = sweep.matrices()
    result = sweep.result()
    for j, threshold in enumerate(THRESHOLDS):
        reference = _reference_matrix(images, threshold)
        np.testing.assert_array_equal(matrices[j], reference.matrix)
        assert result.scores[j].miou == reference.compute().miou
        assert result.curve[j] == (threshold, reference.compute().miou)


def test_best_threshold_is_the_first_best(images) -> None:
    sweep = ThresholdSweep(CLASSES, THRESHOLDS)
    for cams, keys, gt in images:
        sweep.update(cams, keys[1:], gt)
    result = sweep.result()
    mious = [_reference_matrix(images, t).compute().miou for t in THRESHOLDS]
    assert result.best_threshold == THRESHOLDS[int(np.argmax(mious))]
    assert result.best_miou == max(mious)
    data = result.to_json()
    assert data["best_threshold"] == result.best_threshold
    assert data["curve"] == [[t, m] for t, m in zip(THRESHOLDS, mious, strict=True)]
    assert set(data["iou"]) == {"background", *CLASSES}


def test_known_best_threshold() -> None:
    """One object whose CAM is 0.6 inside and 0.3 outside: thresholds in [0.3, 0.6) are perfect."""
    gt = np.zeros((4, 4), dtype=np.uint8)
    gt[1:3, 1:3] = 1
    cams = np.where(gt == 1, 0.6, 0.3).astype(np.float32)[None]
    sweep = ThresholdSweep(("cat",), (0.1, 0.3, 0.5, 0.7))
    sweep.update(cams, [1], gt)
    result = sweep.result()
    assert result.best_threshold == 0.3 and result.best_miou == 100.0
    assert [m for _, m in result.curve][2] == 100.0
    assert result.curve[3][1] == 37.5  # all background: bg IoU 12/16, cat 0 -> (75 + 0) / 2


def test_sweep_errors() -> None:
    sweep = ThresholdSweep(CLASSES)
    with pytest.raises(WsssError, match="size"):
        sweep.update(np.zeros((1, 3, 3), np.float32), [1], np.zeros((4, 4), np.uint8), "x")
    with pytest.raises(WsssError, match="outside"):
        sweep.update(np.zeros((1, 3, 3), np.float32), [1], np.full((3, 3), 7, np.uint8), "x")
    with pytest.raises(WsssError, match="no CAM"):
        sweep.result()


def test_parse_thresholds() -> None:
    values = parse_thresholds("0.05:0.95:0.05")
    assert len(values) == 19 and values[0] == 0.05 and values[-1] == 0.95 and values[2] == 0.15
    assert parse_thresholds("0.5,0.1") == (0.1, 0.5)
    for bad in ("1.5", "0.5:0.1:0.1", "x", "0:1:0"):
        with pytest.raises(WsssError, match="threshold"):
            parse_thresholds(bad)


class PooledInput(nn.Module):
    """Class maps = the pooled first two input channels (a deterministic fake classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(2)  # something whose mode the evaluation must restore

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x[:, :2], 4, ceil_mode=True)


def test_evaluate_model_cams_matches_offline_path(tmp_path: Path) -> None:
    voc = VocDataset.open(make_tiny_voc(tmp_path / "voc", n=5, size=32))
    ids = voc.split_ids("train")
    model = PooledInput().train()
    result = evaluate_model_cams(model, voc, ids, torch.device("cpu"), thresholds=THRESHOLDS)
    assert model.training
    sweep = ThresholdSweep(voc.classes, THRESHOLDS)
    tta = TtaConfig(scales=(1.0,), flip=False)
    for image_id in ids:
        image = normalize(voc.load_image(image_id))[None]
        (record,) = make_cams(model.eval(), image, [voc.image_classes(image_id)], tta)
        sweep.update(record.hr_cam, record.labels, voc.load_mask(image_id), image_id)
    expected = sweep.result()
    assert result.curve == expected.curve
    assert result.best.images == 5


def _write_cams(cam_dir: Path, voc: VocDataset, ids: list[str]) -> None:
    """CAMs that are 0.8 on the GT object and 0.2 elsewhere."""
    for image_id in ids:
        gt = voc.load_mask(image_id)
        labels = [c + 1 for c in voc.image_classes(image_id)]
        hr = np.stack([np.where(gt == label, 0.8, 0.2) for label in labels]).astype(np.float32)
        cam = np.zeros((len(labels), *strided_size(*gt.shape)), np.float32)
        save_cam_file(cam_dir / f"{image_id}.npy", CamRecord(np.array([0, *labels]), cam, hr))


def test_eval_cam_command(tmp_path: Path) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=4, size=32)
    voc = VocDataset.open(root)
    cam_dir = tmp_path / "cams"
    _write_cams(cam_dir, voc, voc.split_ids("train"))
    json_path = tmp_path / "elsewhere.json"
    args = ["eval-cam", "--cams", str(cam_dir), "--gt", str(root), "--split", "train"]
    assert main([*args, "--json", str(json_path), "--thresholds", "0.1:0.9:0.1"]) == 0
    data = json.loads(json_path.read_text())
    assert data["best_threshold"] == 0.2  # the first threshold at which 0.2 turns background
    assert data["best_miou"] == 100.0  # the ignore border aside, CAMs equal the GT
    # At 0.1 every pixel beats background: objects get their class, the rest the first class
    # (argmax takes the first of the tied 0.2 maps).
    first = ConfusionMatrix(voc.num_classes + 1)
    for image_id in voc.split_ids("train"):
        gt = voc.load_mask(image_id)
        labels = [c + 1 for c in voc.image_classes(image_id)]
        first.update(gt, np.where(np.isin(gt, labels), gt, labels[0]))
    assert len(data["curve"]) == 9 and data["curve"][0] == [
        0.1,
        pytest.approx(first.compute().miou),
    ]
    assert data["curve"][0][1] < 90.0
    assert data["iou"]["cat"] == 100.0
    # written only where asked: the record make-pseudo reads stays as it was (absent here)
    assert not (cam_dir / "eval_cam.json").exists()
    assert json_path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_eval_cam_bare_gt_dir_and_missing_cam(tmp_path: Path, capsys) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=4, size=32)
    voc = VocDataset.open(root)
    cam_dir = tmp_path / "cams"
    _write_cams(cam_dir, voc, voc.split_ids("train")[:3])
    gt_dir = root / "SegmentationClass"
    assert main(["eval-cam", "--cams", str(cam_dir), "--gt", str(gt_dir), "--no-plot"]) == 0
    assert json.loads((cam_dir / "eval_cam.json").read_text())["images"] == 3
    capsys.readouterr()
    assert main(["eval-cam", "--cams", str(cam_dir), "--gt", str(root), "--split", "train"]) == 2
    error = capsys.readouterr().err
    assert "img_003" in error and "not found" in error


def test_eval_cam_on_the_few_images_a_mask_folder_holds(tmp_path: Path, capsys) -> None:
    """A bare mask folder chooses the images: masks drawn for a few of them pick the
    threshold (then `make-pseudo --threshold oracle`); a folder with none of them is an error."""
    root = make_tiny_voc(tmp_path / "voc", n=6, size=32)
    voc = VocDataset.open(root)
    cam_dir = tmp_path / "cams"
    ids = voc.split_ids("train")
    _write_cams(cam_dir, voc, ids)
    # as make-cam leaves it: a manifest naming the dataset's split, which a bare folder lacks
    write_manifest(cam_dir, "make-cam", {"data": str(root), "split": "train",
                                         "classes": list(voc.classes)})  # fmt: skip
    few = tmp_path / "few_masks"
    few.mkdir()
    for image_id in ids[:2]:
        shutil.copy(root / "SegmentationClass" / f"{image_id}.png", few)
    args = ["eval-cam", "--cams", str(cam_dir), "--gt", str(few), "--no-plot",
            "--class-list", str(root / "classes.txt"), "--thresholds", "0.1:0.9:0.1"]  # fmt: skip
    assert main(args) == 0
    record = json.loads((cam_dir / "eval_cam.json").read_text())
    assert record["images"] == 2
    said = capsys.readouterr()
    assert "masks for 2 of 6 CAM files" in said.out + said.err
    # the oracle of those two images, by hand: 100 where 0.2 turns background
    assert record["best_threshold"] == 0.2 and record["best_miou"] == 100.0
    empty = tmp_path / "no_masks"
    empty.mkdir()
    args[4] = str(empty)
    assert main(args) == 2
    error = capsys.readouterr().err
    assert str(empty) in error and "no mask" in error and "Traceback" not in error


@pytest.mark.parametrize("text", ["0.05:0.95:0.05", "0:1:0.1", "0.1,0.2,0.25,0.9", "0.5"])
def test_count_below_equals_binary_search(text: str) -> None:
    edges = np.asarray(parse_thresholds(text), dtype=np.float32)
    rng = np.random.default_rng(0)
    near = np.concatenate([edges, np.nextafter(edges, -1), np.nextafter(edges, 2)])
    values = np.concatenate([rng.random(5000), near, [0.0, 1.0, -np.inf, 2.0]]).astype(np.float32)
    np.testing.assert_array_equal(
        count_below(edges, values), np.searchsorted(edges, values, side="left")
    )

"""`--threshold masks`: the background threshold whose pseudo labels score best on the few
images that have masks, on hand-made CAMs whose best threshold is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc
from scipy import ndimage

from cli.main import main
from wsss.cam_math import strided_size
from wsss.camfile import CamRecord, save_cam_file
from wsss.data.palette import IGNORE
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.mask_threshold import MASK_GRID, pick_on_masks


def _ringed_cams(root: Path, cam_dir: Path) -> VocDataset:
    """Per class of each image: 0.6 on its object (the mask's square, border included), 0.3
    on a 3-pixel ring around it, 0.1 elsewhere. Thresholded without a CRF, every t in
    [0.30, 0.60) gives the masks exactly (a tie goes to background); below, the ring is
    wrongly foreground; from 0.60 on, everything is background: the best t of the grid is
    0.30."""
    voc = VocDataset.open(root)
    cam_dir.mkdir(parents=True, exist_ok=True)
    for image_id in voc.split_ids("train"):
        gt = voc.load_mask(image_id)
        labels = [c + 1 for c in voc.image_classes(image_id)]
        maps = []
        for label in labels:
            inside = ndimage.binary_dilation(gt == label)  # the 255 border around it too
            inside &= (gt == label) | (gt == IGNORE)
            ring = ndimage.binary_dilation(inside, iterations=3) & ~inside
            maps.append(np.where(inside, 0.6, np.where(ring, 0.3, 0.1)))
        hr = np.stack(maps).astype(np.float32)
        cam = np.zeros((len(labels), *strided_size(*gt.shape)), np.float32)
        save_cam_file(cam_dir / f"{image_id}.npy", CamRecord(np.array([0, *labels]), cam, hr))
    return voc


def test_the_best_labels_of_the_masked_images_pick_the_threshold(tmp_path: Path) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=8, size=48)
    voc = _ringed_cams(root, tmp_path / "cams")
    ids = voc.split_ids("train")
    for image_id in ids[3:]:
        (root / "SegmentationClass" / f"{image_id}.png").unlink()
    pick = pick_on_masks(tmp_path / "cams", voc, ids, crf=None, bg_power=None)
    assert pick.images == 3
    assert pick.threshold == pytest.approx(0.30) and pick.miou == pytest.approx(100.0)
    curve = dict(pick.curve)
    assert set(curve) == set(MASK_GRID)
    assert curve[0.25] < 100.0 and curve[0.65] < curve[0.25]  # the ring, then nothing
    for image_id in ids[:3]:
        (root / "SegmentationClass" / f"{image_id}.png").unlink()
    with pytest.raises(WsssError, match="needs ground-truth masks of some of the 8 images"):
        pick_on_masks(tmp_path / "cams", voc, ids, crf=None, bg_power=None)


def test_make_pseudo_threshold_masks(tmp_path: Path, capsys) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=6, size=48)
    voc = _ringed_cams(root, tmp_path / "cams")
    for image_id in voc.split_ids("train")[2:]:
        (root / "SegmentationClass" / f"{image_id}.png").unlink()
    out = tmp_path / "labels"
    args = ["make-pseudo", "--cams", str(tmp_path / "cams"), "--data", str(root),
            "--split", "train", "--out", str(out), "--no-crf", "--workers", "1"]  # fmt: skip
    assert main([*args, "--threshold", "masks"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["threshold"] == pytest.approx(0.30)
    source = manifest["params"]["threshold_source"]
    assert source.startswith("masks:") and "on the 2 images of split train with masks" in source
    assert len(list(out.glob("*.png"))) == 6  # every image labelled, not only the masked
    for image_id in voc.split_ids("train")[:2]:
        (root / "SegmentationClass" / f"{image_id}.png").unlink()
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "other"), "--threshold", "masks"]) == 2
    error = capsys.readouterr().err
    assert "SegmentationClass" in error and "holds none of them" in error
    assert "Traceback" not in error


def test_the_pick_is_recorded_and_made_again_when_a_mask_changes(tmp_path: Path,
                                                                 monkeypatch) -> None:  # fmt: skip
    import wsss.mask_threshold as mask_threshold

    root = make_tiny_voc(tmp_path / "voc", n=6, size=48)
    cams = tmp_path / "cams"
    voc = _ringed_cams(root, cams)
    ids = voc.split_ids("train")
    first = pick_on_masks(cams, voc, ids, crf=None, bg_power=None)
    record = json.loads((cams / mask_threshold.RECORD).read_text())
    assert record["threshold"] == pytest.approx(0.30) and record["images"] == 6

    def no_labels(*args, **kwargs):
        raise AssertionError("labelled again although nothing changed")

    monkeypatch.setattr(mask_threshold, "label_matrices", no_labels)
    assert pick_on_masks(cams, voc, ids, crf=None, bg_power=None) == first
    # another CRF setting, a redrawn mask or a damaged record: picked again
    labelled = []
    monkeypatch.undo()
    real = mask_threshold.label_matrices
    monkeypatch.setattr(mask_threshold, "label_matrices",
                        lambda *a, **k: labelled.append(1) or real(*a, **k))  # fmt: skip
    pick_on_masks(cams, voc, ids, crf=None, bg_power=1.0)
    assert len(labelled) == 6
    pick_on_masks(cams, voc, ids, crf=None, bg_power=1.0)  # now the recorded setting
    assert len(labelled) == 6
    mask = root / "SegmentationClass" / f"{ids[0]}.png"
    gt = voc.load_mask(ids[0])
    from PIL import Image

    Image.fromarray(np.where(gt == IGNORE, 0, gt).astype(np.uint8)).save(mask)  # no border
    pick_on_masks(cams, voc, ids, crf=None, bg_power=1.0)
    assert len(labelled) == 12
    (cams / mask_threshold.RECORD).write_text('{"threshold": 0.')
    assert pick_on_masks(cams, voc, ids, crf=None, bg_power=1.0).threshold == pytest.approx(0.30)
    assert len(labelled) == 18

"""The ablation's measurements on hand-made inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc

from wsss.camfile import CamRecord, save_cam_file
from wsss.data.palette import save_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.recipes import VARIANTS, pick_variants
from wsss.stages.ablation import part_body_means


def test_part_and_body_means_on_a_hand_made_cam(tmp_path: Path) -> None:
    voc = VocDataset.open(make_tiny_voc(tmp_path / "voc", n=1, size=48, classes=("cat",)))
    image_id = voc.split_ids("train")[0]
    gt = voc.load_mask(image_id)
    body = gt == 1
    part = np.zeros_like(gt)
    ys, xs = np.nonzero(body)
    part[ys[:4], xs[:4]] = 1  # four body pixels are the "part"
    save_label_png(voc.root / "PartMasks" / f"{image_id}.png", part)
    cam = np.where(part == 1, 0.9, np.where(body, 0.2, 0.7)).astype(np.float32)[None]
    record = CamRecord(keys=np.array([0, 1]), cam=cam[:, ::4, ::4].copy(), hr_cam=cam)
    save_cam_file(tmp_path / "cams" / f"{image_id}.npy", record)
    inside, outside = part_body_means(voc, tmp_path / "cams", [image_id])
    assert inside == pytest.approx(0.9)
    assert outside == pytest.approx(0.2)  # background pixels (0.7) count in neither


def test_variant_short_names() -> None:
    assert pick_variants(None) == tuple(VARIANTS)
    assert pick_variants(["full", "baseline"]) == ("Puzzle-CAM (all)", "baseline (L_cls)")
    with pytest.raises(WsssError, match="--variant must be one of"):
        pick_variants(["bogus"])

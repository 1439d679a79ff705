"""`wsss predict`: palette PNGs of the image size, resume, CRF, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASSES
from helpers_tinyvoc import stage_config
from PIL import Image

from cli.main import main
from wsss.data.palette import read_label_png
from wsss.data.transforms import normalize
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import save_checkpoint
from wsss.inference import TtaConfig, segment_probs
from wsss.models.deeplab import DeepLabV3Plus
from wsss.stages.predict import PredictConfig, run


def _config(seg_setup, out: Path, **changes) -> PredictConfig:
    return stage_config(PredictConfig, seg_setup, out, **changes)


def test_palette_pngs_of_image_size(seg_setup, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    result = run(_config(seg_setup, out, batch_size=4))
    voc = VocDataset.open(seg_setup[0])
    ids = voc.split_ids("train")
    assert result.written == result.files == len(ids)
    for image_id in ids:
        path = out / f"{image_id}.png"
        assert Image.open(path).mode == "P"
        label = read_label_png(path)
        assert label.shape == np.asarray(voc.load_image(image_id)).shape[:2]
        assert label.max() <= len(CLASSES)
    # the written labels are the argmax of the flip-averaged probabilities
    model = DeepLabV3Plus.from_config(torch.load(seg_setup[1], weights_only=True)["model_config"])
    model.load_state_dict(torch.load(seg_setup[1], weights_only=True)["model"])
    image = normalize(voc.load_image(ids[1]))[None]
    probs = segment_probs(model.eval(), image, TtaConfig(scales=(1.0,)))
    np.testing.assert_array_equal(read_label_png(out / f"{ids[1]}.png"), probs[0].argmax(0))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "predict" and manifest["params"]["split"] == "train"


def test_crf_refinement(seg_setup, tmp_path: Path) -> None:
    pytest.importorskip("pydensecrf")
    out = tmp_path / "pred"
    result = run(_config(seg_setup, out, split="val", crf=True, scales=(0.5, 1.0)))
    assert result.written == 3
    for path in out.glob("*.png"):
        assert read_label_png(path).max() <= len(CLASSES)
    params = json.loads((out / "manifest.json").read_text())["params"]
    assert params["crf"]["bilateral_sxy"] > 0 and params["scales"] == [0.5, 1.0]


def test_classifier_checkpoint_is_refused(seg_setup, tmp_path: Path, capsys) -> None:
    root, _ = seg_setup
    other = save_checkpoint(tmp_path / "cls.pt", "cam_classifier", classes=list(CLASSES))
    args = ["predict", "--checkpoint", str(other), "--data", str(root), "--split", "val"]
    assert main([*args, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert "cls.pt" in error and "deeplab" in error and len(error.splitlines()) == 1

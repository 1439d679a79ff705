"""`wsss predict`: palette PNGs of the image size, resume, CRF, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLASSES
from helpers_tinyvoc import stage_config
from PIL import Image

from cli.main import main
from wsss.data.palette import read_label_png
from wsss.data.transforms import normalize
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import save_checkpoint
from wsss.inference import TtaConfig, segment_probs, tta_outputs
from wsss.models.deeplab import DeepLabV3Plus
from wsss.stages.predict import PredictConfig, run


def _config(seg_setup, out: Path, **changes) -> PredictConfig:
    return stage_config(PredictConfig, seg_setup, out, **changes)


def test_palette_pngs_of_image_size(seg_setup, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    result = run(_config(seg_setup, out, batch_size=4, amp="off"))  # fp32, as the oracle below
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
    from wsss.crf import CrfParams, crf_refine_probs

    scales = (0.5, 1.0)
    result = run(_config(seg_setup, tmp_path / "crf", split="val", crf=True, scales=scales))
    run(_config(seg_setup, tmp_path / "plain", split="val", scales=scales))
    assert result.written == 3
    params = json.loads((tmp_path / "crf" / "manifest.json").read_text())["params"]
    assert params["crf"]["bilateral_sxy"] > 0 and params["scales"] == [0.5, 1.0]
    # Each label map is the dense CRF of the same test-time-augmented probabilities, and
    # differs from their plain argmax (what predict writes without --crf).
    root, checkpoint = seg_setup
    voc = VocDataset.open(root)
    saved = torch.load(checkpoint, weights_only=True)
    model = DeepLabV3Plus.from_config(saved["model_config"])
    model.load_state_dict(saved["model"])
    changed = 0
    for image_id in voc.split_ids("val"):
        image = voc.load_image(image_id)
        probs = segment_probs(model.eval(), normalize(image)[None], TtaConfig(scales=scales))
        probs = probs[0].numpy().astype(np.float32)
        expected = crf_refine_probs(np.asarray(image), probs, CrfParams())
        crf = read_label_png(tmp_path / "crf" / f"{image_id}.png")
        plain = read_label_png(tmp_path / "plain" / f"{image_id}.png")
        np.testing.assert_array_equal(crf, expected)
        np.testing.assert_array_equal(plain, probs.argmax(0))
        changed += int((crf != plain).sum())
    assert changed > 0


def test_crf_is_fed_the_augmented_probabilities(seg_setup, tmp_path: Path) -> None:
    """With its pairwise weights at 0 the CRF is the argmax of what it is fed, so the labels
    show which probabilities reached it: those of every scale and flip, not the image's alone
    (on the untrained fixture the full CRF gives one label per image whatever it is fed)."""
    pytest.importorskip("pydensecrf")
    scales = (0.5, 1.0)
    changes = {"crf": True, "gaussian_compat": 0.0, "bilateral_compat": 0.0, "crf_iters": 1}
    run(_config(seg_setup, tmp_path / "crf", split="val", scales=scales, **changes))
    root, checkpoint = seg_setup
    voc = VocDataset.open(root)
    saved = torch.load(checkpoint, weights_only=True)
    model = DeepLabV3Plus.from_config(saved["model_config"])
    model.load_state_dict(saved["model"])
    differ = 0
    for image_id in voc.split_ids("val"):
        image = normalize(voc.load_image(image_id))[None]
        with torch.no_grad():  # the oracle: the views' softmaxes averaged by hand
            views = [out[0] for out in tta_outputs(model.eval(), image, TtaConfig(scales=scales))]
            probs = torch.cat([F.interpolate(v, size=image.shape[-2:], mode="bilinear")
                               for v in views]).softmax(1).mean(0)  # fmt: skip
            alone = model(image)[0].softmax(0)
        written = read_label_png(tmp_path / "crf" / f"{image_id}.png")
        np.testing.assert_array_equal(written, probs.argmax(0).numpy())
        differ += int((probs.argmax(0) != alone.argmax(0)).sum())
    assert differ > 0  # the augmentation changes the argmax somewhere: the check can fail


def test_merge_logits_and_a_crf_preset(seg_setup, tmp_path: Path) -> None:
    """--merge logits: the softmax of the views' summed logits (the official code); the CRF
    preset `reference` is the official code's prediction CRF (psa's values), an explicit
    --crf-iters replacing its 10; both recorded in the manifest."""
    pytest.importorskip("pydensecrf")
    from wsss.crf import CRF_PRESETS, crf_refine_probs

    out = tmp_path / "pred"
    changes = {"merge": "logits", "crf": True, "crf_preset": "reference", "crf_iters": 2}
    run(_config(seg_setup, out, split="val", scales=(0.5, 1.0), **changes))
    params = json.loads((out / "manifest.json").read_text())["params"]
    crf = replace(CRF_PRESETS["psa"], iterations=2)
    assert params["merge"] == "logits" and params["crf_preset"] == "reference"
    assert params["crf"] == crf.to_json()
    root, checkpoint = seg_setup
    voc = VocDataset.open(root)
    saved = torch.load(checkpoint, weights_only=True)
    model = DeepLabV3Plus.from_config(saved["model_config"])
    model.load_state_dict(saved["model"])
    tta = TtaConfig(scales=(0.5, 1.0))
    for image_id in voc.split_ids("val"):
        image = normalize(voc.load_image(image_id))[None]
        with torch.no_grad():  # every view's logits at the image size, summed
            logits = sum(
                F.interpolate(out[0], size=image.shape[-2:], mode="bilinear").sum(0)
                for out in tta_outputs(model.eval(), image, tta)
            )
        probs = logits[None].softmax(1)
        torch.testing.assert_close(segment_probs(model, image, tta, "logits"), probs)
        assert not torch.allclose(segment_probs(model, image, tta), probs, atol=1e-3)
        refined = crf_refine_probs(
            np.asarray(voc.load_image(image_id)), probs[0].numpy().astype(np.float32), crf
        )
        np.testing.assert_array_equal(read_label_png(out / f"{image_id}.png"), refined)


def test_classifier_checkpoint_is_refused(seg_setup, tmp_path: Path, capsys) -> None:
    root, _ = seg_setup
    other = save_checkpoint(tmp_path / "cls.pt", "cam_classifier", classes=list(CLASSES))
    args = ["predict", "--checkpoint", str(other), "--data", str(root), "--split", "val"]
    assert main([*args, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert "cls.pt" in error and "deeplab" in error and len(error.splitlines()) == 1

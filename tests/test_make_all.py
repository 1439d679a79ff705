"""`make all` (`wsss pipeline voc`) on a small VOC-layout tree: the reference profile end to
end on the CPU, every row's reference setting in the run's records."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_tinyvoc import make_tiny_voc, one_torch_thread

from cli.main import main
from wsss.io import read_json
from wsss.recipes import PROFILES

# What ImageNet weights and 512 px crops would be on VOC, made small enough for a test.
TINY = ["train_cam.backbone=resnet18", "train_cam.pretrained=none", "train_cam.epochs=1",
        "train_cam.batch_size=4", "train_cam.crop=64", "train_cam.scale_range=48,80",
        "make_cam.scales=1,0.5", "train_seg.backbone=resnet18", "train_seg.pretrained=none",
        "train_seg.epochs=1", "train_seg.batch_size=4", "train_seg.crop=64",
        "train_seg.scale_range=48,80", "train_aff.epochs=1", "train_aff.batch_size=4",
        "train_aff.crop=96", "train_aff.scale_range=64,96", "predict.scales=1",
        "recipe.walk_check=false"]  # fmt: skip


@pytest.mark.slow
def test_make_all_runs_the_reference_profile_end_to_end(tmp_path: Path) -> None:
    voc = make_tiny_voc(tmp_path / "VOC2012", n=8, size=64)
    out = tmp_path / "run"
    args = ["pipeline", "voc", "--voc", str(voc), "--out", str(out), "--random-walk",
            "--device", "cpu", "--loader-workers", "0", "--crf-workers", "1"]  # fmt: skip
    for item in TINY:
        args += ["--set", item]
    with one_torch_thread():
        assert main(args) == 0
    summary = read_json(out / "summary.json")
    assert summary["recipe"] == "voc" and summary["profile"] == "reference"
    # every setting of the profile is what the run resolved ...
    for stage, options in PROFILES["reference"].items():
        for name, value in options.items():
            assert summary["resolved"][stage][name] == value, (stage, name)
    # ... and what each stage recorded it ran with
    pseudo = read_json(out / "pseudo" / "manifest.json")["params"]
    assert pseudo["crf_preset"] == "reference" and pseudo["crf"]["unary"] == "labels"
    assert pseudo["crf"]["bilateral_srgb"] == 5
    walk = read_json(out / "rw" / "manifest.json")["params"]
    assert walk["rw_normalise"] == "global" and walk["exp_times"] == 8
    predicted = read_json(out / "pred_val" / "manifest.json")["params"]
    assert predicted["merge"] == "logits" and predicted["resize"] == "pil-bicubic"
    assert read_json(out / "cams" / "manifest.json")["params"]["resize"] == "pil-bicubic"
    from wsss.engine.checkpoint import load_checkpoint

    for folder in ("cam_model", "seg_model", "aff_model"):  # row 1: layer4 not dilated
        assert load_checkpoint(out / folder / "final.pt")["model_config"]["dilate"] is False
    segmenter = load_checkpoint(out / "seg_model" / "final.pt")["model_config"]
    assert segmenter["align_corners"] is True and segmenter["head_norm"] == "gn"  # row 8
    aff_model = load_checkpoint(out / "aff_model" / "final.pt")["model_config"]
    assert aff_model["head"] == "reference"  # row 7: make-rw rebuilds the reference's head
    aff = read_json(out / "aff_model" / "manifest.json")
    assert aff["params"]["radius"] == 10 and aff["params"]["pair_sources"] == "cropped"
    # both mIoU conventions, labelled
    assert summary["seg_miou_reference"] is not None and "miou_reference_convention" in summary

"""The ablation's measurements (experiments/puzzle_ablation.py) on hand-made inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc

from experiments.puzzle_ablation import part_body_means
from wsss.camfile import CamRecord, save_cam_file
from wsss.data.palette import save_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.recipes import VARIANTS, pick_variants


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


def test_the_ablation_script_takes_the_levers(tmp_path: Path) -> None:
    """`make ablation` runs experiments/ablation.py as a script, outside the installed package."""
    script = Path(__file__).resolve().parents[1] / "experiments" / "ablation.py"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                           text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for option in ("--re-level", "--alpha", "--puzzle-start", "--init", "--output-stride",
                   "--pieces", "--lr", "--seed", "--epochs", "--variant", "--workers",
                   "--backbone", "--backbone-dilation", "--profile", "--amp"):  # fmt: skip
        assert option in shown.stdout


def test_the_reference_profile_sits_under_the_recipe_and_the_levers(tmp_path: Path) -> None:
    """Issue #25's ablation under the reference's network: the profile's train-cam and
    make-cam settings reach the stages, a lever given on the command line still wins."""
    from experiments.puzzle_ablation import AblationConfig
    from wsss.recipes import DEMO, PROFILES

    plain = AblationConfig(out=tmp_path)
    assert plain.train_cam_options() == DEMO.train_cam and plain.make_cam_options() == {}
    levers = {"backbone": "resnet50", "pcl_maps": "raw"}
    reference = AblationConfig(out=tmp_path, profile="reference", recipe_overrides=levers)
    options = reference.train_cam_options()
    assert options["backbone_dilation"] is False  # row 1: the reference's ResNet
    assert options["backbone"] == "resnet50" and options["pcl_maps"] == "raw"  # the levers win
    assert options["epochs"] == DEMO.train_cam["epochs"]  # the recipe is kept
    assert reference.make_cam_options() == PROFILES["reference"]["make_cam"]  # row 2's resize


@pytest.mark.slow
def test_run_trains_each_variant_once_and_records_its_measurements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` on a tiny demo recipe (the ablation always uses the demo's): two variants."""
    import json
    from dataclasses import replace

    from helpers_tinyvoc import one_torch_thread

    from experiments import puzzle_ablation as ablation
    from wsss.engine.checkpoint import load_checkpoint
    from wsss.recipes import DEMO
    from wsss.stages.eval_cam import EvalCamConfig
    from wsss.stages.eval_cam import run as eval_cam

    tiny = replace(
        DEMO,
        # the recipe's names (train, val), not the generator's: run must translate them
        demo={"train": 8, "val": 4, "size": 64, "seed": 3},
        train_cam={**DEMO.train_cam, "epochs": 1, "batch_size": 4, "crop": 64,
                   "warmup_epochs": 0},
    )  # fmt: skip
    monkeypatch.setattr(ablation, "DEMO", tiny)  # the ablation always runs the demo recipe
    monkeypatch.setenv("WSSS_QUIET", "1")
    names = pick_variants(["baseline", "full"])
    config = ablation.AblationConfig(
        out=tmp_path / "abl", variants=names, device="cpu", workers=0, scales=(1.0,)
    )
    with one_torch_thread():
        result = ablation.run(config)
    voc = VocDataset.open(tmp_path / "abl" / "data")
    assert len(voc.split_ids("train")) == 8
    saved = json.loads(result.json_path.read_text())
    assert saved["rows"] == result.rows and [row["variant"] for row in result.rows] == list(names)
    assert saved["recipe"]["epochs"] == 1
    weights = {}
    for row in result.rows:
        folder = tmp_path / "abl" / ablation._slug(row["variant"])
        final = load_checkpoint(folder / "cam_model" / "final.pt", "cam_classifier")
        # the variant's switches reached train-cam, on top of the recipe
        for key, value in VARIANTS[row["variant"]].items():
            assert final["args"][key] == value, (row["variant"], key)
        assert final["args"]["epochs"] == 1 and final["args"]["crop"] == 64
        weights[row["variant"]] = final["model"]
        # the figures are those of the variant's own CAMs
        sweep = eval_cam(
            EvalCamConfig(cams=folder / "cams", gt=voc.root, split="train", plot=False)
        ).sweep
        assert row["cam_miou"] == pytest.approx(sweep.best_miou)
        assert row["best_threshold"] == sweep.best_threshold
        inside, outside = part_body_means(voc, folder / "cams", voc.split_ids("train"))
        assert (row["cam_in_part"], row["cam_in_body_outside_part"]) == (inside, outside)
        assert 0.0 <= row["val_map"] <= 100.0
    baseline, full = (weights[name] for name in names)
    assert any(not np.array_equal(baseline[k], full[k]) for k in baseline)

    # A second run trains nothing again and reads the same rows back.
    stamps = [
        (tmp_path / "abl" / ablation._slug(n) / "cam_model" / "final.pt").stat().st_mtime_ns
        for n in names
    ]
    with one_torch_thread():
        again = ablation.run(config)
    assert again.rows == result.rows
    assert stamps == [
        (tmp_path / "abl" / ablation._slug(n) / "cam_model" / "final.pt").stat().st_mtime_ns
        for n in names
    ]

"""`wsss make-cam` on a tiny dataset with a randomly initialised ResNet-18 classifier."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc
from PIL import Image

from cli.main import main
from wsss.camfile import load_cam_file
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import save_checkpoint
from wsss.errors import WsssError
from wsss.models.classifier import CamClassifier
from wsss.stages.make_cam import MakeCamConfig, run

CLASSES = ("cat", "dog")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("make_cam")
    root = make_tiny_voc(base / "voc", n=6, size=40, classes=CLASSES)
    model = CamClassifier("resnet18", len(CLASSES))
    checkpoint = save_checkpoint(
        base / "cls.pt",
        "cam_classifier",
        model_config=model.config(),
        classes=list(CLASSES),
        model=model.state_dict(),
    )
    return root, checkpoint


def _config(setup, out: Path, **changes) -> MakeCamConfig:
    root, checkpoint = setup
    base = MakeCamConfig(
        checkpoint=checkpoint, data=root, split="train", out=out, device="cpu", workers=0
    )
    return replace(base, **changes)


def test_files_schema_and_keys(setup, tmp_path: Path) -> None:
    out = tmp_path / "cams"
    result = run(_config(setup, out, overlays=2))
    voc = VocDataset.open(setup[0])
    ids = voc.split_ids("train")
    assert result.written == result.files == len(ids) == len(list(out.glob("*.npy")))
    for image_id in ids:
        record = load_cam_file(out / f"{image_id}.npy", voc.num_classes, (40, 40))
        expected_keys = [0, *(c + 1 for c in voc.image_classes(image_id))]
        np.testing.assert_array_equal(record.keys, expected_keys)
        assert record.cam.shape == (len(expected_keys) - 1, 10, 10)
        peaks = record.hr_cam.reshape(len(record.hr_cam), -1).max(axis=1)
        for peak in peaks:  # each map peaks at 1, or is all 0 for a dead map
            assert peak == pytest.approx(1.0, abs=1e-3) or peak == 0.0
        assert record.hr_cam.min() >= 0.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "make-cam" and manifest["complete"] is True
    assert manifest["params"]["scales"] == [0.5, 1.0, 1.5, 2.0] and manifest["params"]["flip"]
    assert manifest["params"]["classes"] == list(CLASSES)
    overlays = sorted((out / "overlays").glob("*.png"))
    assert [p.stem for p in overlays] == ids[:2]
    keys = load_cam_file(out / f"{ids[0]}.npy").keys
    assert Image.open(overlays[0]).width == 40 * len(keys)  # image + one panel per class


def test_resume_skips_finished_and_ignores_temporaries(setup, tmp_path: Path) -> None:
    out = tmp_path / "cams"
    config = _config(setup, out, scales=(1.0,), flip=False)
    run(config)
    files = sorted(out.glob("*.npy"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    files[2].unlink()
    leftover = out / f".{files[3].name}.abc123.tmp"  # what a killed atomic write leaves
    leftover.write_bytes(b"partial")
    result = run(config)
    assert (result.written, result.skipped) == (1, len(files) - 1)
    assert files[2].is_file() and not leftover.exists()
    for path in files[:2] + files[3:]:
        assert path.stat().st_mtime_ns == mtimes[path]


def test_resume_with_other_settings_is_refused(setup, tmp_path: Path) -> None:
    out = tmp_path / "cams"
    run(_config(setup, out, scales=(1.0,), flip=False))
    with pytest.raises(WsssError, match="scales"):
        run(_config(setup, out, scales=(0.5,), flip=False))


def test_npz_format_and_sharding(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cams"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = run(_config(setup, out, scales=(1.0,), flip=False, fmt="npz", batch_size=3))
    ids = VocDataset.open(setup[0]).split_ids("train")
    assert sorted(p.stem for p in out.glob("*.npz")) == ids[1::2]
    assert result.written == 3 and not (out / "manifest.json").exists()  # rank 0 writes it
    assert load_cam_file(out / f"{ids[1]}.npz").hr_cam.shape[1:] == (40, 40)


def test_batched_run_equals_single_image_run(setup, tmp_path: Path) -> None:
    tta = {"scales": (0.5, 1.0)}
    single = run(_config(setup, tmp_path / "a", batch_size=1, **tta)).out
    batched = run(_config(setup, tmp_path / "b", batch_size=4, **tta)).out
    for path in sorted(single.glob("*.npy")):
        a, b = load_cam_file(path), load_cam_file(batched / path.name)
        np.testing.assert_allclose(a.hr_cam, b.hr_cam, rtol=1e-4, atol=1e-5)


def test_wrong_checkpoint_kind(setup, tmp_path: Path, capsys) -> None:
    root, _ = setup
    other = save_checkpoint(tmp_path / "seg.pt", "deeplab", model_config={}, classes=list(CLASSES))
    args = ["make-cam", "--checkpoint", str(other), "--data", str(root), "--split", "train"]
    assert main([*args, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert "seg.pt" in error and "deeplab" in error and len(error.splitlines()) == 1


def test_class_list_mismatch(setup, tmp_path: Path) -> None:
    other_classes = tmp_path / "classes.txt"
    other_classes.write_text("cat\ndog\nbird\n")
    with pytest.raises(WsssError, match="classes") as error:
        run(_config(setup, tmp_path / "o", class_list=other_classes))
    assert "cls.pt" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("option", "value"), [("--scales", "1,0"), ("--format", "png")])
def test_bad_options(setup, tmp_path: Path, capsys, option: str, value: str) -> None:
    root, checkpoint = setup
    args = ["make-cam", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "train"]
    assert main([*args, "--out", str(tmp_path / "o"), option, value]) == 2
    assert option in capsys.readouterr().err


def test_cli_runs(setup, tmp_path: Path, cams_miou) -> None:
    root, checkpoint = setup
    out = tmp_path / "cams"
    args = ["make-cam", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "val"]
    assert main([*args, "--out", str(out), "--scales", "1.0", "--no-flip", "--workers", "1"]) == 0
    count = len(VocDataset.open(root).split_ids("val"))
    assert len(list(out.glob("*.npy"))) == count
    # eval-cam takes the split from the manifest
    assert main(["eval-cam", "--cams", str(out), "--gt", str(root), "--no-plot"]) == 0
    result = json.loads((out / "eval_cam.json").read_text())
    assert result["images"] == count and result["split"] == "val"
    # The classifier is untrained, so its figure cannot beat a baseline (the pipeline tests
    # check trained CAMs); it must be the one the written CAM files give.
    voc = VocDataset.open(root)
    assert result["best_miou"] == pytest.approx(
        cams_miou(voc, out, "val", result["best_threshold"])
    )
    assert result["best_miou"] == max(miou for _, miou in result["curve"])

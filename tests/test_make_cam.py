"""`wsss make-cam` on a tiny dataset with a randomly initialised ResNet-18 classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES
from helpers_tinyvoc import stage_config
from PIL import Image

from cli.main import main
from wsss.camfile import load_cam_file
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import save_checkpoint
from wsss.errors import WsssError
from wsss.stages.make_cam import MakeCamConfig, run


def _config(cam_setup, out: Path, **changes) -> MakeCamConfig:
    return stage_config(MakeCamConfig, cam_setup, out, **changes)


def test_files_schema_and_keys(cam_setup, tmp_path: Path) -> None:
    out = tmp_path / "cams"
    result = run(_config(cam_setup, out, overlays=2))
    voc = VocDataset.open(cam_setup[0])
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


def test_npz_format(cam_setup, tmp_path: Path) -> None:
    out = tmp_path / "cams"
    run(_config(cam_setup, out, scales=(1.0,), flip=False, format="npz", batch_size=3))
    ids = VocDataset.open(cam_setup[0]).split_ids("train")
    assert sorted(p.stem for p in out.glob("*.npz")) == ids
    assert load_cam_file(out / f"{ids[1]}.npz").hr_cam.shape[1:] == (40, 40)


def test_batched_run_equals_single_image_run(cam_setup, tmp_path: Path) -> None:
    tta = {"scales": (0.5, 1.0)}
    single = run(_config(cam_setup, tmp_path / "a", batch_size=1, **tta)).out
    batched = run(_config(cam_setup, tmp_path / "b", batch_size=4, **tta)).out
    for path in sorted(single.glob("*.npy")):
        a, b = load_cam_file(path), load_cam_file(batched / path.name)
        np.testing.assert_allclose(a.hr_cam, b.hr_cam, rtol=1e-4, atol=1e-5)


def test_pil_bicubic_resize_batches_alike_and_is_part_of_the_signature(
    cam_setup, tmp_path: Path
) -> None:
    """--resize pil-bicubic: the loader's PIL views batch like the images; the manifest
    records the resize (the default's manifest as before), and resuming a folder made with
    the other resize is refused."""
    tta = {"scales": (0.5, 1.0, 1.5), "resize": "pil-bicubic"}
    single = run(_config(cam_setup, tmp_path / "a", batch_size=1, **tta)).out
    batched = run(_config(cam_setup, tmp_path / "b", batch_size=4, **tta)).out
    bilinear = run(_config(cam_setup, tmp_path / "c", batch_size=4, scales=tta["scales"])).out
    differ = False
    for path in sorted(single.glob("*.npy")):
        a, b = load_cam_file(path), load_cam_file(batched / path.name)
        np.testing.assert_allclose(a.hr_cam, b.hr_cam, rtol=1e-4, atol=1e-5)
        differ |= not np.allclose(a.hr_cam, load_cam_file(bilinear / path.name).hr_cam)
    assert differ
    params = json.loads((single / "manifest.json").read_text())["params"]
    assert params["resize"] == "pil-bicubic"
    assert "resize" not in json.loads((bilinear / "manifest.json").read_text())["params"]
    with pytest.raises(WsssError, match="resize=bilinear \\(now pil-bicubic\\)"):
        run(_config(cam_setup, bilinear, batch_size=4, **tta))


def test_wrong_checkpoint_kind(cam_setup, tmp_path: Path, capsys) -> None:
    root, _ = cam_setup
    other = save_checkpoint(tmp_path / "seg.pt", "deeplab", model_config={}, classes=list(CLASSES))
    args = ["make-cam", "--checkpoint", str(other), "--data", str(root), "--split", "train"]
    assert main([*args, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert "seg.pt" in error and "deeplab" in error and len(error.splitlines()) == 1


def test_class_list_mismatch(cam_setup, tmp_path: Path) -> None:
    other_classes = tmp_path / "classes.txt"
    other_classes.write_text("cat\ndog\nbird\n")
    with pytest.raises(WsssError, match="classes") as error:
        run(_config(cam_setup, tmp_path / "o", class_list=other_classes))
    assert "cls.pt" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("option", "value"), [("--scales", "1,0"), ("--format", "png")])
def test_bad_options(cam_setup, tmp_path: Path, capsys, option: str, value: str) -> None:
    root, checkpoint = cam_setup
    args = ["make-cam", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "train"]
    assert main([*args, "--out", str(tmp_path / "o"), option, value]) == 2
    assert option in capsys.readouterr().err


def test_cli_runs(cam_setup, tmp_path: Path, cams_miou) -> None:
    root, checkpoint = cam_setup
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


def test_files_written_by_the_thread_pool_equal_those_written_in_place(
    cam_setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsss import transfers

    tta = {"scales": (1.0,), "batch_size": 3}
    monkeypatch.setattr(transfers, "writer_threads", lambda device: 0)
    in_place = run(_config(cam_setup, tmp_path / "a", **tta)).out
    monkeypatch.setattr(transfers, "writer_threads", lambda device: 3)
    pooled = run(_config(cam_setup, tmp_path / "b", **tta)).out
    files = sorted(in_place.glob("*.npy"))
    assert files and len(files) == len(list(pooled.glob("*.npy")))
    for path in files:
        assert (pooled / path.name).read_bytes() == path.read_bytes()
    assert json.loads((pooled / "manifest.json").read_text())["complete"] is True

"""`wsss make-pseudo` end to end on a tiny VOC tree with CAMs made from its ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import cams_from_mask, make_tiny_voc
from PIL import Image

from cli.main import main as cli_main
from wsss.camfile import CamRecord, load_cam_file, save_cam_file
from wsss.crf import MISSING_CRF, crf_preset
from wsss.data.classes import class_names_with_background
from wsss.data.palette import VOC_PALETTE, read_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import read_json, write_json
from wsss.metrics import ConfusionMatrix
from wsss.pseudo import PseudoParams, pseudo_label, threshold_labels
from wsss.stages.make_pseudo import MakePseudoConfig, run

ROOT = Path(__file__).resolve().parents[1]
N = 6


def fake_cams(voc: VocDataset, image_id: str) -> CamRecord:
    """CAMs from the ground truth: each object's mask blurred and shifted, peak 1."""
    return cams_from_mask(voc, image_id, shift=2)


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[VocDataset, Path]:
    voc = VocDataset.open(make_tiny_voc(tmp_path / "voc", n=N, size=40))
    cams = tmp_path / "cams"
    for image_id in voc.split_ids("train"):
        save_cam_file(cams / f"{image_id}.npy", fake_cams(voc, image_id))
    return voc, cams


def config(voc: VocDataset, cams: Path, out: Path, **kwargs) -> MakePseudoConfig:
    settings = {"threshold": 0.3, "crf": False, "crf_workers": 1, **kwargs}
    return MakePseudoConfig(cams=cams, data=voc.root, split="train", out=out, **settings)


def outputs(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: read_label_png(p) for p in sorted(out.glob("*.png"))}


def test_labels_are_voc_palette_pngs_holding_the_thresholded_cams(tiny, tmp_path):
    voc, cams = tiny
    result = run(config(voc, cams, tmp_path / "out"))

    assert result.written == N and result.files == N
    names = class_names_with_background(voc.classes)
    matrix = ConfusionMatrix(len(names), names)
    for image_id in voc.split_ids("train"):
        with Image.open(tmp_path / "out" / f"{image_id}.png") as image:
            assert image.mode == "P"
            assert image.getpalette()[: len(VOC_PALETTE)] == VOC_PALETTE[: len(image.getpalette())]
            labels = np.asarray(image)
        cam = load_cam_file(cams / f"{image_id}.npy", voc.num_classes)
        assert np.array_equal(labels, threshold_labels(cam, 0.3))
        assert labels.shape == voc.load_mask(image_id).shape
        matrix.update(voc.load_mask(image_id), labels)
    # the split has ground truth: scored with the one confusion matrix, saved like `wsss eval`
    saved = read_json(tmp_path / "out" / "eval.json")
    assert saved["miou"] == pytest.approx(matrix.compute().miou)
    assert saved["miou"] == pytest.approx(result.scores.miou)
    assert set(saved["iou"]) == set(names)
    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert manifest["stage"] == "make-pseudo" and manifest["complete"] is True
    assert manifest["params"]["threshold"] == 0.3 and manifest["params"]["crf"] is None


def test_crf_output_matches_the_library_and_beats_plain_thresholds(tiny, tmp_path):
    voc, cams = tiny
    plain = run(config(voc, cams, tmp_path / "plain"))
    refined = run(config(voc, cams, tmp_path / "crf", crf=True))
    image_id = voc.split_ids("train")[0]
    expected = pseudo_label(
        np.asarray(voc.load_image(image_id)),
        load_cam_file(cams / f"{image_id}.npy"),
        PseudoParams(threshold=0.3),
    )
    assert np.array_equal(outputs(tmp_path / "crf")[image_id], expected)
    assert refined.scores.miou > plain.scores.miou + 5


def test_a_crf_preset_gives_every_parameter_and_a_given_option_replaces_one(tiny, tmp_path):
    """--crf-preset reference --bilateral-srgb 7: the reference's CRF ('labels' unary) with
    colour width 7, recorded with the preset's name; the labels are that CRF's."""
    voc, cams = tiny
    out = tmp_path / "crf"
    run(config(voc, cams, out, crf=True, crf_preset="reference", bilateral_srgb=7.0))
    params = read_json(out / "manifest.json")["params"]
    crf = crf_preset("reference", bilateral_srgb=7.0)
    assert params["crf_preset"] == "reference" and params["crf"] == crf.to_json()
    assert params["crf"]["unary"] == "labels" and params["crf"]["bilateral_sxy"] == 50.0
    image_id = voc.split_ids("train")[0]
    image, cam = np.asarray(voc.load_image(image_id)), load_cam_file(cams / f"{image_id}.npy")
    expected = pseudo_label(image, cam, PseudoParams(threshold=0.3, crf=crf))
    assert np.array_equal(outputs(out)[image_id], expected)
    # scored in both conventions: ours and the official code's (every class, absent ones 0);
    # every class of the tiny tree occurs and no pixel is 255, so the two agree here
    saved = read_json(out / "eval.json")
    assert saved["miou_reference"] == pytest.approx(saved["miou"])
    assert set(saved["iou_reference"]) == set(saved["iou"])


def test_a_resumed_run_still_scores_the_whole_split(tiny, tmp_path):
    voc, cams = tiny
    out = tmp_path / "out"
    first = run(config(voc, cams, out))
    (out / f"{voc.split_ids('train')[2]}.png").unlink()
    second = run(config(voc, cams, out))
    assert (second.written, second.skipped, second.files) == (1, N - 1, N)
    assert second.scores.images == N and second.scores.miou == pytest.approx(first.scores.miou)


def test_two_workers_write_the_same_labels_as_one(tiny, tmp_path):
    voc, cams = tiny
    crf = True
    one = run(config(voc, cams, tmp_path / "one", crf=crf, crf_workers=1))
    two = run(config(voc, cams, tmp_path / "two", crf=crf, crf_workers=2))
    assert two.workers == 2
    first, second = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert first.keys() == second.keys() and len(first) == N
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert two.scores.iou == one.scores.iou and two.scores.images == N


def test_confident_mode_writes_ignore_and_scores_only_the_rest(tiny, tmp_path):
    voc, cams = tiny
    result = run(config(voc, cams, tmp_path / "out", fg_threshold=0.4, bg_threshold=0.1))
    labels = outputs(tmp_path / "out")
    ignored = sum(int((v == 255).sum()) for v in labels.values())
    assert 0 < ignored < sum(v.size for v in labels.values())
    names = class_names_with_background(voc.classes)
    matrix = ConfusionMatrix(len(names), names)
    for image_id, value in labels.items():
        gt = voc.load_mask(image_id).copy()
        gt[value == 255] = 255  # scored on non-ignored pixels only
        matrix.update(gt, np.where(value == 255, 0, value))
    saved = read_json(tmp_path / "out" / "eval.json")
    assert saved["miou"] == pytest.approx(matrix.compute().miou)
    assert saved["ignored_fraction"] == pytest.approx(result.ignored_fraction)
    assert result.ignored_fraction == pytest.approx(ignored / sum(v.size for v in labels.values()))
    assert read_json(tmp_path / "out" / "manifest.json")["params"]["mode"] == "confident"


def blend_of(voc, cams) -> float:
    """The default rule computed here from numpy (the stage reads a histogram of 0.001 bins):
    the average of the strongest CAM's mean and its quantile 0.5 + q10."""
    tops = [load_cam_file(cams / f"{i}.npy", voc.num_classes).hr_cam.max(axis=0)
            for i in voc.split_ids("train")]  # fmt: skip
    pooled = np.concatenate([t.ravel() for t in tops])
    lifted = float(np.quantile(pooled, min(0.95, 0.5 + float(np.quantile(pooled, 0.1)))))
    return (lifted + float(pooled.mean())) / 2


def test_threshold_is_the_label_free_rule_unless_the_oracle_is_asked_for(tiny, tmp_path):
    voc, cams = tiny
    write_json(cams / "eval_cam.json", {"best_threshold": 0.35, "best_miou": 50.0})
    default = run(config(voc, cams, tmp_path / "a", threshold="auto"))
    # the rule, even where an eval-cam record exists (it is an oracle: picked on masks)
    assert default.threshold == pytest.approx(blend_of(voc, cams), abs=2e-3)
    assert "label-free rule blend" in default.threshold_source
    assert default.rule == "blend"
    assert read_json(cams / "label_free_threshold.json")["threshold"] == default.threshold
    recorded = run(config(voc, cams, tmp_path / "b", threshold="oracle"))
    assert recorded.threshold == 0.35 and recorded.rule == "oracle"
    source = read_json(tmp_path / "b" / "manifest.json")["params"]["threshold_source"]
    assert "eval_cam.json" in source and source.startswith("oracle")


def test_confident_thresholds_derive_from_the_background_threshold(tiny, tmp_path):
    """The one rule of the pipeline's random-walk path, stand-alone too: fg 2 t, bg t / 2."""
    voc, cams = tiny
    result = run(config(voc, cams, tmp_path / "out", threshold=0.2, confident=True))
    assert result.confident == (0.4, 0.1) and "fg = 2 t" in result.threshold_source
    given = run(config(voc, cams, tmp_path / "given", fg_threshold=0.5, bg_threshold=0.05))
    assert given.confident == (0.5, 0.05)


@pytest.mark.parametrize(("best", "at_edge"), [(0.05, True), (0.1, False)])
def test_a_threshold_at_the_low_end_of_eval_cams_sweep_is_flagged(tiny, tmp_path, best, at_edge):
    voc, cams = tiny
    curve = [[0.05, 40.2], [0.1, 41.0 if best == 0.1 else 34.4], [0.15, 29.8]]
    write_json(cams / "eval_cam.json", {"best_threshold": best, "curve": curve})
    result = run(config(voc, cams, tmp_path / "out", threshold="oracle"))
    assert result.threshold == best
    assert ("the lowest eval-cam tried" in result.threshold_source) is at_edge


@pytest.mark.parametrize(
    ("settings", "record", "message"),
    [
        ({"threshold": 1.5}, None, "--threshold must be in"),
        ({"threshold": "oracle"}, {"best_threshold": 3}, "eval_cam.json: 'best_threshold'"),
        ({"threshold": "oracle"}, {"curve": []}, "eval_cam.json: 'best_threshold'"),
        ({"threshold": "oracle"}, None, "eval_cam.json: not found"),
        ({"crf_workers": 0}, None, "--crf-workers"),
        ({"fg_threshold": 0.1, "bg_threshold": 0.4}, None, "must not exceed --fg-threshold"),
    ],
)
def test_bad_thresholds_and_options_are_one_line_errors(tiny, tmp_path, settings, record, message):
    voc, cams = tiny
    if record is not None:
        write_json(cams / "eval_cam.json", record)
    with pytest.raises(WsssError, match=message) as info:
        run(config(voc, cams, tmp_path / "out", **settings))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("keys", [[0, 2], [0, 9]], ids=["class-not-in-image", "class-not-in-list"])
def test_cam_keys_not_matching_the_class_list_name_the_file(tiny, tmp_path, keys):
    voc, cams = tiny
    image_id = voc.split_ids("train")[0]  # labelled with class 1 only
    assert voc.image_classes(image_id) == [0]
    good = load_cam_file(cams / f"{image_id}.npy")
    save_cam_file(cams / f"{image_id}.npy", replace(good, keys=np.array(keys)))
    with pytest.raises(WsssError) as info:
        run(config(voc, cams, tmp_path / "out"))
    message = str(info.value)
    assert message.startswith(str(cams / f"{image_id}.npy")) and "\n" not in message


def test_missing_cam_file_fails_before_any_work(tiny, tmp_path):
    voc, cams = tiny
    missing = cams / f"{voc.split_ids('train')[-1]}.npy"
    missing.unlink()
    with pytest.raises(WsssError, match="CAM file of list entry .* not found"):
        run(config(voc, cams, tmp_path / "out"))
    assert not list((tmp_path / "out").glob("*.png"))


def test_without_pydensecrf_the_crf_fails_clearly_and_no_crf_works(tiny, tmp_path, monkeypatch):
    voc, cams = tiny
    for name in ("pydensecrf", "pydensecrf.densecrf", "pydensecrf.utils"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(WsssError) as info:
        run(config(voc, cams, tmp_path / "crf", crf=True))
    assert str(info.value) == MISSING_CRF
    assert run(config(voc, cams, tmp_path / "plain", crf=False)).files == N


def test_cli_writes_labels_and_reports_errors_in_one_line(tiny, tmp_path, capsys):
    voc, cams = tiny
    common = ["make-pseudo", "--cams", str(cams), "--data", str(voc.root), "--split", "train"]
    out = tmp_path / "out"
    assert cli_main([*common, "--out", str(out), "--workers", "1", "--confident"]) == 0
    assert len(outputs(out)) == N
    t = read_json(cams / "label_free_threshold.json")["threshold"]  # the label-free default
    assert read_json(out / "manifest.json")["params"]["fg_threshold"] == min(1.0, 2 * t)
    assert "mIoU" in capsys.readouterr().out

    assert cli_main([*common, "--out", str(tmp_path / "bad"), "--threshold", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--threshold must be in" in error and "\n" not in error


def test_torchrun_shards_the_split_and_sums_the_scores(tiny, tmp_path):
    voc, cams = tiny
    single = run(config(voc, cams, tmp_path / "single"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    env["TMPDIR"] = str(tmp_path)  # torchrun's own scratch folders land here, not in /tmp
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "cli.main", "make-pseudo", "--cams", str(cams), "--data", str(voc.root)]
    command += ["--split", "train", "--out", str(tmp_path / "sharded"), "--threshold", "0.3"]
    command += ["--no-crf", "--workers", "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    assert outputs(tmp_path / "sharded").keys() == outputs(tmp_path / "single").keys()
    saved = read_json(tmp_path / "sharded" / "eval.json")
    assert saved["images"] == N and saved["miou"] == pytest.approx(single.scores.miou)
    manifest = json.loads((tmp_path / "sharded" / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["files"] == N


def test_scores_need_ground_truth_for_the_whole_split(tiny, tmp_path):
    voc, cams = tiny
    voc.mask_path(voc.split_ids("train")[1]).unlink()
    assert run(config(voc, cams, tmp_path / "auto")).scores is None
    assert not (tmp_path / "auto" / "eval.json").exists()
    with pytest.raises(WsssError, match="ground truth not found"):
        run(config(voc, cams, tmp_path / "forced", score=True))


@pytest.mark.parametrize(
    ("cores", "per_machine", "expected"), [(8, None, 8), (8, "2", 4), (8, "3", 2), (1, "2", 1)]
)
@pytest.mark.parametrize("source", ["affinity", "cpu_count"])
def test_default_workers_share_the_cores_among_torchrun_processes(
    monkeypatch, cores, per_machine, expected, source
):
    from wsss.pool import default_workers

    if source == "affinity":
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the affinity mask wins
    else:  # platforms without sched_getaffinity (macOS)
        monkeypatch.delattr(os, "sched_getaffinity", raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
    if per_machine is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", per_machine)
    assert default_workers() == expected

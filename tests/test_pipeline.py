"""End to end: every stage of `wsss pipeline demo` on a tiny demo dataset, then a resume;
the same with the random-walk path."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import one_torch_thread

from wsss.camfile import load_cam_file
from wsss.data.palette import read_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.metrics import ConfusionMatrix
from wsss.stages.eval_cam import EvalCamConfig
from wsss.stages.eval_cam import run as eval_cam
from wsss.stages.pipeline import DEMO, PipelineConfig, run

TINY = replace(
    DEMO,
    demo={"n_train": 12, "n_val": 6, "size": 64, "seed": 3},
    train_cam={**DEMO.train_cam, "epochs": 1, "batch_size": 4, "crop": 64, "warmup_epochs": 0},
    make_cam={"scales": (1.0, 0.5), "flip": True, "overlays": 2},
    train_seg={**DEMO.train_seg, "epochs": 1, "batch_size": 4, "crop": 64, "warmup_epochs": 0,
               "scale_range": (48, 80)},
    predict={"scales": (1.0,), "flip": True},
    train_aff={**DEMO.train_aff, "epochs": 1, "batch_size": 4, "crop": 64,
               "scale_range": (48, 80)},
)  # fmt: skip
TRAINERS = ("cam_model", "seg_model", "aff_model", "seg_model_rw")
MARGIN = 5.0  # mIoU points above predicting background everywhere


def _labels_miou(voc: VocDataset, folder: Path, split: str) -> float:
    """mIoU (%) of a folder of label PNGs against the ground truth, 255 predictions left out."""
    matrix = ConfusionMatrix(voc.num_classes + 1)
    for image_id in voc.split_ids(split):
        matrix.update(voc.load_mask(image_id), read_label_png(folder / f"{image_id}.png"),
                      ignore_pred=True)  # fmt: skip
    return matrix.compute().miou


def _check_figures(
    voc: VocDataset, figures: dict, cams: Path, pseudo: Path, pred: Path, cams_miou
) -> None:
    """The summary's figures are those of the stage outputs, recomputed from the files."""
    cam_key = "cam_miou" if "cam_miou" in figures else "rw_miou"
    threshold = figures["cam_threshold" if cam_key == "cam_miou" else "rw_threshold"]
    assert figures[cam_key] == pytest.approx(cams_miou(voc, cams, "train", threshold))
    assert figures["pseudo_miou"] == pytest.approx(_labels_miou(voc, pseudo, "train"))
    assert figures["seg_miou"] == pytest.approx(_labels_miou(voc, pred, "val"))


@pytest.mark.slow
def test_every_stage_runs_and_writes_valid_outputs(
    tmp_path: Path, all_background_miou, cams_miou
) -> None:
    out = tmp_path / "run"
    with one_torch_thread():
        result = run(PipelineConfig(out=out, recipe=TINY, device="cpu", workers=0))
    voc = VocDataset.open(out / "data")
    train_ids, val_ids = voc.split_ids("train"), voc.split_ids("val")

    # CAM files: one per train image, keys = background + the image's classes, max <= 1
    for image_id in train_ids:
        record = load_cam_file(out / "cams" / f"{image_id}.npy", voc.num_classes)
        assert record.keys.tolist() == [0] + [c + 1 for c in voc.image_classes(image_id)]
        assert record.hr_cam.shape[1:] == (64, 64) and record.cam.shape[1:] == (16, 16)
        assert record.hr_cam.min() >= 0.0 and record.hr_cam.max() <= 1.0 + 1e-6
    # pseudo labels and predictions: palette PNGs of image size with values in range
    for folder, ids in (("pseudo", train_ids), ("pred_val", val_ids)):
        for image_id in ids:
            label = read_label_png(out / folder / f"{image_id}.png")
            assert label.shape == (64, 64)
            assert set(np.unique(label)) <= set(range(voc.num_classes + 1)) | {255}

    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary
    _check_figures(voc, summary, out / "cams", out / "pseudo", out / "pred_val", cams_miou)
    # CAMs and pseudo labels beat predicting background everywhere, with a margin (17.0 and
    # 20.5 vs 10.7 measured). The segmenter's one epoch does not (6.3 vs 10.4; 14.0 after five):
    # test_train_seg checks that a segmenter learns, here its figure is checked above.
    trivial = all_background_miou(out / "data", "train")
    assert summary["cam_miou"] > trivial + MARGIN
    assert summary["pseudo_miou"] > trivial + MARGIN
    assert set(summary["seconds"]) >= {"train-cam", "make-cam", "make-pseudo", "train-seg", "eval"}

    # A second run finds everything finished: no stage retrains, the numbers are the same.
    mtime = (out / "cam_model" / "final.pt").stat().st_mtime_ns
    with one_torch_thread():
        again = run(PipelineConfig(out=out, recipe=TINY, device="cpu", workers=0))
    assert (out / "cam_model" / "final.pt").stat().st_mtime_ns == mtime
    for key in ("cam_miou", "pseudo_miou", "seg_miou"):
        assert again.summary[key] == pytest.approx(summary[key])

    # A changed recipe does not silently reuse the model trained with the old one.
    changed = replace(TINY, train_cam={**TINY.train_cam, "lr": 5e-4})
    with pytest.raises(WsssError, match=r"final\.pt: saved with lr=0\.001, this run has 0\.0005"):
        run(PipelineConfig(out=out, recipe=changed, device="cpu", workers=0))
    assert (out / "cam_model" / "final.pt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_random_walk_path_runs_beside_the_crf_path_and_resumes(
    tmp_path: Path, all_background_miou, cams_miou
) -> None:
    out = tmp_path / "run"
    config = PipelineConfig(out=out, recipe=TINY, device="cpu", workers=0, random_walk=True)
    with one_torch_thread():
        result = run(config)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary
    # The CRF path's keys are unchanged; the random-walk path has its own object.
    assert set(summary) >= {
        "recipe",
        "cam_miou",
        "cam_threshold",
        "cam_split",
        "pseudo_miou",
        "pseudo_split",
        "seg_miou",
        "seg_split",
        "seconds",
        "total_seconds",
    }
    rw = summary["random_walk"]
    assert 0.0 < rw["rw_threshold"] < 1.0
    voc = VocDataset.open(out / "data")
    _check_figures(voc, summary, out / "cams", out / "pseudo", out / "pred_val", cams_miou)
    _check_figures(voc, rw, out / "rw", out / "pseudo_rw", out / "pred_val_rw", cams_miou)
    trivial = all_background_miou(out / "data", "train")
    assert rw["rw_miou"] > trivial + MARGIN and rw["pseudo_miou"] > trivial + MARGIN
    t = summary["cam_threshold"]
    assert (rw["confident_fg"], rw["confident_bg"]) == (min(1.0, 2 * t), t / 2)
    assert set(summary["seconds"]) >= {
        "make-pseudo (confident)",
        "train-aff",
        "make-rw",
        "eval-cam (rw)",
        "train-seg (rw)",
        "eval (rw)",
    }

    # The walked maps are CAM files like make-cam's (same keys and grids) that eval-cam reads.
    train_ids = voc.split_ids("train")
    for image_id in train_ids:
        walked = load_cam_file(out / "rw" / f"{image_id}.npy", voc.num_classes)
        cams = load_cam_file(out / "cams" / f"{image_id}.npy", voc.num_classes)
        assert walked.keys.tolist() == cams.keys.tolist()
        assert walked.cam.shape == cams.cam.shape and walked.hr_cam.shape == cams.hr_cam.shape
        assert walked.hr_cam.min() >= 0.0 and walked.hr_cam.max() <= 1.0 + 1e-6
    sweep = eval_cam(EvalCamConfig(cams=out / "rw", gt=out / "data", split="train", plot=False))
    assert sweep.sweep.best_miou == pytest.approx(rw["rw_miou"])
    for folder, ids in (
        ("pseudo_confident", train_ids),
        ("pseudo_rw", train_ids),
        ("pred_val_rw", voc.split_ids("val")),
    ):
        for image_id in ids:
            assert read_label_png(out / folder / f"{image_id}.png").shape == (64, 64)

    # A second run retrains nothing and gives the same numbers.
    mtimes = {name: (out / name / "final.pt").stat().st_mtime_ns for name in TRAINERS}
    with one_torch_thread():
        again = run(config)
    assert {name: (out / name / "final.pt").stat().st_mtime_ns for name in TRAINERS} == mtimes
    for key, value in rw.items():
        assert again.summary["random_walk"][key] == pytest.approx(value)


def test_a_variant_replaces_the_recipe_variant_and_never_stacks(tmp_path: Path) -> None:
    from wsss.stages.pipeline import train_cam_options

    recipe = replace(TINY, variant="pcl")
    pcl = train_cam_options(PipelineConfig(out=tmp_path, recipe=recipe))
    assert pcl["alpha"] == 0.0 and pcl["use_pcl"] and pcl["pieces"] == 4
    full = train_cam_options(PipelineConfig(out=tmp_path, recipe=recipe, variant="full"))
    assert full["alpha"] == TINY.train_cam["alpha"] == 4.0 and full["use_pcl"]
    base = train_cam_options(PipelineConfig(out=tmp_path, recipe=recipe, variant="baseline"))
    assert base["pieces"] == 1 and base["alpha"] == 0.0 and not base["use_pcl"]
    with pytest.raises(WsssError, match="--variant must be one of"):
        train_cam_options(PipelineConfig(out=tmp_path, recipe=recipe, variant="puzzle"))

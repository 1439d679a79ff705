"""End to end: every stage of `wsss pipeline demo` on a tiny demo dataset, then a resume;
the same with the random-walk path; `wsss pipeline run` on a tiny dataset without masks."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc, one_torch_thread

from cli.main import main
from wsss import walk_check
from wsss.cam_eval import DEFAULT_THRESHOLDS
from wsss.cam_threshold import RECORD
from wsss.camfile import load_cam_file
from wsss.data.palette import read_label_png
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import load_checkpoint
from wsss.errors import WsssError
from wsss.io import read_json
from wsss.mask_threshold import MASK_GRID
from wsss.metrics import ConfusionMatrix
from wsss.recipes import DEMO
from wsss.stages import pipeline
from wsss.stages.eval_cam import EvalCamConfig
from wsss.stages.eval_cam import run as eval_cam
from wsss.stages.pipeline import PipelineConfig, resolve_splits, run, summary_rows

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


def _labels_miou(voc: VocDataset, folder: Path, split: str, reference: bool = False) -> float:
    """mIoU (%) of a folder of label PNGs against the ground truth, 255 predictions left out
    (`reference`: the official code's convention, every class, a predicted 255 a miss)."""
    matrix = ConfusionMatrix(voc.num_classes + 1)
    for image_id in voc.split_ids(split):
        matrix.update(voc.load_mask(image_id), read_label_png(folder / f"{image_id}.png"),
                      ignore_pred=True)  # fmt: skip
    scores = matrix.compute()
    return scores.miou_reference if reference else scores.miou


def _check_figures(
    voc: VocDataset, figures: dict, cams: Path, pseudo: Path, pred: Path, cams_miou
) -> None:
    """The summary's figures are those of the stage outputs, recomputed from the files."""
    cam_key = "cam_miou" if "cam_miou" in figures else "rw_miou"
    threshold = figures["cam_threshold" if cam_key == "cam_miou" else "rw_threshold"]
    assert figures[cam_key] == pytest.approx(cams_miou(voc, cams, "train", threshold))
    assert figures["pseudo_miou"] == pytest.approx(_labels_miou(voc, pseudo, "train"))
    assert figures["seg_miou"] == pytest.approx(_labels_miou(voc, pred, "val"))
    # beside ours, the official code's convention, labelled by the key's suffix
    reference = _labels_miou(voc, pseudo, "train", reference=True)
    assert figures["pseudo_miou_reference"] == pytest.approx(reference)
    assert figures["seg_miou_reference"] == pytest.approx(_labels_miou(voc, pred, "val", True))


@pytest.mark.slow
def test_every_stage_runs_and_writes_valid_outputs(
    tmp_path: Path, all_background_miou, cams_miou
) -> None:
    out = tmp_path / "run"
    with one_torch_thread():
        result = run(
            PipelineConfig(out=out, recipe=TINY, device="cpu", loader_workers=0, crf_workers=1)
        )
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
    # every trainer ran with the options the summary says were resolved for it
    for stage, folder in (("train_cam", "cam_model"), ("train_seg", "seg_model")):
        args = load_checkpoint(out / folder / "final.pt")["args"]
        resolved = summary["resolved"][stage]
        assert {k: args[k] for k in resolved} == resolved, stage
    assert summary["resolved"]["train_cam"]["pcl"] is True  # the recipe's variant, pcl
    crf = read_json(out / "pseudo" / "manifest.json")["params"]["crf"]
    # the CRF's parameters are the preset's (wsss) unless given
    assert summary["resolved"]["make_pseudo"]["crf_preset"] == "wsss"
    assert summary["resolved"]["make_pseudo"]["crf_iters"] is None and crf["iterations"] == 10
    assert "evaluate.py" in summary["miou_reference_convention"]
    for key in ("cam_miou", "cam_miou_oracle", "pseudo_miou", "seg_miou"):
        assert 0.0 <= summary[key] <= 100.0
    _check_figures(voc, summary, out / "cams", out / "pseudo", out / "pred_val", cams_miou)
    # CAMs and pseudo labels beat predicting background everywhere, with a margin (the CAMs
    # 17.0 at the oracle, 15.7 at the blend rule's threshold, pseudo labels 19.4, vs 10.7
    # measured), and the label-free threshold stays near the oracle on these blurred CAMs of
    # a net trained briefly. The segmenter's one epoch does not (6.3 vs 10.4; 14.0
    # after five): test_train_seg checks that a segmenter learns, here its figure is checked
    # above.
    trivial = all_background_miou(out / "data", "train")
    assert summary["cam_miou_oracle"] > trivial + MARGIN
    assert summary["cam_miou"] > summary["cam_miou_oracle"] - 2.0
    assert summary["pseudo_miou"] > trivial + MARGIN
    assert set(summary["seconds"]) >= {"train-cam", "make-cam", "make-pseudo", "train-seg", "eval"}
    # CPU seconds per step beside the wall seconds; training takes CPU, and the total is the sum
    assert set(summary["cpu_seconds"]) == set(summary["seconds"])
    assert summary["cpu_seconds"]["train-cam"] > 0
    assert summary["total_cpu_seconds"] == pytest.approx(sum(summary["cpu_seconds"].values()),
                                                         abs=0.1)  # fmt: skip
    assert summary["skipped"] == {} and summary["overrides"] == []

    # The threshold is the label-free rule's; its mIoU is a point of eval-cam's sweep, whose
    # best is the oracle, marked so in the table.
    t = summary["cam_threshold"]
    assert summary["cam_threshold_rule"] == "blend"
    assert t == read_json(out / "cams" / RECORD)["threshold"]
    curve = dict(map(tuple, read_json(out / "cams" / "eval_cam.json")["curve"]))
    assert curve[t] == pytest.approx(summary["cam_miou"])
    assert summary["cam_miou_oracle"] == pytest.approx(max(curve.values()))
    assert (
        summary["cam_threshold_oracle"]
        == read_json(out / "cams" / "eval_cam.json")["best_threshold"]
    )
    assert read_json(out / "pseudo" / "manifest.json")["params"]["threshold"] == t
    oracle_rows = [label for label, _ in summary_rows(summary) if "oracle" in label]
    assert len(oracle_rows) == 1 and "ground truth" in oracle_rows[0]

    # A second run finds everything finished: no stage retrains, the numbers are the same.
    # Then the run folder moves, its data and models inside it: still the same run (before,
    # every stage refused its own outputs as made with data=<the old path>).
    mtime = (out / "cam_model" / "final.pt").stat().st_mtime_ns
    moved = tmp_path / "moved" / "run"
    for folder in (out, moved):
        if folder == moved:
            shutil.move(out, moved)
        with one_torch_thread():
            config = PipelineConfig(
                out=folder, recipe=TINY, device="cpu", loader_workers=0, crf_workers=1
            )
            again = run(config)
        assert (folder / "cam_model" / "final.pt").stat().st_mtime_ns == mtime
        for key in ("cam_miou", "pseudo_miou", "seg_miou"):
            assert again.summary[key] == pytest.approx(summary[key])
    shutil.move(moved, out)

    # A changed recipe does not silently reuse the model trained with the old one.
    changed = replace(TINY, train_cam={**TINY.train_cam, "lr": 5e-4})
    with pytest.raises(WsssError, match=r"final\.pt: saved with lr=0\.001, this run has 0\.0005"):
        run(PipelineConfig(out=out, recipe=changed, device="cpu", loader_workers=0, crf_workers=1))
    assert (out / "cam_model" / "final.pt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_random_walk_path_runs_beside_the_crf_path_and_resumes(
    tmp_path: Path, all_background_miou, cams_miou
) -> None:
    out = tmp_path / "run"
    # walk_check off: the walked labels go on to the segmenter whatever the check says
    recipe = replace(TINY, walk_check=False)
    config = PipelineConfig(
        out=out, recipe=recipe, device="cpu", loader_workers=0, crf_workers=1, random_walk=True
    )
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
    # The walked maps at their best (oracle) threshold beat background by a margin; at the
    # label-free threshold the tiny run's maps and their pseudo labels beat it by less. Measured
    # vs 10.7: under mean-cam 17.1 at the oracle, 14.8 label-free; under blend (a lower t, so
    # other confident regions for the affinity net) 15.4 and 14.9.
    assert rw["rw_miou_oracle"] > trivial + 3.0
    assert rw["rw_miou"] > trivial and rw["pseudo_miou"] > trivial
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
    assert sweep.sweep.best_miou == pytest.approx(rw["rw_miou_oracle"])
    assert rw["rw_threshold"] == read_json(out / "rw" / RECORD)["threshold"]
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
        if key != "walk_check":
            assert again.summary["random_walk"][key] == pytest.approx(value)
    assert again.summary["random_walk"]["walk_check"] == rw["walk_check"]
    # the check was measured and recorded, not enforced
    assert rw["kept"] is True and rw["walk_check"]["enforced"] is False
    assert read_json(out / "walk_check.json")["keep_walk"] == rw["walk_check"]["keep_walk"]


@pytest.mark.slow
def test_a_walk_the_check_drops_trains_no_segmenter(tmp_path: Path, monkeypatch) -> None:
    """Where the label-free check fails, the run keeps the CRF labels and says so; where it
    passes, the walked labels go on to their own segmenter."""
    monkeypatch.setattr(walk_check.WalkCheck, "keep_walk", property(lambda self: False))
    out = tmp_path / "run"
    config = PipelineConfig(
        out=out, recipe=TINY, device="cpu", loader_workers=0, crf_workers=1, random_walk=True
    )
    with one_torch_thread():
        dropped = run(config).summary
    rw = dropped["random_walk"]
    assert rw["kept"] is False and rw["seg_miou"] is None and rw["pseudo_miou"] is not None
    assert "train-seg (rw)" in dropped["skipped"] and "train-seg (rw)" not in dropped["seconds"]
    assert not (out / "seg_model_rw").exists() and (out / "pseudo_rw").is_dir()
    assert any("walk check" in text for text in map(str, summary_rows(dropped)))

    monkeypatch.setattr(walk_check.WalkCheck, "keep_walk", property(lambda self: True))
    with one_torch_thread():
        kept = run(config).summary
    assert kept["random_walk"]["kept"] is True and kept["random_walk"]["seg_miou"] is not None
    assert (out / "seg_model_rw" / "final.pt").is_file()


TINY_SETS = (
    "train_cam.epochs=1", "train_cam.batch_size=4", "train_cam.crop=48",
    "train_cam.warmup_epochs=0", "make_cam.scales=1", "make_cam.overlays=0",
    "train_seg.epochs=1", "train_seg.batch_size=4", "train_seg.crop=48",
    "train_seg.warmup_epochs=0", "train_seg.scale_range=40,56", "predict.scales=1",
)  # fmt: skip


@pytest.mark.slow
def test_pipeline_run_on_a_dataset_without_masks(tmp_path: Path, monkeypatch) -> None:
    """Images, a class list, split lists and XML labels only: a trained segmenter and its
    predictions, the scoring steps skipped and said so."""
    monkeypatch.setenv("WSSS_QUIET", "1")
    data = make_tiny_voc(tmp_path / "data", n=8, size=48)
    shutil.rmtree(data / "SegmentationClass")
    out = tmp_path / "run"
    args = ["pipeline", "run", "--data", str(data), "--recipe", "demo", "--out", str(out),
            "--device", "cpu", "--workers", "0", "--seed", "3"]  # fmt: skip
    args += [part for text in TINY_SETS for part in ("--set", text)]
    with one_torch_thread():
        assert main(args) == 0
    summary = read_json(out / "summary.json")
    assert summary["overrides"] == list(TINY_SETS) and summary["seed"] == 3
    assert summary["recipe"] == "demo" and summary["data"] == str(data)
    assert summary["cam_miou"] is None and summary["cam_miou_oracle"] is None
    assert summary["pseudo_miou"] is None and summary["seg_miou"] is None
    assert set(summary["skipped"]) == {"eval-cam", "make-pseudo scores", "eval"}
    assert 0.0 < summary["cam_threshold"] < 1.0
    assert summary["cam_threshold"] == read_json(out / "cams" / RECORD)["threshold"]
    assert read_json(out / "seg_model" / "summary.json")["epochs"] == 1  # a trained segmenter
    voc = VocDataset.open(data)
    for image_id in voc.split_ids("val"):
        prediction = read_label_png(out / "pred_val" / f"{image_id}.png")
        assert prediction.shape == (48, 48) and prediction.max() <= voc.num_classes
    for image_id in voc.split_ids("train"):
        assert read_label_png(out / "pseudo" / f"{image_id}.png").shape == (48, 48)
    # the overrides reached the stages
    params = read_json(out / "cam_model" / "manifest.json")["params"]
    assert (params["crop"], params["epochs"], params["seed"]) == (48, 1, 3)

    mtime = (out / "seg_model" / "final.pt").stat().st_mtime_ns
    with one_torch_thread():
        assert main(args) == 0  # resumed: nothing to redo
    assert (out / "seg_model" / "final.pt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_oracle_threshold_from_the_few_images_with_masks(tmp_path: Path, monkeypatch,
                                                          cams_miou) -> None:  # fmt: skip
    """threshold=oracle on a split where only some images have masks: eval-cam's sweep runs
    on those (listed in the run folder), its best threshold is the run's, said so."""
    monkeypatch.setenv("WSSS_QUIET", "1")
    data = make_tiny_voc(tmp_path / "data", n=8, size=48)
    voc = VocDataset.open(data)
    unmasked = voc.split_ids("train")[5:]  # not in val (its first half): val stays scored
    for image_id in unmasked:
        (data / "SegmentationClass" / f"{image_id}.png").unlink()
    out = tmp_path / "run"
    args = ["pipeline", "run", "--data", str(data), "--recipe", "demo", "--out", str(out),
            "--device", "cpu", "--workers", "0"]  # fmt: skip
    sets = [*TINY_SETS, "make_pseudo.threshold=oracle"]
    args += [part for text in sets for part in ("--set", text)]
    with one_torch_thread():
        assert main(args) == 0
    summary = read_json(out / "summary.json")
    masked = (out / "masked_train.txt").read_text().split()
    assert masked == voc.split_ids("train")[:5]
    assert summary["cam_threshold_rule"] == "oracle" and summary["cam_eval_images"] == 5
    # the oracle by hand: the best of eval-cam's default thresholds on the five masked images
    curve = {t: cams_miou(voc, out / "cams", str(out / "masked_train.txt"), t)
             for t in DEFAULT_THRESHOLDS}  # fmt: skip
    best = max(curve, key=lambda t: (curve[t], -t))
    assert summary["cam_threshold"] == pytest.approx(best)
    assert summary["cam_miou"] == pytest.approx(curve[best])
    assert summary["seg_miou"] is not None
    assert "masks for only 5 of the 8 images" in summary["skipped"]["make-pseudo scores"]
    assert any("the 5 images with masks" in str(label) for label, _ in summary_rows(summary))


@pytest.mark.slow
def test_threshold_from_the_labels_of_the_images_with_masks(tmp_path: Path, monkeypatch) -> None:
    """threshold=masks: the t whose pseudo labels (threshold + the run's CRF) score best on
    the images that have masks; checked against make-pseudo run at every t of the grid."""
    monkeypatch.setenv("WSSS_QUIET", "1")
    data = make_tiny_voc(tmp_path / "data", n=8, size=48)
    voc = VocDataset.open(data)
    masked = voc.split_ids("train")[:5]
    for image_id in voc.split_ids("train")[5:]:
        (data / "SegmentationClass" / f"{image_id}.png").unlink()
    out = tmp_path / "run"
    args = ["pipeline", "run", "--data", str(data), "--recipe", "demo", "--out", str(out),
            "--device", "cpu", "--workers", "0", "--crf-workers", "1"]  # fmt: skip
    sets = [*TINY_SETS, "make_pseudo.threshold=masks"]
    args += [part for text in sets for part in ("--set", text)]
    import wsss.mask_threshold as mask_threshold

    labelled: list[int] = []
    real = mask_threshold.label_matrices
    monkeypatch.setattr(mask_threshold, "label_matrices",
                        lambda *a, **k: labelled.append(1) or real(*a, **k))  # fmt: skip
    with one_torch_thread():
        assert main(args) == 0
    summary = read_json(out / "summary.json")
    assert summary["cam_threshold_rule"] == "masks" and "eval-cam" in summary["skipped"]
    # picked once (the summary's threshold and make-pseudo's read the record of the first)
    assert len(labelled) == 5 and (out / "cams" / mask_threshold.RECORD).is_file()
    # by hand: make-pseudo at each t of the grid, its labels scored on the masked images
    scores = {}
    for t in MASK_GRID:
        labels = tmp_path / f"labels_{t}"
        assert main(["make-pseudo", "--cams", str(out / "cams"), "--data", str(data),
                     "--split", "train", "--out", str(labels), "--threshold", str(t),
                     "--workers", "1"]) == 0  # fmt: skip
        matrix = ConfusionMatrix(voc.num_classes + 1)
        for image_id in masked:
            matrix.update(voc.load_mask(image_id), read_label_png(labels / f"{image_id}.png"))
        scores[t] = matrix.compute().miou
    best = max(MASK_GRID, key=lambda t: (scores[t], -t))
    assert summary["cam_threshold"] == pytest.approx(best)
    params = read_json(out / "pseudo" / "manifest.json")["params"]
    assert params["threshold"] == pytest.approx(best)
    assert "on the 5 images of split train with masks" in params["threshold_source"]


def test_oracle_threshold_needs_some_masks(tmp_path: Path) -> None:
    data = make_tiny_voc(tmp_path / "data", n=4, size=16)
    shutil.rmtree(data / "SegmentationClass")
    config = PipelineConfig(out=tmp_path / "run", recipe=DEMO, device="cpu")
    steps = pipeline.Steps(config, pipeline.resolve_run(config), data, tmp_path / "run",
                           lambda name, action: action())  # fmt: skip
    with pytest.raises(WsssError, match="masks of some images of split train; it has none"):
        steps._masked_list("train")


def test_splits_follow_the_dataset_lists_and_masks(tmp_path: Path) -> None:
    data = make_tiny_voc(tmp_path / "data", n=4, size=16)
    voc = VocDataset.open(data)
    splits = resolve_splits(DEMO, voc)
    assert (splits.cam, splits.cam_eval, splits.seg, splits.predict) == (
        "train", "train", "train", "val")  # fmt: skip
    assert splits.scored == {"train", "val"}
    (data / "SegmentationClass" / "img_003.png").unlink()  # in train, not in val
    (data / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()
    splits = resolve_splits(replace(DEMO, cam_split="train_aug"), voc)
    assert splits.cam == "train" and splits.scored == {"val"}
    (data / "ImageSets" / "Segmentation" / "val.txt").unlink()
    assert resolve_splits(DEMO, voc).predict == "train"  # no val list: predict the train images
    (data / "ImageSets" / "Segmentation" / "train.txt").unlink()
    with pytest.raises(WsssError, match="split list not found"):
        resolve_splits(DEMO, voc)


@pytest.mark.slow
def test_seeds_run_once_each_and_summarise(tmp_path: Path) -> None:
    """`--seeds 0,1`: two complete runs in OUT/seed-N, a mean and standard deviation that
    match their summaries; running again reuses both."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wsss.stages.pipeline import run_seeds

    out, board = tmp_path / "seeds", tmp_path / "tb"
    config = PipelineConfig(out=out, recipe=TINY, device="cpu", loader_workers=0, crf_workers=1,
                            tensorboard=board)  # fmt: skip
    with one_torch_thread():
        summary = run_seeds(config, [0, 1])
    runs = [read_json(out / f"seed-{seed}" / "summary.json") for seed in (0, 1)]
    page = (out / "report.html").read_text()  # the seeds table, linking each seed's report
    assert f"<td class=num>{summary['figures']['seg_miou']['mean']:.2f}</td>" in page
    assert all((out / f"seed-{seed}" / "report.html").is_file() for seed in (0, 1))
    # --tensorboard: each seed's trainers and figures in its own folder, read back.
    for seed, figures in zip((0, 1), runs, strict=True):
        events = EventAccumulator(str(board / f"seed-{seed}" / "pipeline"))
        events.Reload()
        (point,) = events.Scalars("pipeline/seg_miou")
        assert point.value == pytest.approx(figures["seg_miou"], rel=1e-6)
        for trainer in ("cam_model", "seg_model"):
            events = EventAccumulator(str(board / f"seed-{seed}" / trainer))
            events.Reload()
            assert {"train/loss", "epoch/loss", "epoch/lr"} <= set(events.Tags()["scalars"])
    assert [r["seed"] for r in runs] == [0, 1] and read_json(out / "summary.json") == summary
    for key in ("cam_miou", "pseudo_miou", "seg_miou"):
        values = [r[key] for r in runs]
        spread = summary["figures"][key]
        assert spread["values"] == values and spread["mean"] == pytest.approx(np.mean(values))
        assert spread["std"] == pytest.approx(np.std(values, ddof=1))
        assert (spread["min"], spread["max"]) == (min(values), max(values))
    mtimes = [(out / f"seed-{s}" / "cam_model" / "final.pt").stat().st_mtime_ns for s in (0, 1)]
    with one_torch_thread():
        again = run_seeds(config, [0, 1])
    assert again["figures"] == summary["figures"]
    events = EventAccumulator(str(board / "seed-0" / "pipeline"))
    events.Reload()
    assert len(events.Scalars("pipeline/seg_miou")) == 1  # the re-run's point replaced the first
    assert mtimes == [(out / f"seed-{s}" / "cam_model" / "final.pt").stat().st_mtime_ns
                      for s in (0, 1)]  # fmt: skip
    with pytest.raises(WsssError, match="distinct seeds"):
        run_seeds(config, [1, 1])


def test_cpu_seconds_count_the_process_its_children_and_the_crf_pool(monkeypatch) -> None:
    """Loader workers are finished children (os.times); the CRF pool's workers are the
    forkserver's, counted by wsss.pool (tests/test_pool.py)."""
    fake = os.times_result((1.5, 0.25, 4.0, 0.75, 99.0))
    monkeypatch.setattr(pipeline.os, "times", lambda: fake)
    monkeypatch.setattr(pipeline, "worker_cpu_seconds", lambda: 2.0)
    assert pipeline.cpu_seconds() == 1.5 + 0.25 + 4.0 + 0.75 + 2.0

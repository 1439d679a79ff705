"""`wsss eval-cam`: the background-threshold sweep of a CAM folder against ground truth.

Each CAM file is read once and updates every threshold (see `wsss.cam_eval`). The result
JSON goes where `--json` says, by default `<cams>/eval_cam.json`, the record `make-pseudo`
reads its default threshold from; a sweep written elsewhere (a trial range, another split)
leaves that record as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsss.cam_eval import SweepResult, ThresholdSweep, check_thresholds
from wsss.camfile import (
    EVAL_CAM_RECORD,
    SUFFIXES,
    cam_folder_params,
    find_cam_file,
    load_cam_file,
)
from wsss.configs.scoring import EvalCamConfig
from wsss.data.groundtruth import GroundTruth
from wsss.data.voc import read_id_list
from wsss.errors import WsssError, file_error
from wsss.io import dir_writable, ensure_dir, write_json
from wsss.overlay import plot_curve
from wsss.ui import Table, info, scores_table, track, warn

STAGE = "eval-cam"
UNDEFINED = (
    "no threshold has a defined mIoU (every ground-truth pixel is ignore, 255), so there is no "
    "best threshold"
)


@dataclass
class EvalCamResult:
    sweep: SweepResult
    json_path: Path
    plot_path: Path | None

    def summary_rows(self) -> list[tuple[str, Any]]:
        return summary_rows(self)

    def tables(self) -> list[Table]:
        best = self.sweep.best
        if not defined(self.sweep):
            return [scores_table(f"CAMs: no threshold scores ({best.images} images)", best)]
        title = f"CAMs at threshold {self.sweep.best_threshold:.2f} ({best.images} images)"
        return [scores_table(title, best)]


def defined(sweep: SweepResult) -> bool:
    """Whether any threshold has an mIoU: masks that are all ignore (255) score none, and an
    all-undefined sweep has no best threshold (its first one would stand for it)."""
    return any(math.isfinite(miou) for _, miou in sweep.curve)


def run(config: EvalCamConfig) -> EvalCamResult:
    cam_dir = Path(config.cams)
    if not cam_dir.is_dir():
        raise file_error(cam_dir, "CAM directory not found")
    thresholds = check_thresholds(config.thresholds)
    gt = GroundTruth(Path(config.gt), config.class_list)
    known = gt.dataset is not None or config.class_list is not None
    made_with = cam_folder_params(cam_dir, gt.classes if known else None)
    if not known and made_with.get("classes"):
        gt.classes = tuple(made_with["classes"])
    # A bare mask folder chooses the images itself where no --split is given: the manifest's
    # split names a list of a dataset root the folder is not.
    split = config.split or (made_with.get("split") if gt.dataset is not None else None)
    json_path = Path(config.json_path) if config.json_path else cam_dir / EVAL_CAM_RECORD
    _check_writable(json_path, given=config.json_path is not None)
    ids = _image_ids(gt, cam_dir, split)
    sweep = ThresholdSweep(gt.classes, thresholds)
    for image_id in track(ids, len(ids), STAGE):
        path = find_cam_file(cam_dir, image_id)
        target = gt.mask(image_id)
        record = load_cam_file(path, len(gt.classes), target.shape)
        sweep.update(record.hr_cam, record.labels, target, name=str(path))
    result = sweep.result()
    result.extra = {"thresholds": list(thresholds), "cams": str(cam_dir), "split": split}
    record = result.to_json()
    if not defined(result):
        record |= {"best_threshold": None, "best_miou": None, "undefined": UNDEFINED}
        warn(f"{json_path}: {UNDEFINED}; best_threshold recorded as null")
    write_json(json_path, record)
    plot_path = None
    if config.plot and defined(result):
        best = (result.best_threshold, result.best_miou)
        title = f"CAM mIoU vs background threshold ({result.best.images} images)"
        plot_path = plot_curve(json_path.with_suffix(".png"), result.curve, best, title)
    return EvalCamResult(sweep=result, json_path=json_path, plot_path=plot_path)


def _check_writable(json_path: Path, given: bool) -> None:
    """The sweep's JSON can be written, before the sweep (a read-only CAM folder failed only
    after reading every CAM file)."""
    if json_path.is_dir():
        raise file_error(json_path, "is a directory; give a file path")
    folder = ensure_dir(json_path.parent) if given else json_path.parent
    if not dir_writable(folder):
        hint = "" if given else "; give --json FILE to write the sweep elsewhere"
        raise file_error(
            folder, f"directory is not writable (read-only?): no place for {json_path.name}{hint}"
        )


def _image_ids(gt: GroundTruth, cam_dir: Path, split: str | None) -> list[str]:
    """The split's ids when known, else the CAM files that have a mask in a bare folder."""
    if split is not None:
        if gt.dataset is not None:
            return gt.dataset.split_ids(split)
        if Path(split).is_file():
            return read_id_list(split)
        raise WsssError(f"--split {split}: needs --gt to be a dataset root, or a list file path")
    if gt.dataset is not None:
        raise WsssError(
            f"{cam_dir}: no make-cam manifest naming the split; pass --split to choose the images"
        )
    ids = sorted({p.stem for suffix in SUFFIXES.values() for p in cam_dir.glob(f"*{suffix}")})
    if not ids:
        raise file_error(cam_dir, "no CAM files (.npy / .npz) found")
    # A bare mask folder is itself the choice of images: masks drawn for a few of them are
    # enough to pick the threshold (docs/label_free_threshold.md, "A few masks").
    masked = [image_id for image_id in ids if gt.has_mask(image_id)]
    if not masked:
        raise file_error(gt.path, f"no mask (ID.png) for any of the {len(ids)} CAM files")
    if len(masked) < len(ids):
        info(f"{gt.path}: masks for {len(masked)} of {len(ids)} CAM files; scoring those")
    return masked


def summary_rows(result: EvalCamResult) -> list[tuple[str, Any]]:
    sweep = result.sweep
    return [
        ("images", sweep.best.images),
        ("thresholds tried", len(sweep.thresholds)),
        ("best threshold", f"{sweep.best_threshold:.2f}" if defined(sweep) else "none"),
        ("best mIoU %", f"{sweep.best_miou:.2f}" if defined(sweep) else "n/a"),
        ("JSON", result.json_path),
        ("plot", result.plot_path or "-"),
    ]

"""Options of the stages that score against ground truth: eval-cam and eval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from wsss.cam_threshold import DEFAULT_THRESHOLDS, DEFAULT_THRESHOLDS_TEXT, parse_thresholds
from wsss.configs import common
from wsss.option import option

GT_HELP = "Ground-truth PNG directory, or a dataset root in VOC layout."


@dataclass(frozen=True, kw_only=True)
class EvalCamConfig:
    """Sweep the background threshold: best threshold, its mIoU, per-class IoU, the curve."""

    STAGE: ClassVar[str] = "eval-cam"
    OUTPUT: ClassVar[str] = "scores"
    cams: Path = option(help="Directory of CAM files.", run_level=True)
    gt: Path = option(help=GT_HELP, run_level=True)
    split: str | None = option(
        None, help="Split name or list file (default: the CAM manifest's split).", run_level=True
    )
    json_path: Path | None = option(
        None, help="Where to write the result (default: CAMS/eval_cam.json).", flag="--json",
        run_level=True,
    )  # fmt: skip
    thresholds: tuple[float, ...] = option(
        DEFAULT_THRESHOLDS,
        help="Background thresholds: start:stop:step or a list.",
        parse=parse_thresholds,
        shown=DEFAULT_THRESHOLDS_TEXT,
    )
    class_list: Path | None = common.class_list()
    plot: bool = option(True, help="Also draw the curve as a PNG.")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Confusion matrix, per-class IoU, precision/recall, FP/FN rates and mIoU."""

    STAGE: ClassVar[str] = "eval"
    OUTPUT: ClassVar[str] = "scores"
    MODULE: ClassVar[str] = "wsss.stages.evaluate"
    pred: Path = option(help="Directory of predicted label PNGs.", run_level=True)
    gt: Path = option(help=GT_HELP, run_level=True)
    list_file: Path | None = option(
        None, help="List file of ids to score.", flag="--list", run_level=True
    )
    split: str | None = option(
        None,
        help="Split name when --gt is a dataset root (default: the prediction manifest's).",
        run_level=True,
    )
    json_path: Path | None = option(
        None, help="Where to write the scores (default: PRED/eval.json).", flag="--json",
        run_level=True,
    )  # fmt: skip
    class_list: Path | None = common.class_list()
    skip_missing: bool = option(
        False, help="Score the images that have predictions; report the rest.", off=""
    )

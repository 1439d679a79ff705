"""Options of the stages that turn CAMs into labels: pick-threshold and make-pseudo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wsss.configs import common
from wsss.option import option

CRF_PANEL = "Dense CRF"
CONFIDENT_PANEL = "Confident regions (AffinityNet / IRN labels)"


@dataclass(frozen=True, kw_only=True)
class PickThresholdConfig:
    cams: Path = common.cams()
    data: Path = common.data()
    split: str = common.split()
    class_list: Path | None = common.class_list()


@dataclass(frozen=True, kw_only=True)
class MakePseudoConfig:
    cams: Path = common.cams()
    data: Path = common.data()
    split: str = common.split()
    out: Path = common.out("Output directory for the label PNGs.")
    threshold: float | Literal["auto", "oracle"] = option(
        "auto",
        help="Background threshold in [0, 1]; 'auto': the label-free rule, the mean of the "
        "strongest labelled-class CAM (docs/label_free_threshold.md); 'oracle': best_threshold "
        "of CAMS/eval_cam.json from `wsss eval-cam`, picked on ground truth.",
    )
    crf_workers: int | None = option(
        None,
        help="CRF worker processes (default: all cores).",
        aliases=("--workers",),
        old_keys=("workers",),
        min=1,
        run_level=True,
    )
    score: bool | None = option(
        None,
        help="Score the labels against ground truth (default: when the whole split has it).",
        aliases=("--gt/--no-gt",),
        old_keys=("gt",),
    )
    class_list: Path | None = common.class_list()
    crf: bool = option(True, help="Refine with a dense CRF.", panel=CRF_PANEL)
    crf_iters: int = option(
        10, help="Mean-field iterations.", panel=CRF_PANEL, old_keys=("crf.iterations",), min=1
    )
    unary: Literal["scores", "labels"] = option(
        "scores",
        help="CRF unary: 'scores' (soft scores, background (1 - max CAM)^a) or 'labels' "
        "(thresholded labels held with --gt-prob; docs/pseudo_labels.md compares them).",
        panel=CRF_PANEL,
        old_keys=("crf.unary",),
    )
    gt_prob: float = option(
        0.7, help="Confidence of the labels ('labels' unary).", panel=CRF_PANEL,
        old_keys=("crf.gt_prob",),
    )  # fmt: skip
    bg_power: float | None = option(
        None,
        help="Exponent a of the background score ('scores' unary; default: the a for which "
        "background and CAM cross at the threshold).",
        panel=CRF_PANEL,
    )
    gaussian_sxy: float = option(
        3.0, help="Smoothness kernel width (px).", panel=CRF_PANEL,
        old_keys=("crf.gaussian_sxy",),
    )  # fmt: skip
    gaussian_compat: float = option(
        3.0, help="Smoothness kernel weight.", panel=CRF_PANEL,
        old_keys=("crf.gaussian_compat",),
    )  # fmt: skip
    bilateral_sxy: float = option(
        50.0, help="Appearance kernel width (px).", panel=CRF_PANEL,
        old_keys=("crf.bilateral_sxy",),
    )  # fmt: skip
    bilateral_srgb: float = option(
        13.0, help="Appearance kernel colour width.", panel=CRF_PANEL,
        old_keys=("crf.bilateral_srgb",),
    )  # fmt: skip
    bilateral_compat: float = option(
        10.0, help="Appearance kernel weight.", panel=CRF_PANEL,
        old_keys=("crf.bilateral_compat",),
    )  # fmt: skip
    # The pipeline makes confident labels in a step of its own (the random-walk path).
    confident: bool = option(
        False,
        help="Confident-region labels: foreground under --fg-threshold keeps its class, "
        "background under both thresholds is background, the rest is 255 (ignore). Also "
        "turned on by giving --fg-threshold or --bg-threshold.",
        panel=CONFIDENT_PANEL,
        off="",
        run_level=True,
    )
    fg_threshold: float | None = option(
        None,
        help="High background threshold (default: 2 t, t the background threshold; "
        "docs/random_walk.md).",
        panel=CONFIDENT_PANEL,
    )
    bg_threshold: float | None = option(
        None,
        help="Low background threshold (default: t / 2).",
        panel=CONFIDENT_PANEL,
    )

    @property
    def confident_mode(self) -> bool:
        return self.confident or self.fg_threshold is not None or self.bg_threshold is not None

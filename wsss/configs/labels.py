"""Options of the stages that turn CAMs into labels: pick-threshold and make-pseudo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from wsss.configs import common
from wsss.crf import CrfPreset
from wsss.option import option

CRF_PANEL = common.CRF_PANEL
CONFIDENT_PANEL = "Confident regions (AffinityNet / IRN labels)"


def _crf(name: str, **spec: Any) -> Any:
    """A dense CRF parameter (None: the preset's); its `--set` key of the first release was
    crf.KEY (`CrfParams`)."""
    return common.crf_param(name, first_release=True, **spec)


@dataclass(frozen=True, kw_only=True)
class PickThresholdConfig:
    """The background threshold from the CAMs alone (no masks), by a label-free rule (default:
    blend); recorded in CAMS/label_free_threshold.json."""

    STAGE: ClassVar[str] = "pick-threshold"
    OUTPUT: ClassVar[str] = "threshold"
    cams: Path = common.cams()
    data: Path = common.data()
    split: str = common.split()
    class_list: Path | None = common.class_list()
    threshold_rule: common.ThresholdRule = common.threshold_rule()


@dataclass(frozen=True, kw_only=True)
class MakePseudoConfig:
    """CAMs -> pseudo label PNGs (VOC palette, 255 = ignore): threshold, dense CRF, scores."""

    STAGE: ClassVar[str] = "make-pseudo"
    OUTPUT: ClassVar[str] = "labels"
    cams: Path = common.cams()
    data: Path = common.data()
    split: str = common.split()
    out: Path = common.out("Output directory for the label PNGs.")
    threshold: float | Literal["auto", "oracle", "masks"] = option(
        "auto",
        help="Background threshold in [0, 1]; 'auto': the label-free rule of --threshold-rule "
        "(docs/label_free_threshold.md); 'oracle': best_threshold "
        "of CAMS/eval_cam.json from `wsss eval-cam`, picked on ground truth; 'masks': the "
        "best pseudo labels on the split's images that have masks (a few are enough).",
    )
    threshold_rule: common.ThresholdRule = common.threshold_rule()
    crf_workers: int | None = common.workers("CRF worker processes (default: all cores).", 1)
    score: bool | None = option(
        None,
        help="Score the labels against ground truth (default: when the whole split has it).",
        aliases=("--gt/--no-gt",),
        old_keys=("gt",),
    )
    class_list: Path | None = common.class_list()
    crf: bool = option(True, help="Refine with a dense CRF.", panel=CRF_PANEL)
    crf_preset: CrfPreset = common.crf_preset()
    crf_iters: int | None = _crf("crf_iters", min=1)
    unary: Literal["scores", "labels"] | None = _crf("unary")
    gt_prob: float | None = _crf("gt_prob")
    bg_power: float | None = option(
        None,
        help="Exponent a of the background score ('scores' unary; default: the a for which "
        "background and CAM cross at the threshold).",
        panel=CRF_PANEL,
    )
    gaussian_sxy: float | None = _crf("gaussian_sxy")
    gaussian_compat: float | None = _crf("gaussian_compat")
    bilateral_sxy: float | None = _crf("bilateral_sxy")
    bilateral_srgb: float | None = _crf("bilateral_srgb")
    bilateral_compat: float | None = _crf("bilateral_compat")
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

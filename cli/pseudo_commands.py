"""Pseudo-label commands: `wsss make-pseudo`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from cli import options

CRF_PANEL = "Dense CRF"
CONFIDENT_PANEL = "Confident regions (AffinityNet / IRN labels)"


def _threshold(text: str | None) -> float | Literal["auto"] | None:
    """--threshold: a number or 'auto'; anything else is a usage error."""
    if text is None or text == "auto":
        return text  # type: ignore[return-value]
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"a number in [0, 1] or 'auto', got '{text}'") from None


def make_pseudo(
    cams: Path = typer.Option(..., "--cams", help="Directory of CAM files (make-cam output)."),
    data: Path = options.dataset_root(),
    split: str = options.split_name(),
    out: Path = typer.Option(..., "--out", help="Output directory for the label PNGs."),
    threshold: str | None = typer.Option(
        None,
        "--threshold",
        callback=_threshold,
        help="Background threshold in [0, 1], or 'auto': the label-free rule, the mean of the "
        "strongest labelled-class CAM (docs/label_free_threshold.md). Default: best_threshold "
        "of CAMS/eval_cam.json from `wsss eval-cam` (an oracle, picked on ground truth), else "
        "auto.",
    ),
    crf: bool = typer.Option(
        True, "--crf/--no-crf", help="Refine with a dense CRF.", rich_help_panel=CRF_PANEL
    ),
    crf_iters: int = typer.Option(
        10, "--crf-iters", help="Mean-field iterations.", rich_help_panel=CRF_PANEL
    ),
    unary: str = typer.Option(
        "scores",
        "--unary",
        help="CRF unary: 'scores' (soft scores, background (1 - max CAM)^a) or 'labels' "
        "(thresholded labels held with --gt-prob; docs/pseudo_labels.md compares them).",
        rich_help_panel=CRF_PANEL,
    ),
    gt_prob: float = typer.Option(
        0.7,
        "--gt-prob",
        help="Confidence of the labels ('labels' unary).",
        rich_help_panel=CRF_PANEL,
    ),
    bg_power: float | None = typer.Option(
        None,
        "--bg-power",
        help="Exponent a of the background score ('scores' unary; default: the a for which "
        "background and CAM cross at the threshold).",
        rich_help_panel=CRF_PANEL,
    ),
    gaussian_sxy: float = typer.Option(
        3.0, "--gaussian-sxy", help="Smoothness kernel width (px).", rich_help_panel=CRF_PANEL
    ),
    gaussian_compat: float = typer.Option(
        3.0, "--gaussian-compat", help="Smoothness kernel weight.", rich_help_panel=CRF_PANEL
    ),
    bilateral_sxy: float = typer.Option(
        50.0, "--bilateral-sxy", help="Appearance kernel width (px).", rich_help_panel=CRF_PANEL
    ),
    bilateral_srgb: float = typer.Option(
        13.0, "--bilateral-srgb", help="Appearance kernel colour width.", rich_help_panel=CRF_PANEL
    ),
    bilateral_compat: float = typer.Option(
        10.0, "--bilateral-compat", help="Appearance kernel weight.", rich_help_panel=CRF_PANEL
    ),
    confident: bool = typer.Option(
        False,
        "--confident",
        help="Confident-region labels: foreground under --fg-threshold keeps its class, "
        "background under both thresholds is background, the rest is 255 (ignore). Also "
        "turned on by giving --fg-threshold or --bg-threshold.",
        rich_help_panel=CONFIDENT_PANEL,
    ),
    fg_threshold: float | None = typer.Option(
        None,
        "--fg-threshold",
        help="High background threshold (default 0.40).",
        rich_help_panel=CONFIDENT_PANEL,
    ),
    bg_threshold: float | None = typer.Option(
        None,
        "--bg-threshold",
        help="Low background threshold (default 0.10).",
        rich_help_panel=CONFIDENT_PANEL,
    ),
    workers: int | None = options.crf_workers(),
    gt: bool | None = typer.Option(
        None,
        "--gt/--no-gt",
        help="Score the labels against ground truth (default: when the whole split has it).",
    ),
    class_list: Path | None = options.class_list(),
) -> None:
    """CAMs -> pseudo label PNGs (VOC palette, 255 = ignore): threshold, dense CRF, scores."""
    from wsss.stages.make_pseudo import CrfParams, MakePseudoConfig, confident_thresholds, run
    from wsss.ui import print_table, scores_table

    crf_params = None
    if crf:
        crf_params = CrfParams(
            gaussian_sxy=gaussian_sxy,
            gaussian_compat=gaussian_compat,
            bilateral_sxy=bilateral_sxy,
            bilateral_srgb=bilateral_srgb,
            bilateral_compat=bilateral_compat,
            iterations=crf_iters,
            unary=unary,  # type: ignore[arg-type]  # validated by CrfParams
            gt_prob=gt_prob,
        )
    result = run(
        MakePseudoConfig(
            cams=cams,
            data=data,
            split=split,
            out=out,
            threshold=threshold,  # type: ignore[arg-type]  # parsed by _threshold
            crf=crf_params,
            bg_power=bg_power,
            confident=confident_thresholds(confident, fg_threshold, bg_threshold),
            workers=workers,
            gt=gt,
            class_list=class_list,
        )
    )
    if result.scores is not None:
        print_table(scores_table(f"pseudo labels ({result.scores.images} images)", result.scores))
    options.print_summary("make-pseudo", result.summary_rows())


def pick_threshold(
    cams: Path = typer.Option(..., "--cams", help="Directory of CAM files (make-cam output)."),
    data: Path = options.dataset_root(),
    split: str = options.split_name(),
    class_list: Path | None = options.class_list(),
) -> None:
    """The background threshold from the CAMs alone (no masks): the mean of the strongest
    labelled-class CAM over the split's pixels; recorded in CAMS/label_free_threshold.json."""
    from wsss.stages.pick_threshold import PickThresholdConfig, run

    result = run(PickThresholdConfig(cams=cams, data=data, split=split, class_list=class_list))
    options.print_summary("pick-threshold", result.summary_rows())


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("make-pseudo")(make_pseudo)
    app.command("pick-threshold")(pick_threshold)

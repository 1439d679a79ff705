"""CAM and inference commands: `wsss make-cam`, `wsss eval-cam`, `wsss predict`."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import options

SCALES_HELP = "Comma-separated inference scales, each also run flipped unless --no-flip."


@options.takes(options.IMAGE_STAGE)
def make_cam(
    shared: dict,
    checkpoint: Path = typer.Option(..., "--checkpoint", help="CAM classifier checkpoint."),
    out: Path = typer.Option(..., "--out", help="Output directory for the CAM files."),
    scales: str = typer.Option("0.5,1.0,1.5,2.0", "--scales", help=SCALES_HELP),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Add the horizontal flips."),
    batch_size: int | None = options.image_batch_size(),
    fmt: str = options.cam_format(),
    overlays: int = options.overlays(),
) -> None:
    """Multi-scale + flip CAMs, one file per image (keys, cam at stride 4, hr_cam)."""
    from wsss.stages.make_cam import MakeCamConfig, parse_scales, run

    result = run(
        MakeCamConfig(
            **shared,
            checkpoint=checkpoint,
            out=out,
            scales=parse_scales(scales),
            flip=flip,
            batch_size=batch_size,
            fmt=fmt,  # type: ignore[arg-type]  # validated by the stage
            overlays=overlays,
        )
    )
    options.print_summary("make-cam", result.summary_rows())


def eval_cam(
    cams: Path = typer.Option(..., "--cams", help="Directory of CAM files."),
    gt: Path = typer.Option(
        ..., "--gt", help="Ground-truth PNG directory, or a dataset root in VOC layout."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Split name or list file (default: the CAM manifest's split)."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Where to write the result (default: CAMS/eval_cam.json)."
    ),
    thresholds: str = typer.Option(
        "0.05:0.95:0.05", "--thresholds", help="Background thresholds: start:stop:step or a list."
    ),
    class_list: Path | None = options.class_list(),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Also draw the curve as a PNG."),
) -> None:
    """Sweep the background threshold: best threshold, its mIoU, per-class IoU, the curve."""
    from wsss.stages.eval_cam import EvalCamConfig, parse_thresholds, run, summary_rows
    from wsss.ui import print_table, scores_table

    result = run(
        EvalCamConfig(
            cams=cams,
            gt=gt,
            split=split,
            json_path=json_path,
            thresholds=parse_thresholds(thresholds),
            class_list=class_list,
            plot=plot,
        )
    )
    sweep = result.sweep
    title = f"CAMs at threshold {sweep.best_threshold:.2f} ({sweep.best.images} images)"
    print_table(scores_table(title, sweep.best))
    options.print_summary("eval-cam", summary_rows(result))


@options.takes(options.IMAGE_STAGE)
def predict(
    shared: dict,
    checkpoint: Path = typer.Option(..., "--checkpoint", help="DeepLab checkpoint."),
    out: Path = typer.Option(..., "--out", help="Output directory for the label PNGs."),
    scales: str = typer.Option("1.0", "--scales", help=SCALES_HELP),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Add the horizontal flips."),
    crf: bool = typer.Option(False, "--crf/--no-crf", help="Refine with a dense CRF."),
    batch_size: int | None = options.image_batch_size(),
) -> None:
    """Segment a split with a trained DeepLab: palette PNGs, then score them with `wsss eval`."""
    from wsss.stages.predict import PredictConfig, parse_scales, run

    result = run(
        PredictConfig(
            **shared,
            checkpoint=checkpoint,
            out=out,
            scales=parse_scales(scales),
            flip=flip,
            crf=crf,
            batch_size=batch_size,
        )
    )
    options.print_summary("predict", result.summary_rows())


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("make-cam")(make_cam)
    app.command("eval-cam")(eval_cam)
    app.command("predict")(predict)

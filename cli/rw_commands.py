"""Random-walk refinement commands: `wsss train-aff` and `wsss make-rw`."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import options

RW_PANEL = "Random walk"


@options.takes(options.TRAINER, epochs=3, lr=0.01, weight_decay=1e-4, scale_range="320,640")
def train_aff(
    shared: dict,
    labels: Path = typer.Option(
        ...,
        "--labels",
        help="Confident-region labels (`wsss make-pseudo --confident`; 255 = ignore).",
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        help="Take the backbone of a trained train-cam checkpoint (instead of --pretrained).",
    ),
    freeze_backbone: bool = typer.Option(
        True, "--freeze-backbone/--train-backbone", help="Train the affinity head only."
    ),
    radius: int = typer.Option(
        5, "--radius", help="Pairs within this distance on the stride-4 grid."
    ),
) -> None:
    """Learn pixel affinities from confident-region labels (AffinityNet / IRN)."""
    from wsss.stages.train_aff import TrainAffConfig, run

    config = TrainAffConfig(
        **shared, labels=labels, init=init, freeze_backbone=freeze_backbone, radius=radius
    )
    options.print_fit("train-aff", run(config))


@options.takes(options.IMAGE_STAGE)
def make_rw(
    shared: dict,
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Affinity net (train-aff)."),
    cams: Path = typer.Option(..., "--cams", help="Directory of CAM files (make-cam output)."),
    out: Path = typer.Option(..., "--out", help="Output directory for the refined CAM files."),
    beta: float = typer.Option(10.0, "--beta", help="Affinity exponent.", rich_help_panel=RW_PANEL),
    exp_times: str = typer.Option(
        "auto",
        "--exp-times",
        help="The walk takes 2^N steps. auto: 8 (the reference) for 500 px images, scaled "
        "with the image area: round(8 + 2 log2(long side / 500)), 4 at 128 px.",
        rich_help_panel=RW_PANEL,
    ),
    radius: int = typer.Option(
        5, "--radius", help="Pairs within this distance (stride-4 grid).", rich_help_panel=RW_PANEL
    ),
    bg_power: float | None = typer.Option(
        None,
        "--bg-power",
        help="Propagate a background channel (1 - max CAM)^a and store each class's share "
        "(AffinityNet; eval-cam threshold 0.5 = its argmax). Default: the background stays a "
        "threshold, swept by eval-cam (IRN, Puzzle-CAM).",
        rich_help_panel=RW_PANEL,
    ),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Average with the flipped image."),
    batch_size: int | None = options.image_batch_size(cpu=1),
    fmt: str = options.cam_format(),
    overlays: int = options.overlays(),
) -> None:
    """Refine CAMs by a random walk over learned affinities; writes CAM files for eval-cam."""
    from wsss.stages.make_rw import MakeRwConfig, RwParams, parse_exp_times, run

    result = run(
        MakeRwConfig(
            **shared,
            checkpoint=checkpoint,
            cams=cams,
            out=out,
            rw=RwParams(
                beta=beta, exp_times=parse_exp_times(exp_times), radius=radius, bg_power=bg_power
            ),
            flip=flip,
            batch_size=batch_size,
            fmt=fmt,  # type: ignore[arg-type]  # validated by the stage
            overlays=overlays,
        )
    )
    options.print_summary("make-rw", result.summary_rows())


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("train-aff")(train_aff)
    app.command("make-rw")(make_rw)

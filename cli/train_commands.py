"""`wsss train-cam` and `wsss train-seg`: build the stage config, run it, print the summary."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import options


@options.takes(options.TRAINER, epochs=15, lr=0.1, weight_decay=1e-4, scale_range="320,640")
def train_cam(
    shared: dict,
    freeze_bn: bool = typer.Option(False, "--freeze-bn", help="Keep backbone BatchNorm frozen."),
    init: Path | None = typer.Option(
        None, "--init", help="Warm start from a trained train-cam checkpoint."
    ),
    augment: str = typer.Option(
        "long-side",
        "--augment",
        help="long-side (paper: random long side, crop) or resized-crop (from scratch).",
    ),
    color_jitter: bool = typer.Option(False, "--color-jitter", help="Random colour jitter."),
    pieces: int = typer.Option(4, "--pieces", help="Puzzle tiles (a square); 1 = plain CAM."),
    alpha: float = typer.Option(4.0, "--alpha", help="Maximum weight of L_re; 0 = off."),
    alpha_warmup: float = typer.Option(
        0.5, "--alpha-warmup", help="Fraction of training over which alpha ramps up."
    ),
    puzzle_start: float = typer.Option(
        0.0, "--puzzle-start", help="Fraction of training before the puzzle terms switch on."
    ),
    re_loss: str = typer.Option("l1", "--re-loss", help="Reconstruction loss: l1 or l2."),
    re_level: str = typer.Option(
        "feature", "--re-level", help="Compare raw class maps (feature) or normalised CAMs (cam)."
    ),
    no_pcl: bool = typer.Option(False, "--no-pcl", help="Drop the tile classification loss."),
    eval_split: str | None = options.eval_split(),
    eval_every: int | None = options.eval_every(),
) -> None:
    """Train the Puzzle-CAM classifier from image-level labels (--pieces 1 --alpha 0: plain CAM)."""
    from wsss.stages.train_cam import TrainCamConfig, run

    config = TrainCamConfig(
        **shared, freeze_bn=freeze_bn, init=init, augment=augment, color_jitter=color_jitter,
        pieces=pieces, alpha=alpha, alpha_warmup=alpha_warmup, puzzle_start=puzzle_start,
        re_loss=re_loss, re_level=re_level, use_pcl=not no_pcl, eval_split=eval_split,
        eval_every=eval_every,
    )  # fmt: skip
    options.print_fit("train-cam", run(config))


@options.takes(options.TRAINER, epochs=50, lr=0.007, weight_decay=4e-5, scale_range="256,1024")
def train_seg(
    shared: dict,
    labels: Path | None = typer.Option(
        None, "--labels", help="Pseudo-label PNG directory (default: the ground-truth masks)."
    ),
    init: Path | None = typer.Option(
        None, "--init", help="Start the backbone from a trained train-cam checkpoint."
    ),
    eval_split: str | None = options.eval_split(),
    eval_every: int | None = options.eval_every(),
) -> None:
    """Train DeepLabv3+ on pseudo labels (cross-entropy, 255 ignored)."""
    from wsss.stages.train_seg import TrainSegConfig, run

    config = TrainSegConfig(
        **shared, labels=labels, init=init, eval_split=eval_split, eval_every=eval_every
    )
    options.print_fit("train-seg", run(config))


def register(app: typer.Typer) -> None:
    app.command("train-cam")(train_cam)
    app.command("train-seg")(train_seg)

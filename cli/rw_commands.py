"""Random-walk refinement commands: `wsss train-aff` and `wsss make-rw`."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import options
from cli.train_commands import (
    _backbone,
    _batch_size,
    _class_list,
    _compile,
    _crop,
    _data,
    _device,
    _epochs,
    _lr,
    _optimizer,
    _out,
    _output_stride,
    _pretrained,
    _report,
    _resume,
    _scale_range,
    _schedule,
    _seed,
    _split,
    _threads,
    _warmup_epochs,
    _weight_decay,
    _workers,
)

RW_PANEL = "Random walk"


def train_aff(
    data: Path = _data(),
    split: str = _split(),
    labels: Path = typer.Option(
        ...,
        "--labels",
        help="Confident-region labels (`wsss make-pseudo --confident`; 255 = ignore).",
    ),
    out: Path = _out(),
    backbone: str = _backbone(),
    pretrained: str = _pretrained(),
    output_stride: int = _output_stride(),
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
    epochs: int = _epochs(3),
    batch_size: int = _batch_size(),
    lr: float = _lr(0.01),
    weight_decay: float = _weight_decay(1e-4),
    optimizer: str = _optimizer(),
    schedule: str = _schedule(),
    warmup_epochs: float = _warmup_epochs(),
    crop: int = _crop(),
    scale_range: str = _scale_range("320,640"),
    seed: int = _seed(),
    device: str = _device(),
    workers: int | None = _workers(),
    threads: int | None = _threads(),
    resume: bool = _resume(),
    compile: bool = _compile(),
    class_list: Path | None = _class_list(),
) -> None:
    """Learn pixel affinities from confident-region labels (AffinityNet / IRN)."""
    from wsss.stages.train_aff import TrainAffConfig, run

    config = TrainAffConfig(
        data=data, split=split, labels=labels, out=out, backbone=backbone,
        pretrained=pretrained, output_stride=output_stride, init=init,
        freeze_backbone=freeze_backbone, radius=radius, epochs=epochs, batch_size=batch_size,
        lr=lr, weight_decay=weight_decay, optimizer=optimizer, schedule=schedule,
        warmup_epochs=warmup_epochs, crop=crop, scale_range=scale_range, seed=seed,
        device=device, workers=workers, threads=threads, resume=resume, compile=compile,
        class_list=class_list,
    )  # fmt: skip
    _report("train-aff", run(config))


def make_rw(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Affinity net (train-aff)."),
    cams: Path = typer.Option(..., "--cams", help="Directory of CAM files (make-cam output)."),
    data: Path = options.dataset_root(),
    split: str = options.split_name(),
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
    device: str = options.device(),
    workers: int | None = options.image_workers(),
    fmt: str = options.cam_format(),
    overlays: int = options.overlays(),
    class_list: Path | None = options.class_list(),
) -> None:
    """Refine CAMs by a random walk over learned affinities; writes CAM files for eval-cam."""
    from wsss.stages.make_rw import MakeRwConfig, RwParams, parse_exp_times, run
    from wsss.ui import key_value_table, print_table

    result = run(
        MakeRwConfig(
            checkpoint=checkpoint,
            cams=cams,
            data=data,
            split=split,
            out=out,
            rw=RwParams(
                beta=beta, exp_times=parse_exp_times(exp_times), radius=radius, bg_power=bg_power
            ),
            flip=flip,
            device=device,
            workers=workers,
            fmt=fmt,  # type: ignore[arg-type]  # validated by the stage
            overlays=overlays,
            class_list=class_list,
        )
    )
    print_table(key_value_table("make-rw", result.summary_rows()))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("train-aff")(train_aff)
    app.command("make-rw")(make_rw)

"""`wsss train-cam` and `wsss train-seg`: build the stage config, run it, print the summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.options import DEVICE_HELP

if TYPE_CHECKING:
    from wsss.engine.trainer import FitResult

# -- options both trainers share; defaults differ, so each is a factory of its typer.Option --


def _data() -> Any:
    return typer.Option(..., "--data", help="Dataset root in VOC layout.")


def _split() -> Any:
    return typer.Option("train_aug", "--split", help="Training split name or list file.")


def _out() -> Any:
    return typer.Option(..., "--out", help="Run directory (checkpoints, metrics, summary).")


def _backbone() -> Any:
    return typer.Option("resnet50", "--backbone", help="resnet18|34|50|101 or timm:<name>.")


def _pretrained() -> Any:
    return typer.Option(
        "imagenet", "--pretrained", help="Backbone weights: imagenet, none or a local file."
    )


def _output_stride() -> Any:
    return typer.Option(16, "--output-stride", help="Backbone output stride: 16 or 8.")


def _epochs(default: int) -> Any:
    return typer.Option(default, "--epochs", help="Training epochs.")


def _batch_size() -> Any:
    return typer.Option(32, "--batch-size", help="Images per step, in total over all processes.")


def _lr(default: float) -> Any:
    return typer.Option(default, "--lr", help="Base learning rate (before group multipliers).")


def _weight_decay(default: float) -> Any:
    return typer.Option(default, "--weight-decay", help="Weight decay (none on biases).")


def _optimizer() -> Any:
    return typer.Option("sgd", "--optimizer", help="sgd (Nesterov, momentum 0.9) or adamw.")


def _schedule() -> Any:
    return typer.Option("poly", "--schedule", help="Per-iteration lr decay: poly (0.9) or cosine.")


def _warmup_epochs() -> Any:
    return typer.Option(0.0, "--warmup-epochs", help="Linear lr warm-up length in epochs.")


def _crop() -> Any:
    return typer.Option(512, "--crop", help="Training crop size in pixels.")


def _scale_range(default: str) -> Any:
    return typer.Option(default, "--scale-range", help="Random long side range LOW,HIGH.")


def _seed() -> Any:
    return typer.Option(0, "--seed", help="Seed of initialisation, shuffling and augmentation.")


def _device() -> Any:
    return typer.Option("auto", "--device", help=DEVICE_HELP)


def _workers() -> Any:
    return typer.Option(
        None, "--workers", help="Loader processes (default: min(4, CPUs) on a GPU, 0 on the CPU)."
    )


def _threads() -> Any:
    return typer.Option(
        None,
        "--threads",
        help="torch CPU threads (default: torch's, one per core). Same count, same bits.",
    )


def _resume() -> Any:
    return typer.Option(
        False, "--resume", help="Continue from OUT/last.pt exactly (a fresh start if none)."
    )


def _compile() -> Any:
    return typer.Option(False, "--compile", help="Compile the model with torch.compile.")


def _eval_split() -> Any:
    return typer.Option(None, "--eval-split", help="Split with masks to evaluate periodically.")


def _eval_every() -> Any:
    return typer.Option(
        None,
        "--eval-every",
        help="Evaluate every K epochs and after the last (default: the smallest K keeping "
        "evaluation under 10%% of the training compute, counted from the split sizes).",
    )


def _class_list() -> Any:
    return typer.Option(
        None, "--class-list", help="Class list file (default: ROOT/classes.txt, else VOC's)."
    )


# -- commands ------------------------------------------------------------------------------------


def train_cam(
    data: Path = _data(),
    split: str = _split(),
    out: Path = _out(),
    backbone: str = _backbone(),
    pretrained: str = _pretrained(),
    output_stride: int = _output_stride(),
    freeze_bn: bool = typer.Option(False, "--freeze-bn", help="Keep backbone BatchNorm frozen."),
    init: Path | None = typer.Option(
        None, "--init", help="Warm start from a trained train-cam checkpoint."
    ),
    epochs: int = _epochs(15),
    batch_size: int = _batch_size(),
    lr: float = _lr(0.1),
    weight_decay: float = _weight_decay(1e-4),
    optimizer: str = _optimizer(),
    schedule: str = _schedule(),
    warmup_epochs: float = _warmup_epochs(),
    crop: int = _crop(),
    scale_range: str = _scale_range("320,640"),
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
    seed: int = _seed(),
    device: str = _device(),
    workers: int | None = _workers(),
    threads: int | None = _threads(),
    resume: bool = _resume(),
    compile: bool = _compile(),
    eval_split: str | None = _eval_split(),
    eval_every: int | None = _eval_every(),
    class_list: Path | None = _class_list(),
) -> None:
    """Train the Puzzle-CAM classifier from image-level labels (--pieces 1 --alpha 0: plain CAM)."""
    from wsss.stages.train_cam import TrainCamConfig, run

    config = TrainCamConfig(
        data=data, split=split, out=out, backbone=backbone, pretrained=pretrained,
        output_stride=output_stride, freeze_bn=freeze_bn, init=init, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
        schedule=schedule, warmup_epochs=warmup_epochs, crop=crop, scale_range=scale_range,
        augment=augment, color_jitter=color_jitter, pieces=pieces, alpha=alpha,
        alpha_warmup=alpha_warmup, puzzle_start=puzzle_start, re_loss=re_loss,
        re_level=re_level, use_pcl=not no_pcl, seed=seed, device=device, workers=workers,
        threads=threads, resume=resume, compile=compile, eval_split=eval_split,
        eval_every=eval_every, class_list=class_list,
    )  # fmt: skip
    _report("train-cam", run(config))


def train_seg(
    data: Path = _data(),
    split: str = _split(),
    labels: Path | None = typer.Option(
        None, "--labels", help="Pseudo-label PNG directory (default: the ground-truth masks)."
    ),
    out: Path = _out(),
    backbone: str = _backbone(),
    pretrained: str = _pretrained(),
    output_stride: int = _output_stride(),
    epochs: int = _epochs(50),
    batch_size: int = _batch_size(),
    lr: float = _lr(0.007),
    weight_decay: float = _weight_decay(4e-5),
    optimizer: str = _optimizer(),
    schedule: str = _schedule(),
    warmup_epochs: float = _warmup_epochs(),
    crop: int = _crop(),
    scale_range: str = _scale_range("256,1024"),
    seed: int = _seed(),
    device: str = _device(),
    workers: int | None = _workers(),
    threads: int | None = _threads(),
    resume: bool = _resume(),
    compile: bool = _compile(),
    eval_split: str | None = _eval_split(),
    eval_every: int | None = _eval_every(),
    class_list: Path | None = _class_list(),
) -> None:
    """Train DeepLabv3+ on pseudo labels (cross-entropy, 255 ignored)."""
    from wsss.stages.train_seg import TrainSegConfig, run

    config = TrainSegConfig(
        data=data, split=split, labels=labels, out=out, backbone=backbone,
        pretrained=pretrained, output_stride=output_stride, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
        schedule=schedule, warmup_epochs=warmup_epochs, crop=crop, scale_range=scale_range,
        seed=seed, device=device, workers=workers, threads=threads, resume=resume,
        compile=compile, eval_split=eval_split, eval_every=eval_every, class_list=class_list,
    )  # fmt: skip
    _report("train-seg", run(config))


def _report(stage: str, result: FitResult) -> None:
    from wsss.ui import info, key_value_table, print_table

    print_table(key_value_table(f"{stage}: {result.out_dir}", result.summary_rows()))
    info(f"summary written to {result.out_dir / 'summary.json'}")


def register(app: typer.Typer) -> None:
    app.command("train-cam")(train_cam)
    app.command("train-seg")(train_seg)

"""`wsss train-cam` and `wsss train-seg`: build the stage config, run it, print the summary."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import options

# -- commands ------------------------------------------------------------------------------------


def train_cam(
    data: Path = options.dataset_root(),
    split: str = options.split_name("train_aug"),
    out: Path = options.run_dir(),
    backbone: str = options.backbone(),
    pretrained: str = options.pretrained(),
    output_stride: int = options.output_stride(),
    freeze_bn: bool = typer.Option(False, "--freeze-bn", help="Keep backbone BatchNorm frozen."),
    init: Path | None = typer.Option(
        None, "--init", help="Warm start from a trained train-cam checkpoint."
    ),
    epochs: int = options.epochs(15),
    batch_size: int = options.train_batch_size(),
    lr: float = options.lr(0.1),
    weight_decay: float = options.weight_decay(1e-4),
    optimizer: str = options.optimizer(),
    schedule: str = options.schedule(),
    warmup_epochs: float = options.warmup_epochs(),
    crop: int = options.crop(),
    scale_range: str = options.scale_range("320,640"),
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
    seed: int = options.seed(),
    device: str = options.device(),
    workers: int | None = options.loader_workers(),
    resume: bool = options.resume(),
    compile: bool = options.compile_model(),
    eval_split: str | None = options.eval_split(),
    eval_every: int | None = options.eval_every(),
    class_list: Path | None = options.class_list(),
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
        resume=resume, compile=compile, eval_split=eval_split, eval_every=eval_every,
        class_list=class_list,
    )  # fmt: skip
    options.print_fit("train-cam", run(config))


def train_seg(
    data: Path = options.dataset_root(),
    split: str = options.split_name("train_aug"),
    labels: Path | None = typer.Option(
        None, "--labels", help="Pseudo-label PNG directory (default: the ground-truth masks)."
    ),
    out: Path = options.run_dir(),
    backbone: str = options.backbone(),
    pretrained: str = options.pretrained(),
    output_stride: int = options.output_stride(),
    epochs: int = options.epochs(50),
    batch_size: int = options.train_batch_size(),
    lr: float = options.lr(0.007),
    weight_decay: float = options.weight_decay(4e-5),
    optimizer: str = options.optimizer(),
    schedule: str = options.schedule(),
    warmup_epochs: float = options.warmup_epochs(),
    crop: int = options.crop(),
    scale_range: str = options.scale_range("256,1024"),
    seed: int = options.seed(),
    device: str = options.device(),
    workers: int | None = options.loader_workers(),
    resume: bool = options.resume(),
    compile: bool = options.compile_model(),
    eval_split: str | None = options.eval_split(),
    eval_every: int | None = options.eval_every(),
    class_list: Path | None = options.class_list(),
) -> None:
    """Train DeepLabv3+ on pseudo labels (cross-entropy, 255 ignored)."""
    from wsss.stages.train_seg import TrainSegConfig, run

    config = TrainSegConfig(
        data=data, split=split, labels=labels, out=out, backbone=backbone,
        pretrained=pretrained, output_stride=output_stride, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
        schedule=schedule, warmup_epochs=warmup_epochs, crop=crop, scale_range=scale_range,
        seed=seed, device=device, workers=workers, resume=resume, compile=compile,
        eval_split=eval_split, eval_every=eval_every, class_list=class_list,
    )  # fmt: skip
    options.print_fit("train-seg", run(config))


def register(app: typer.Typer) -> None:
    app.command("train-cam")(train_cam)
    app.command("train-seg")(train_seg)

"""The options every trainer shares (data, model, recipe, run control) and their checks.

Stage configs extend `TrainOptions` with their own fields and defaults; a bad value is a
one-line `WsssError` naming the option, raised before any data is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from wsss.data.loader import default_loader_workers
from wsss.data.voc import VocDataset
from wsss.engine.device import DEVICE_CHOICES
from wsss.engine.optim import OPTIMIZERS, SCHEDULES
from wsss.engine.trainer import LoopConfig
from wsss.errors import WsssError, check_count, file_error
from wsss.io import jsonable
from wsss.ui import info

PRETRAINED_CHOICES = ("imagenet", "none")
Options = TypeVar("Options", bound="TrainOptions")
OUTPUT_STRIDES = (8, 16)


def check_choice(option: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise WsssError(f"{option} must be one of {'|'.join(map(str, choices))}, got '{value}'")


def check_positive(option: str, value: float) -> None:
    if not value > 0:
        raise WsssError(f"{option} must be positive, got {value}")


def parse_int_pair(option: str, text: str | Sequence[int]) -> tuple[int, int]:
    """`"320,640"` -> (320, 640), with a one-line error for anything else."""
    if not isinstance(text, str):
        values = list(text)
    else:
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            values = []
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise WsssError(f"{option} must be two sizes LOW,HIGH with 0 < LOW <= HIGH, got '{text}'")
    return int(values[0]), int(values[1])


@dataclass(kw_only=True)
class TrainOptions:
    """Options of every trainer. `batch_size` is the total over all torchrun processes."""

    data: Path
    out: Path
    split: str = "train_aug"
    class_list: Path | None = None
    backbone: str = "resnet50"
    pretrained: str = "imagenet"
    output_stride: int = 16
    epochs: int = 15
    batch_size: int = 32
    lr: float = 0.1
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    schedule: str = "poly"
    warmup_epochs: float = 0.0
    crop: int = 512
    scale_range: tuple[int, int] = (320, 640)
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    resume: bool = False
    compile: bool = False
    eval_split: str | None = None
    eval_every: int | None = None  # None: counted by the stage (auto_eval_every)
    threads: int | None = None  # torch's CPU threads; None: torch's default

    def validate(self) -> None:
        """Reject bad values with one line naming the option (the CLI's exit code 2)."""
        check_count("--epochs", self.epochs)
        check_count("--batch-size", self.batch_size)
        check_count("--crop", self.crop)
        check_count("--eval-every", self.eval_every)
        check_count("--workers", self.workers, 0)
        check_count("--threads", self.threads)
        check_positive("--lr", self.lr)
        if self.weight_decay < 0:
            raise WsssError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise WsssError(
                f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs} "
                f"with {self.epochs} epochs"
            )
        self.scale_range = parse_int_pair("--scale-range", self.scale_range)
        check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_choice("--device", self.device, DEVICE_CHOICES)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise WsssError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
        check_choice("--output-stride", self.output_stride, OUTPUT_STRIDES)
        if self.pretrained not in PRETRAINED_CHOICES and not Path(self.pretrained).is_file():
            raise file_error(
                self.pretrained, "--pretrained weights file not found (or use imagenet|none)"
            )
        if self.class_list is not None and not Path(self.class_list).is_file():
            raise file_error(self.class_list, "--class-list file not found")

    def open_split(self) -> tuple[VocDataset, list[str]]:
        """Check the options, open the dataset and list the training ids, all images present."""
        self.validate()
        voc = VocDataset.open(self.data, self.class_list)
        ids = voc.split_ids(self.split)
        voc.check_image_ids(ids)
        return voc, ids

    def with_eval_every(self: Options, count: Callable[[], int]) -> Options:
        """These options with `--eval-every` as given, or counted by `count` (and said so)."""
        if self.eval_every is not None:
            return self
        options = replace(self, eval_every=count())
        info(f"evaluating {options.eval_split} every {options.eval_every} epoch(s) (auto)")
        return options

    def args(self) -> dict[str, Any]:
        """The resolved options as JSON values: recorded in checkpoints and the manifest."""
        return jsonable(asdict(self))

    def loop_config(self, stage: str) -> LoopConfig:
        return LoopConfig(
            out_dir=Path(self.out),
            stage=stage,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            optimizer=self.optimizer,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            seed=self.seed,
            device=self.device,
            workers=default_loader_workers(self.device) if self.workers is None else self.workers,
            resume=self.resume,
            compile=self.compile,
            eval_every=self.eval_every or 1,
            threads=self.threads,
            args=self.args(),
        )

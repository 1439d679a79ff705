"""The trainers' options: `TrainOptions` (every trainer), then train-cam, train-seg and
train-aff. The inherited defaults are the paper's recipe; a trainer re-declares a field only
to give it its own default (its help text stays the one declared here)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from wsss.amp import AMP_CHOICES, Amp
from wsss.configs import common
from wsss.engine.tensorboard import require_tensorboard
from wsss.errors import WsssError, check_choice, check_count, check_positive, file_error
from wsss.option import option
from wsss.torchrun import env_info, per_process_batch

if TYPE_CHECKING:
    from collections.abc import Callable

    from wsss.data.voc import VocDataset
    from wsss.engine.trainer import LoopConfig

Options = TypeVar("Options", bound="TrainOptions")
PRETRAINED_CHOICES = ("imagenet", "none")
OUTPUT_STRIDES = (8, 16)
AUGMENT_MODES = ("long-side", "resized-crop")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine")


@dataclass(kw_only=True)
class TrainOptions:
    """Options of every trainer. `batch_size` is the total over all torchrun processes."""

    data: Path = common.data()
    split: str = common.split("train_aug")
    out: Path = common.out("Run directory (checkpoints, metrics, summary).")
    backbone: str = option("resnet50", help="resnet18|34|50|101 or timm:<name>.")
    pretrained: str = option("imagenet", help="Backbone weights: imagenet, none or a local file.")
    output_stride: int = option(16, help="Backbone output stride: 16 or 8.")
    backbone_dilation: bool = option(
        True,
        help="Dilate the ResNet-50/101 stages kept at stride 1 (layer4 at --output-stride 16); "
        "--no-backbone-dilation keeps them undilated, as the Puzzle-CAM reference's ResNet "
        "(ResNet-18/34 are never dilated; timm backbones always are).",
    )
    epochs: int = option(15, help="Training epochs.")
    batch_size: int = option(
        32, help="Images per optimiser step, in total over all processes and micro-batches."
    )
    accumulate: int = option(
        1,
        help="Gradient accumulation: N micro-batches per optimiser step, each process computing "
        "--batch-size / (processes x N) images at a time; the lr schedule counts steps.",
        min=1,
    )
    sync_bn: bool = option(
        False,
        help="Under torchrun: BatchNorm statistics over every process's images (SyncBatchNorm), "
        "not each process's own; nothing to do on one process.",
        off="",
    )
    lr: float = option(0.1, help="Base learning rate (before group multipliers).")
    weight_decay: float = option(1e-4, help="Weight decay (none on biases).")
    optimizer: str = option("sgd", help="sgd (Nesterov, momentum 0.9) or adamw.")
    schedule: str = option("poly", help="Per-iteration lr decay: poly (0.9) or cosine.")
    warmup_epochs: float = option(0.0, help="Linear lr warm-up length in epochs.")
    crop: int = option(512, help="Training crop size in pixels.")
    scale_range: tuple[int, int] = option((320, 640), help="Random long side range LOW,HIGH.")
    seed: int = option(
        0, help="Seed of initialisation, shuffling and augmentation.", min=0, max=2**64 - 1
    )
    device: str = common.device()
    amp: Amp = common.amp()
    loader_workers: int | None = common.loader_workers()
    threads: int | None = option(
        None, help="torch CPU threads (default: torch's, one per core). Same count, same bits."
    )
    resume: bool = option(
        False,
        help="Continue from OUT/last.pt exactly (a fresh start if none).",
        off="",
        run_level=True,
    )
    compile: bool = option(False, help="Compile the model with torch.compile.", off="")
    tensorboard: Path | None = option(
        None,
        help="Write TensorBoard event files into DIR: losses, lr, evaluation figures and a few "
        "CAM / prediction images per evaluation (pip install 'wsss[tensorboard]').",
        run_level=True,
    )
    class_list: Path | None = common.class_list()

    # The loop's evaluation, for the trainers that have one (`Evaluated`).
    eval_split: str | None = None
    eval_every: int | None = None

    def validate(self) -> None:
        """Reject bad values with one line naming the option (the CLI's exit code 2)."""
        check_count("--epochs", self.epochs)
        check_count("--batch-size", self.batch_size)
        check_count("--accumulate", self.accumulate)
        check_count("--crop", self.crop)
        check_count("--eval-every", self.eval_every)
        check_count("--loader-workers", self.loader_workers, 0)
        check_count("--threads", self.threads)
        check_positive("--lr", self.lr)
        if self.weight_decay < 0:
            raise WsssError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise WsssError(
                f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs} "
                f"with {self.epochs} epochs"
            )
        if self.eval_every is not None and self.eval_split is None:
            raise WsssError("--eval-every has no effect without --eval-split")
        self.scale_range = parse_int_pair("--scale-range", self.scale_range)
        check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_choice("--device", self.device, DEVICE_CHOICES)
        check_choice("--amp", self.amp, AMP_CHOICES)
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise WsssError(
                    "--device cuda: no CUDA GPU is available (use --device cpu or auto)"
                )
        check_choice("--output-stride", self.output_stride, OUTPUT_STRIDES)
        if not self.backbone_dilation and self.backbone.startswith("timm:"):
            raise WsssError(
                f"--no-backbone-dilation: timm backbones ({self.backbone}) are always dilated"
            )
        if self.pretrained not in PRETRAINED_CHOICES and not Path(self.pretrained).is_file():
            raise file_error(
                self.pretrained, "--pretrained weights file not found (or use imagenet|none)"
            )
        if self.class_list is not None and not Path(self.class_list).is_file():
            raise file_error(self.class_list, "--class-list file not found")
        per_process_batch(self.batch_size, env_info().world_size, self.accumulate)
        if self.tensorboard is not None:
            require_tensorboard()

    def open_split(self) -> tuple[VocDataset, list[str]]:
        """Check the options, open the dataset and list the training ids, all images present."""
        from wsss.data.voc import VocDataset

        self.validate()
        voc = VocDataset.open(self.data, self.class_list)
        ids = voc.split_ids(self.split)
        voc.check_image_ids(ids)
        return voc, ids

    def with_eval_every(self: Options, count: Callable[[], int]) -> Options:
        """These options with `--eval-every` as given, or counted by `count` (and said so)."""
        from wsss.ui import info

        if self.eval_every is not None:
            return self
        options = replace(self, eval_every=count())
        info(f"evaluating {options.eval_split} every {options.eval_every} epoch(s) (auto)")
        return options

    def args(self) -> dict[str, Any]:
        """The resolved options as JSON values: recorded in checkpoints and the manifest."""
        from wsss.io import jsonable

        return jsonable(asdict(self))

    def loop_config(self, stage: str) -> LoopConfig:
        from wsss.data.loader import default_loader_workers
        from wsss.engine.trainer import LoopConfig

        workers = self.loader_workers
        # The loop's settings under the same names as these options, then the rest.
        shared = {f.name: getattr(self, f.name) for f in fields(LoopConfig) if hasattr(self, f.name)
                  }  # fmt: skip
        return LoopConfig(**{
            **shared,
            "out_dir": Path(self.out),
            "stage": stage,
            "workers": default_loader_workers(self.device) if workers is None else workers,
            "eval_every": self.eval_every or 1,
            "args": self.args(),
        })  # fmt: skip


@dataclass(kw_only=True)
class Evaluated(TrainOptions):
    """A trainer that can score a split with masks while it trains."""

    eval_split: str | None = option(None, help="Split with masks to evaluate periodically.")
    eval_every: int | None = option(
        None,
        help="Evaluate every K epochs and after the last (default: the smallest K keeping "
        "evaluation under 10%% of the training compute, counted from the split sizes).",
        min=1,
    )


@dataclass(kw_only=True)
class TrainCamConfig(Evaluated):
    """Train the Puzzle-CAM classifier from image-level labels (--pieces 1 --alpha 0: plain CAM)."""

    STAGE: ClassVar[str] = "train-cam"
    OUTPUT: ClassVar[str] = "model"
    # train-cam options; the inherited defaults are the paper's recipe.

    freeze_bn: bool = option(False, help="Keep backbone BatchNorm frozen.", off="")
    init: Path | None = option(None, help="Warm start from a trained train-cam checkpoint.")
    augment: str = option(
        "long-side",
        help="long-side (paper: random long side, crop) or resized-crop (from scratch).",
    )
    color_jitter: bool = option(False, help="Random colour jitter.", off="")
    pieces: int = option(4, help="Puzzle tiles (a square); 1 = plain CAM.")
    alpha: float = option(4.0, help="Maximum weight of L_re; 0 = off.")
    alpha_warmup: float = option(0.5, help="Fraction of training over which alpha ramps up.")
    puzzle_start: float = option(
        0.0, help="Fraction of training before the puzzle terms switch on."
    )
    re_loss: str = option("l1", help="Reconstruction loss: l1 or l2.")
    re_level: str = option(
        "feature", help="Compare raw class maps (feature) or normalised CAMs (cam)."
    )
    pcl: bool = option(
        True,
        help="The tile classification loss L_p-cls (--no-pcl drops it).",
        old_keys=("use_pcl",),
    )
    pcl_maps: str = option(
        "raw",
        help="What L_p-cls pools: raw (the merged class maps) or level (the maps L_re compares: "
        "at --re-level cam the normalised merged CAMs, as the reference; docs/parity.md). "
        "The same at --re-level feature.",
    )

    def validate(self) -> None:
        super().validate()
        side = math.isqrt(self.pieces) if self.pieces > 0 else 0
        if side == 0 or side * side != self.pieces:
            raise WsssError(f"--pieces must be a square number (1, 4, 9, ...), got {self.pieces}")
        if self.crop < side:
            raise WsssError(f"--crop {self.crop} is too small for {self.pieces} puzzle pieces")
        if self.alpha < 0:
            raise WsssError(f"--alpha must be >= 0, got {self.alpha}")
        for flag, value in (("--alpha-warmup", self.alpha_warmup),
                            ("--puzzle-start", self.puzzle_start)):  # fmt: skip
            if not 0 <= value <= 1:
                raise WsssError(f"{flag} is a fraction of training in [0, 1], got {value}")
        check_choice("--re-loss", self.re_loss, ("l1", "l2"))
        check_choice("--re-level", self.re_level, ("feature", "cam"))
        check_choice("--pcl-maps", self.pcl_maps, ("raw", "level"))
        check_choice("--augment", self.augment, AUGMENT_MODES)
        if self.init is not None and not Path(self.init).is_file():
            raise file_error(self.init, "--init checkpoint not found")


@dataclass(kw_only=True)
class TrainSegConfig(Evaluated):
    """Train DeepLabv3+ on pseudo labels (cross-entropy, 255 ignored)."""

    STAGE: ClassVar[str] = "train-seg"
    OUTPUT: ClassVar[str] = "model"
    # train-seg options; defaults are the reference DeepLab recipe.

    labels: Path | None = option(
        None, help="Pseudo-label PNG directory (default: the ground-truth masks).", run_level=True
    )
    # A trained train-cam checkpoint whose backbone starts the segmenter's: without ImageNet
    # weights it is the one network that has already learned these classes.
    init: Path | None = option(
        None, help="Start the backbone from a trained train-cam checkpoint.", run_level=True
    )
    align_corners: bool = option(
        False,
        help="align_corners=True in the decoder's and the final bilinear resize (the "
        "Puzzle-CAM reference's DeepLab).",
    )
    head_norm: Literal["bn", "gn"] = option(
        "bn",
        help="Normalisation of the ASPP and decoder: bn (BatchNorm) or gn (GroupNorm, 4 "
        "groups: the Puzzle-CAM reference's default head).",
    )
    epochs: int = 50
    lr: float = 0.007
    weight_decay: float = 4e-5
    scale_range: tuple[int, int] = (256, 1024)

    def validate(self) -> None:
        super().validate()
        if self.labels is not None and not Path(self.labels).is_dir():
            raise file_error(self.labels, "--labels directory not found")
        if self.init is not None and not Path(self.init).is_file():
            raise file_error(self.init, "--init checkpoint not found")
        per_process = per_process_batch(self.batch_size, env_info().world_size, self.accumulate)
        if per_process < 2 and self.head_norm == "bn":
            raise WsssError(
                f"--batch-size {self.batch_size} leaves {per_process} image(s) per process and "
                "micro-batch; DeepLab's BatchNorm (ASPP image pooling) needs at least 2 (lower "
                "--accumulate, or --head-norm gn)"
            )


@dataclass(kw_only=True)
class TrainAffConfig(TrainOptions):
    """Learn pixel affinities from confident-region labels (AffinityNet / IRN)."""

    STAGE: ClassVar[str] = "train-aff"
    OUTPUT: ClassVar[str] = "model"
    # train-aff options; `labels` is the confident-label directory (255 = ignore).

    labels: Path = option(
        help="Confident-region labels (`wsss make-pseudo --confident`; 255 = ignore).",
        run_level=True,
    )
    init: Path | None = option(
        None,
        help="Take the backbone of a trained train-cam checkpoint (instead of --pretrained).",
        run_level=True,
    )
    freeze_backbone: bool = option(
        True, help="Train the affinity head only.", off="--train-backbone"
    )
    radius: int = option(5, help="Pairs within this distance on the stride-4 grid.")
    pair_sources: Literal["all", "cropped"] = option(
        "all",
        help="Pixels whose pairs are trained: all, or cropped as the reference's PathIndex "
        "(none in the last radius-1 rows and first / last radius-1 columns; docs/parity.md).",
    )
    aff_head: Literal["wsss", "reference"] = option(
        "wsss",
        help="The affinity net's head: wsss (four branches, ReLU before the resize) or "
        "reference (the official code's: a stem branch too, ReLU after the upsampling, and "
        "make-rw pads the image to 512; docs/parity.md row 7). Recorded in the checkpoint.",
    )
    epochs: int = 3
    lr: float = 0.01

    def validate(self) -> None:
        from wsss.affinity import pair_offsets
        from wsss.cam_math import CAM_STRIDE

        super().validate()
        if not Path(self.labels).is_dir():
            raise file_error(self.labels, "--labels directory not found")
        pair_offsets(self.radius)
        if self.aff_head == "reference" and self.backbone.startswith("timm:"):
            raise WsssError(
                f"--aff-head reference has a branch on the ResNet stem: timm backbones "
                f"({self.backbone}) have none"
            )
        if self.crop < 2 * self.radius * CAM_STRIDE:
            raise WsssError(
                f"--crop {self.crop} is too small for --radius {self.radius} "
                f"(pairs span up to {self.radius * CAM_STRIDE} pixels)"
            )
        if self.init is not None and not Path(self.init).is_file():
            raise file_error(self.init, "--init checkpoint not found")


def parse_int_pair(flag: str, text: str | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """`"320,640"` or (320, 640) -> (320, 640), with a one-line error for anything else."""
    if not isinstance(text, str):
        values = list(text)
    else:
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            values = []
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise WsssError(f"{flag} must be two sizes LOW,HIGH with 0 < LOW <= HIGH, got '{text}'")
    return int(values[0]), int(values[1])

"""Every option two commands share, declared once, so that names, defaults and help stay the
same everywhere. Each is a factory of its `typer.Option` (a default that differs between
commands is its argument)."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from wsss.stages.train_cam import TrainCamResult as FitResult

DEVICE_HELP = "auto (CUDA when available), cpu or cuda."

# -- data and devices (every command) ------------------------------------------------------------


def dataset_root() -> Any:
    return typer.Option(..., "--data", help="Dataset root (VOC layout).")


def split_name(default: Any = ...) -> Any:
    what = "Split name or list file." if default is ... else "Training split name or list file."
    return typer.Option(default, "--split", help=what)


def class_list() -> Any:
    return typer.Option(
        None, "--class-list", help="Class list file (default: ROOT/classes.txt, else VOC's)."
    )


def device() -> Any:
    return typer.Option("auto", "--device", help=DEVICE_HELP)


def loader_workers() -> Any:
    return typer.Option(
        None,
        "--workers",
        help="Image loading processes (default: min(4, CPUs) with a GPU, 0 on the CPU).",
    )


def crf_workers() -> Any:
    # --workers is the spelling of the first release; it stays an alias.
    return typer.Option(
        None, "--crf-workers", "--workers", help="CRF worker processes (default: all cores)."
    )


# -- the per-image commands (make-cam, predict, make-rw) -----------------------------------------


def image_batch_size(cpu: int = 4) -> Any:
    return typer.Option(
        None,
        "--batch-size",
        help=f"Images per batch (same-size images; default 8 on GPU, {cpu} on CPU).",
    )


def cam_format() -> Any:
    return typer.Option("npy", "--format", help="npy (reference pickled dict) or npz.")


def overlays() -> Any:
    return typer.Option(0, "--overlays", help="Write heatmap PNGs of the first N images.")


# -- the trainers (train-cam, train-seg, train-aff) ----------------------------------------------


def run_dir() -> Any:
    return typer.Option(..., "--out", help="Run directory (checkpoints, metrics, summary).")


def backbone() -> Any:
    return typer.Option("resnet50", "--backbone", help="resnet18|34|50|101 or timm:<name>.")


def pretrained() -> Any:
    return typer.Option(
        "imagenet", "--pretrained", help="Backbone weights: imagenet, none or a local file."
    )


def output_stride() -> Any:
    return typer.Option(16, "--output-stride", help="Backbone output stride: 16 or 8.")


def epochs(default: int) -> Any:
    return typer.Option(default, "--epochs", help="Training epochs.")


def train_batch_size() -> Any:
    return typer.Option(32, "--batch-size", help="Images per step, in total over all processes.")


def lr(default: float) -> Any:
    return typer.Option(default, "--lr", help="Base learning rate (before group multipliers).")


def weight_decay(default: float) -> Any:
    return typer.Option(default, "--weight-decay", help="Weight decay (none on biases).")


def optimizer() -> Any:
    return typer.Option("sgd", "--optimizer", help="sgd (Nesterov, momentum 0.9) or adamw.")


def schedule() -> Any:
    return typer.Option("poly", "--schedule", help="Per-iteration lr decay: poly (0.9) or cosine.")


def warmup_epochs() -> Any:
    return typer.Option(0.0, "--warmup-epochs", help="Linear lr warm-up length in epochs.")


def crop() -> Any:
    return typer.Option(512, "--crop", help="Training crop size in pixels.")


def scale_range(default: str) -> Any:
    return typer.Option(default, "--scale-range", help="Random long side range LOW,HIGH.")


def seed() -> Any:
    return typer.Option(0, "--seed", help="Seed of initialisation, shuffling and augmentation.")


def threads() -> Any:
    return typer.Option(
        None,
        "--threads",
        help="torch CPU threads (default: torch's, one per core). Same count, same bits.",
    )


def resume() -> Any:
    return typer.Option(
        False, "--resume", help="Continue from OUT/last.pt exactly (a fresh start if none)."
    )


def compile_model() -> Any:
    return typer.Option(False, "--compile", help="Compile the model with torch.compile.")


def eval_split() -> Any:
    return typer.Option(None, "--eval-split", help="Split with masks to evaluate periodically.")


def eval_every() -> Any:
    return typer.Option(
        None,
        "--eval-every",
        help="Evaluate every K epochs and after the last (default: the smallest K keeping "
        "evaluation under 10%% of the training compute, counted from the split sizes).",
    )


# -- groups of options several commands take alike -----------------------------------------------

# name -> (type, factory); a factory with an argument takes the command's default.
Group = dict[str, tuple[Any, Callable[..., Any]]]

IMAGE_STAGE: Group = {
    "data": (Path, dataset_root),
    "split": (str, split_name),
    "device": (str, device),
    "workers": (int | None, loader_workers),
    "class_list": (Path | None, class_list),
}

TRAINER: Group = {
    "data": (Path, dataset_root),
    "split": (str, lambda: split_name("train_aug")),
    "out": (Path, run_dir),
    "backbone": (str, backbone),
    "pretrained": (str, pretrained),
    "output_stride": (int, output_stride),
    "epochs": (int, epochs),
    "batch_size": (int, train_batch_size),
    "lr": (float, lr),
    "weight_decay": (float, weight_decay),
    "optimizer": (str, optimizer),
    "schedule": (str, schedule),
    "warmup_epochs": (float, warmup_epochs),
    "crop": (int, crop),
    "scale_range": (str, scale_range),
    "seed": (int, seed),
    "device": (str, device),
    "workers": (int | None, loader_workers),
    "threads": (int | None, threads),
    "resume": (bool, resume),
    "compile": (bool, compile_model),
    "class_list": (Path | None, class_list),
}


def takes(group: Group, **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command every option of `group` (with these per-command defaults); the command
    receives them together as its `shared` argument, a dict ready for its stage config."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command)
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "shared"]
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=factory(defaults[name]) if name in defaults else factory(),
                annotation=kind,
            )
            for name, (kind, factory) in group.items()
        ]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            shared = {name: kwargs.pop(name) for name in group}
            return command(shared=shared, **kwargs)

        parameters = [p.replace(annotation=hints[p.name]) for p in own] + added
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


# -- printing a result ---------------------------------------------------------------------------


def print_summary(title: str, rows: list[tuple[str, object]]) -> None:
    """A result's summary rows as one key-value table."""
    from wsss.ui import key_value_table, print_table

    print_table(key_value_table(title, rows))


def print_fit(stage: str, result: FitResult) -> None:
    from wsss.ui import info

    print_summary(f"{stage}: {result.out_dir}", result.summary_rows())
    info(f"summary written to {result.out_dir / 'summary.json'}")

"""Options shared by the per-image commands (make-cam, predict, make-rw, make-pseudo, eval):
one declaration each, so their names, defaults and help stay the same everywhere."""

from __future__ import annotations

from typing import Any

import typer

DEVICE_HELP = "auto (CUDA when available), cpu or cuda."


def dataset_root() -> Any:
    return typer.Option(..., "--data", help="Dataset root (VOC layout).")


def split_name() -> Any:
    return typer.Option(..., "--split", help="Split name or list file.")


def device() -> Any:
    return typer.Option("auto", "--device", help=DEVICE_HELP)


def image_batch_size() -> Any:
    return typer.Option(
        None,
        "--batch-size",
        help="Images per batch (same-size images; default 8 on GPU, 4 on CPU).",
    )


def image_workers() -> Any:
    return typer.Option(
        None,
        "--workers",
        help="Image decoding processes (default: min(4, CPUs) with a GPU, 0 on the CPU).",
    )


def cam_format() -> Any:
    return typer.Option("npy", "--format", help="npy (reference pickled dict) or npz.")


def overlays() -> Any:
    return typer.Option(0, "--overlays", help="Write heatmap PNGs of the first N images.")


def class_list() -> Any:
    return typer.Option(None, "--class-list", help="Class list file.")

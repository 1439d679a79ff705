"""Options several stages declare alike, as field factories: one help text each."""

from __future__ import annotations

from typing import Any

from wsss.option import option

DEVICE_HELP = "auto (CUDA when available), cpu or cuda."
SCALES_HELP = "Comma-separated inference scales, each also run flipped unless --no-flip."


def data() -> Any:
    return option(help="Dataset root (VOC layout).", run_level=True)


def split(default: Any = ...) -> Any:
    if default is ...:
        return option(help="Split name or list file.", run_level=True)
    return option(default, help="Training split name or list file.", run_level=True)


def class_list() -> Any:
    return option(
        None, help="Class list file (default: ROOT/classes.txt, else VOC's).", run_level=True
    )


def device() -> Any:
    return option("auto", help=DEVICE_HELP, run_level=True)


def workers(help: str, minimum: int) -> Any:
    """Worker processes; --workers is the spelling of the first release, kept as an alias."""
    return option(
        None, help=help, aliases=("--workers",), old_keys=("workers",), min=minimum,
        run_level=True,
    )  # fmt: skip


def loader_workers() -> Any:
    return workers("Image loading processes (default: min(4, CPUs) with a GPU, 0 on the CPU).", 0)


def image_batch_size(cpu: int) -> Any:
    return option(
        None,
        help=f"Images per batch (same-size images; default 8 on GPU, {cpu} on CPU).",
        min=1,
    )


def cam_format() -> Any:
    return option("npy", help="npy (reference pickled dict) or npz.")


def overlays() -> Any:
    return option(0, help="Write heatmap PNGs of the first N images.", min=0)


def flip() -> Any:
    return option(True, help="Add the horizontal flips.")


def resize() -> Any:
    return option(
        "bilinear",
        help="How an image is resized to a scale: bilinear (the normalised image, on the "
        "device, antialiased below scale 1) or pil-bicubic (the uint8 image with PIL's bicubic "
        "filter, then normalised: the official Puzzle-CAM code; PIL runs in the image loader).",
    )


def cams() -> Any:
    return option(help="Directory of CAM files (make-cam output).", run_level=True)


def out(what: str) -> Any:
    return option(help=what, run_level=True)

"""Options several stages declare alike, as field factories: one help text each."""

from __future__ import annotations

from typing import Any, Literal, get_args

from wsss.amp import AMP_DEFAULT, AMP_HELP
from wsss.option import option

DEVICE_HELP = "auto (CUDA when available), cpu or cuda."
SCALES_HELP = "Comma-separated inference scales, each also run flipped unless --no-flip."


def data(alternative: str = "") -> Any:
    """The dataset root; with `alternative`, optional (another flag names the images)."""
    if alternative:
        return option(None, help=f"Dataset root (VOC layout); {alternative}", run_level=True)
    return option(help="Dataset root (VOC layout).", run_level=True)


def split(default: Any = ...) -> Any:
    if default is ...:
        return option(help="Split name or list file.", run_level=True)
    if default is None:
        return option(None, help="Split name or list file (with --data).", run_level=True)
    return option(default, help="Training split name or list file.", run_level=True)


def class_list() -> Any:
    return option(
        None, help="Class list file (default: ROOT/classes.txt, else VOC's).", run_level=True
    )


def device() -> Any:
    return option("auto", help=DEVICE_HELP, run_level=True)


def amp() -> Any:
    return option(AMP_DEFAULT, help=AMP_HELP, run_level=True)


# wsss.cam_threshold.RULES names the same (a test pins them); the first is the default.
ThresholdRule = Literal["blend", "lifted-median", "mean-cam"]


def threshold_rule() -> Any:
    return option(
        get_args(ThresholdRule)[0],
        help="The label-free rule of --threshold auto (docs/label_free_threshold.md): "
        + ", ".join(get_args(ThresholdRule))
        + ".",
    )


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


def merge() -> Any:
    return option(
        "probs",
        help="How the views of --scales and --flip are merged: probs (the mean of their "
        "softmaxes) or logits (the softmax of their summed logits: the official Puzzle-CAM "
        "code).",
    )


def cams() -> Any:
    return option(help="Directory of CAM files (make-cam output).", run_level=True)


def out(what: str) -> Any:
    return option(help=what, run_level=True)


CRF_PANEL = "Dense CRF"
PRESET_DEFAULT = " Default: the --crf-preset's."
# A dense CRF parameter: its help, and make-pseudo's `--set` key of the first release (crf.KEY).
CRF_PARAMS = {
    "crf_iters": ("Mean-field iterations.", "iterations"),
    "unary": (
        "CRF unary: 'scores' (soft scores, background (1 - max CAM)^a) or 'labels' "
        "(thresholded labels held with --gt-prob; docs/pseudo_labels.md compares them).",
        "unary",
    ),
    "gt_prob": ("Confidence of the labels ('labels' unary).", "gt_prob"),
    "gaussian_sxy": ("Smoothness kernel width (px).", "gaussian_sxy"),
    "gaussian_compat": ("Smoothness kernel weight.", "gaussian_compat"),
    "bilateral_sxy": ("Appearance kernel width (px).", "bilateral_sxy"),
    "bilateral_srgb": ("Appearance kernel colour width.", "bilateral_srgb"),
    "bilateral_compat": ("Appearance kernel weight.", "bilateral_compat"),
}


def crf_preset(segmenter: bool = False) -> Any:
    """The named set of every CRF parameter (`wsss.crf.CRF_PRESETS`)."""
    reference = (
        "the official Puzzle-CAM code's prediction CRF, psa's values"
        if segmenter
        else "the official Puzzle-CAM code's: 'labels' unary, colour width 5"
    )
    return option(
        "wsss",
        help=f"CRF parameter set: wsss (this toolkit's), reference ({reference}), psa, deeplab "
        "(deeplab-pytorch) or afa; docs/parity.md lists the values. A CRF option given "
        "explicitly replaces the preset's value.",
        panel=CRF_PANEL,
    )


def crf_param(name: str, first_release: bool = False, **spec: Any) -> Any:
    """A dense CRF parameter; None (the default) is the --crf-preset's value."""
    help, key = CRF_PARAMS[name]
    old_keys = (f"crf.{key}",) if first_release else ()
    return option(None, help=help + PRESET_DEFAULT, panel=CRF_PANEL, old_keys=old_keys, **spec)

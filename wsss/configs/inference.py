"""Options of the stages that run a trained network over a split: make-cam, predict, make-rw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from wsss.amp import Amp
from wsss.configs import common
from wsss.crf import CrfPreset
from wsss.errors import WsssError
from wsss.option import option

CamFormat = Literal["npy", "npz"]
Resize = Literal["bilinear", "pil-bicubic"]
Merge = Literal["probs", "logits"]
RW_PANEL = "Random walk"
IMAGES_PANEL = "Any images (--images)"


@dataclass(frozen=True, kw_only=True)
class ImageStage:
    """What every stage that runs a network over a split's images takes."""

    data: Path = common.data()
    split: str = common.split()
    device: str = common.device()
    amp: Amp = common.amp()
    loader_workers: int | None = common.loader_workers()
    class_list: Path | None = common.class_list()


@dataclass(frozen=True, kw_only=True)
class MakeCamConfig(ImageStage):
    """Multi-scale + flip CAMs, one file per image (keys, cam at stride 4, hr_cam)."""

    STAGE: ClassVar[str] = "make-cam"
    OUTPUT: ClassVar[str] = "cams"
    checkpoint: Path = option(help="CAM classifier checkpoint.", run_level=True)
    out: Path = common.out("Output directory for the CAM files.")
    scales: tuple[float, ...] = option((0.5, 1.0, 1.5, 2.0), help=common.SCALES_HELP)
    flip: bool = common.flip()
    resize: Resize = common.resize()
    batch_size: int | None = common.image_batch_size(cpu=4)
    format: CamFormat = common.cam_format()
    overlays: int = common.overlays()


def parse_images(text: str) -> tuple[str, ...]:
    """--images: comma-separated entries, unless the whole text names an existing file or
    folder (a name with a comma in it)."""
    if Path(text).exists():
        return (text,)
    entries = tuple(item.strip() for item in text.split(",") if item.strip())
    if not entries:
        raise WsssError(f"--images: '{text}' names no folder, glob or file")
    return entries


@dataclass(frozen=True, kw_only=True)
class PredictConfig(ImageStage):
    """Segment images with a trained DeepLab: palette PNGs (score a split's with `wsss eval`).

    The images are a split of a dataset (--data, --split) or any image files (--images:
    folders, searched recursively, globs or files), whose outputs mirror their folders."""

    STAGE: ClassVar[str] = "predict"
    OUTPUT: ClassVar[str] = "labels"
    checkpoint: Path = option(help="DeepLab checkpoint.", run_level=True)
    out: Path = common.out("Output directory for the label PNGs.")
    data: Path | None = common.data("or --images.")
    split: str | None = common.split(None)
    images: tuple[str, ...] | None = option(
        None,
        help="Images to segment instead of a split, comma-separated: folders (searched "
        "recursively), globs in quotes ('shots/**/*.jpg') or files; no labels needed. Outputs "
        "keep each image's path relative to its folder, at its size, upright (EXIF "
        "orientation applied), plus classes.csv / classes.json (each image's pixel share per "
        "class). An unreadable file is named at the end, the others are written.",
        parse=parse_images,
        panel=IMAGES_PANEL,
        run_level=True,
    )
    window: int = option(
        1024,
        help="With --images: an image larger than N pixels on a side is segmented in N x N "
        "windows whose probabilities are merged (memory follows N, not the image; "
        "--batch-size windows per forward, default 1).",
        min=32,
        panel=IMAGES_PANEL,
        run_level=True,  # stand-alone only: the pipeline predicts a split
    )
    overlap: float = option(
        0.25,
        help="The share of a window that neighbouring windows overlap (--window).",
        min=0.0,
        max=0.9,
        panel=IMAGES_PANEL,
        run_level=True,  # stand-alone only: the pipeline predicts a split
    )
    overlay: bool = option(
        False,
        help="With --images: also write <image>.overlay.jpg, the image with the label colours.",
        panel=IMAGES_PANEL,
        run_level=True,  # stand-alone only: the pipeline predicts a split
    )
    save_probs: bool = option(
        False,
        help="With --images: also write <image>.probs.npz, the merged class probabilities "
        "(float32, compressed; 'probs' C+1 x H x W and 'classes'). Keeps an image's "
        "probabilities in memory, as --crf does.",
        panel=IMAGES_PANEL,
        run_level=True,  # stand-alone only: the pipeline predicts a split
    )
    scales: tuple[float, ...] = option((1.0,), help=common.SCALES_HELP)
    flip: bool = common.flip()
    resize: Resize = common.resize()
    merge: Merge = common.merge()
    crf: bool = option(False, help="Refine with a dense CRF.")
    crf_preset: CrfPreset = common.crf_preset(segmenter=True)
    crf_iters: int | None = common.crf_param("crf_iters", min=1)
    gaussian_sxy: float | None = common.crf_param("gaussian_sxy")
    gaussian_compat: float | None = common.crf_param("gaussian_compat")
    bilateral_sxy: float | None = common.crf_param("bilateral_sxy")
    bilateral_srgb: float | None = common.crf_param("bilateral_srgb")
    bilateral_compat: float | None = common.crf_param("bilateral_compat")
    batch_size: int | None = common.image_batch_size(cpu=4)


@dataclass(frozen=True, kw_only=True)
class MakeRwConfig(ImageStage):
    """Refine CAMs by a random walk over learned affinities; writes CAM files for eval-cam."""

    STAGE: ClassVar[str] = "make-rw"
    OUTPUT: ClassVar[str] = "cams"
    checkpoint: Path = option(help="Affinity net (train-aff).", run_level=True)
    cams: Path = common.cams()
    out: Path = common.out("Output directory for the refined CAM files.")
    beta: float = option(10.0, help="Affinity exponent.", panel=RW_PANEL, old_keys=("rw.beta",))
    # None is the spelling of 'auto' before the option took the word.
    exp_times: int | Literal["auto"] | None = option(
        "auto",
        help="The walk takes 2^N steps. auto: 8 (the reference) for 500 px images, scaled "
        "with the image area: round(8 + 2 log2(long side / 500)), 4 at 128 px.",
        panel=RW_PANEL,
        old_keys=("rw.exp_times",),
    )
    radius: int = option(
        5, help="Pairs within this distance (stride-4 grid).", panel=RW_PANEL,
        old_keys=("rw.radius",),
    )  # fmt: skip
    bg_power: float | None = option(
        None,
        help="Propagate a background channel (1 - max CAM)^a and store each class's share "
        "(AffinityNet; eval-cam threshold 0.5 = its argmax). Default: the background stays a "
        "threshold, swept by eval-cam (IRN, Puzzle-CAM).",
        panel=RW_PANEL,
        old_keys=("rw.bg_power",),
    )
    rw_normalise: Literal["class", "global"] = option(
        "class",
        help="How the walked maps are scaled to [0, 1] (threshold background, no --bg-power): "
        "class (each by its own maximum) or global (all of an image's classes by their one "
        "maximum: the official Puzzle-CAM code).",
        panel=RW_PANEL,
    )
    flip: bool = option(True, help="Average with the flipped image.")
    batch_size: int | None = common.image_batch_size(cpu=1)
    format: CamFormat = common.cam_format()
    overlays: int = common.overlays()

    @property
    def walk_steps_exponent(self) -> int | None:
        """exp_times as a number, or None for the image-scaled one."""
        return None if self.exp_times in ("auto", None) else int(self.exp_times)  # type: ignore[arg-type]

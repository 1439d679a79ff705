"""Options of the stages that run a trained network over a split: make-cam, predict, make-rw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from wsss.configs import common
from wsss.crf import CrfPreset
from wsss.option import option

CamFormat = Literal["npy", "npz"]
Resize = Literal["bilinear", "pil-bicubic"]
RW_PANEL = "Random walk"


@dataclass(frozen=True, kw_only=True)
class ImageStage:
    """What every stage that runs a network over a split's images takes."""

    data: Path = common.data()
    split: str = common.split()
    device: str = common.device()
    amp: common.Amp = common.amp()
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


@dataclass(frozen=True, kw_only=True)
class PredictConfig(ImageStage):
    """Segment a split with a trained DeepLab: palette PNGs, then score them with `wsss eval`."""

    STAGE: ClassVar[str] = "predict"
    OUTPUT: ClassVar[str] = "labels"
    checkpoint: Path = option(help="DeepLab checkpoint.", run_level=True)
    out: Path = common.out("Output directory for the label PNGs.")
    scales: tuple[float, ...] = option((1.0,), help=common.SCALES_HELP)
    flip: bool = common.flip()
    resize: Resize = common.resize()
    merge: Literal["probs", "logits"] = option(
        "probs",
        help="How the views of --scales and --flip are merged: probs (the mean of their "
        "softmaxes) or logits (the softmax of their summed logits: the official Puzzle-CAM "
        "code).",
    )
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

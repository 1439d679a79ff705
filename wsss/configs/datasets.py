"""Options of the stages that make or check a dataset: demo-data, prepare-voc, prepare-coco."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from wsss.configs import common
from wsss.data.demo import DEFAULT_KNOBS
from wsss.option import option

_KNOBS = DEFAULT_KNOBS  # the knobs' defaults live on DemoKnobs


@dataclass(frozen=True, kw_only=True)
class DemoDataConfig:
    """Generate the synthetic demo dataset: large bodies with small discriminative parts.

    The knobs (docs/demo.md) make dataset variants; their defaults are the demo itself."""

    STAGE: ClassVar[str] = "demo-data"
    OUTPUT: ClassVar[str] = "dataset"
    # The synthetic dataset's size, seed and knobs (docs/demo.md); the defaults are the demo.

    out: Path = option(
        help="Directory to write the demo dataset to (VOC layout).", argument=True, run_level=True
    )
    train: int = option(300, help="Number of training images.", min=1, old_keys=("n_train",))
    val: int = option(100, help="Number of validation images.", min=1, old_keys=("n_val",))
    size: int = option(128, help="Image side in pixels.", min=32)
    seed: int = option(0, help="Random seed: same seed, same bytes.", min=0, max=2**64 - 1)
    body_evidence: float = option(
        _KNOBS.body_evidence,
        help="Class evidence in the bodies: 0 none, <1 that share of bodies, >1 narrower spreads.",
        min=0.0,
    )
    part_scale: float = option(
        _KNOBS.part_scale, help="Multiplies the part's share of its body (3-6%)."
    )
    clutter: float = option(
        _KNOBS.clutter, help="Multiplies the small marks (2-5) and background waves.", min=0.0
    )
    distractors: int = option(
        _KNOBS.distractors, help="Most body-like distractors per image (0..N).", min=0
    )
    min_objects: int = option(_KNOBS.min_objects, help="Fewest objects per image.", min=1)
    max_objects: int = option(_KNOBS.max_objects, help="Most objects per image.", min=1)
    object_scale: float = option(
        _KNOBS.object_scale, help="Multiplies each body's share of the image."
    )
    classes: int = option(_KNOBS.classes, help="Number of classes (2-20).")
    shape_variety: float = option(
        _KNOBS.shape_variety, help="Multiplies outline wobble and aspect range.", min=0.0
    )
    noise: float = option(
        _KNOBS.noise, help="Std of the per-pixel colour noise (values in 0..1).", min=0.0
    )


def generator_args(options: dict[str, Any]) -> dict[str, Any]:
    """`wsss.data.demo.generate_demo`'s keyword arguments from demo-data options (a recipe's
    or `--set demo.*`): the image counts under the generator's names."""
    names = {"train": "n_train", "val": "n_val"}
    return {names.get(key, key): value for key, value in options.items() if key != "out"}


@dataclass(frozen=True, kw_only=True)
class PrepareVocConfig:
    """Check a VOC tree; convert SBD masks; write the train_aug list and a label cache."""

    STAGE: ClassVar[str] = "prepare-voc"
    OUTPUT: ClassVar[str] = "dataset"
    voc: Path = option(help="VOC 2012 root (VOCdevkit/VOC2012).", run_level=True)
    sbd: Path | None = option(
        None, help="SBD root (benchmark_RELEASE/dataset) to build train_aug.", run_level=True
    )
    class_list: Path | None = option(
        None, help="Class list file (default: ROOT/classes.txt, else VOC's 20).", run_level=True
    )
    check_images: bool = option(True, help="Decode every image and mask.")


@dataclass(frozen=True, kw_only=True)
class PrepareCocoConfig:
    """Convert COCO 2014 to the toolkit's layout: masks, labels.json, lists, classes.txt."""

    STAGE: ClassVar[str] = "prepare-coco"
    OUTPUT: ClassVar[str] = "dataset"
    coco: Path = option(help="COCO root with train2014/, val2014/ and annotations/.")
    out: Path | None = option(
        None, help="Where to write the toolkit layout (default: into the COCO root)."
    )
    splits: tuple[str, ...] = ("train", "val")


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """Summary, training curves, CAM threshold curve, per-class IoU and sample grids, as one
    offline HTML file (figures inlined); says what the run lacks."""

    STAGE: ClassVar[str] = "report"
    OUTPUT: ClassVar[str] = "report"
    run_dir: Path = option(help="Run directory of `wsss pipeline` (or of stages).", argument=True)
    out: Path | None = option(None, help="Where to write the page (default: RUN_DIR/report.html).")
    samples: int = option(4, help="Sample images per split.", min=0)


__all__ = ["DemoDataConfig", "PrepareCocoConfig", "PrepareVocConfig", "ReportConfig", "common"]

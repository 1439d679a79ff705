"""Options of the stages that make a wsss checkpoint from another code base's: import-checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from wsss.configs import common
from wsss.option import option


@dataclass(frozen=True, kw_only=True)
class ImportCheckpointConfig:
    """Turn a checkpoint of the official Puzzle-CAM code into a wsss checkpoint, strictly.

    KIND: classifier (for make-cam, or --init) or deeplab (for predict). The wsss model gets
    the reference's architecture: layer4 undilated, and DeepLab's align_corners resizes and
    the file's head normalisation (docs/parity.md)."""

    STAGE: ClassVar[str] = "import-checkpoint"
    OUTPUT: ClassVar[str] = "model"
    kind: Literal["classifier", "deeplab", "affinity"] = option(
        help="classifier, deeplab or affinity (not supported yet: issue #25 row 7).",
        argument=True,
        flag="KIND",  # how a bad value's error names it
    )
    file: Path = option(help="The reference's state_dict file (.pth).", argument=True)
    source: Literal["puzzlecam"] = option(
        help="Whose checkpoint: puzzlecam (github.com/shjo-april/PuzzleCAM).", flag="--from"
    )
    out: Path = common.out("The wsss checkpoint to write (.pt).")
    class_list: Path | None = option(
        None, help="The model's class list file (default: VOC's 20 classes)."
    )

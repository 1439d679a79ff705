"""Options of the stages that move a checkpoint between wsss and other code: import-checkpoint
(another code base's into wsss), export (wsss's out, to TorchScript or ONNX)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from wsss.configs import common
from wsss.option import option


@dataclass(frozen=True, kw_only=True)
class ImportCheckpointConfig:
    """Turn a checkpoint of the official Puzzle-CAM code into a wsss checkpoint, strictly.

    KIND: classifier (for make-cam, or --init), deeplab (for predict) or affinity (for
    make-rw). The wsss model gets the reference's architecture: layer4 undilated, DeepLab's
    align_corners resizes and the file's head normalisation, the AffinityNet's head
    (train-aff --aff-head reference) (docs/parity.md)."""

    STAGE: ClassVar[str] = "import-checkpoint"
    OUTPUT: ClassVar[str] = "model"
    kind: Literal["classifier", "deeplab", "affinity"] = option(
        help="classifier, deeplab or affinity.",
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


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Export a segmenter (train-seg) or CAM classifier (train-cam) to run without wsss.

    TorchScript runs with torch alone, ONNX with onnxruntime alone (pip install
    'wsss[export]'). The file takes float32 RGB images N x 3 x H x W in 0..255 of any size,
    normalises them inside, and carries the class names, the normalisation and the input and
    output layouts as metadata (docs/export.md)."""

    STAGE: ClassVar[str] = "export"
    OUTPUT: ClassVar[str] = "model"
    checkpoint: Path = option(
        help="A DeepLab (train-seg) or CAM classifier (train-cam) checkpoint.", run_level=True
    )
    out: Path = common.out("The file to write (model.pt for torchscript, model.onnx for onnx).")
    format: Literal["torchscript", "onnx"] = option(
        "torchscript", help="torchscript (torch.jit.load) or onnx (onnxruntime)."
    )
    flip: bool = common.flip()
    merge: Literal["probs", "logits"] = common.merge()

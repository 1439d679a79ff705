"""A trained segmenter or CAM classifier as one file that runs without wsss: TorchScript
(torch alone) or ONNX (onnxruntime alone).

The exported network takes what an application has at hand: float32 RGB images N x 3 x H x W
with values 0..255, any height and width; the ImageNet normalisation and, unless left out,
the average with the horizontal flip happen inside it, as `wsss predict` does at one scale.
The class names, the normalisation and the input and output layouts travel in the file as
JSON (`METADATA_KEY`: a TorchScript extra file, an ONNX metadata property), so a reader needs
no wsss to know what label 3 is. docs/export.md shows both files in use.

Both formats are traced at one size and checked at another (and another batch size) against
the network in wsss before the file is written: a shape frozen into the graph by the tracer
shows there, not in a user's application.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

import wsss
from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.errors import WsssError
from wsss.io import atomic_write_bytes
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus

Format = Literal["torchscript", "onnx"]
METADATA_KEY = "wsss.json"
ONNX_OPSET = 17
TRACE_SIZE = (1, 3, 96, 128)  # traced at this shape ...
CHECK_SIZE = (2, 3, 72, 104)  # ... and checked at another
CHECK_TOLERANCE = 1e-4
EXPORT_HINT = "pip install 'wsss[export]'"


class _Normalised(nn.Module):
    """The network behind the normalisation predict applies: (image / 255 - mean) / std."""

    def __init__(self, model: nn.Module, flip: bool) -> None:
        super().__init__()
        self.model, self.flip = model.eval(), flip
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1))

    def views(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's output for the image and, with flip, for its flip (flipped back)."""
        x = (image / 255.0 - self.mean) / self.std
        if not self.flip:
            return self.model(x), None
        both = self.model(torch.cat([x, x.flip(-1)]))  # one batch, as predict runs them
        plain, flipped = both.chunk(2)
        return plain, flipped.flip(-1)


class SegmenterExport(_Normalised):
    """image -> (probs N x (1 + C) x H x W, labels N x H x W): predict at one scale."""

    def __init__(self, model: nn.Module, flip: bool, merge: str) -> None:
        super().__init__(model, flip)
        self.merge_logits = merge == "logits"

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        plain, flipped = self.views(image)
        if flipped is None:
            probs = plain.softmax(1)
        elif self.merge_logits:
            probs = (plain + flipped).softmax(1)
        else:
            probs = (plain.softmax(1) + flipped.softmax(1)) / 2
        return probs, probs.argmax(1)


class ClassifierExport(_Normalised):
    """image -> (scores N x C: class logits, cams N x C x h x w: ReLU class maps, summed
    over the flip pair as make-cam sums them)."""

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        plain, flipped = self.views(image)
        if flipped is None:
            return CamClassifier.logits(plain), plain.clamp_min(0)
        scores = (CamClassifier.logits(plain) + CamClassifier.logits(flipped)) / 2
        return scores, plain.clamp_min(0) + flipped.clamp_min(0)


@dataclass(frozen=True)
class Exported:
    path: Path
    format: Format
    metadata: dict[str, Any]
    checked: str  # how the file was checked against the network in wsss


def outputs_of(kind: str) -> dict[str, str]:
    if kind == DeepLabV3Plus.KIND:
        return {
            "probs": "float32 N x (1 + C) x H x W: class probabilities at the input size; "
            "channel 0 is background, channel i is classes[i - 1]",
            "labels": "int64 N x H x W: the argmax of probs (0 = background)",
        }
    return {
        "scores": "float32 N x C: class logits (sigmoid: the chance the class is present)",
        "cams": "float32 N x C x h x w: ReLU class maps at the network's output stride "
        "(summed over the flip pair); divide each by its maximum for a CAM in [0, 1]",
    }


def export_metadata(
    kind: str, classes: tuple[str, ...], model_config: dict[str, Any], flip: bool, merge: str,
    checkpoint_sha256: str,
) -> dict[str, Any]:  # fmt: skip
    """What a user of the file needs to feed it and read it, as JSON."""
    meta: dict[str, Any] = {
        "format": "wsss-export",
        "version": 1,
        "kind": kind,
        "classes": list(classes),
        "input": {
            "name": "image",
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "range": [0, 255],
            "size": "any height and width; batch any",
            "normalisation": {
                "mean": [float(v) for v in IMAGENET_MEAN],
                "std": [float(v) for v in IMAGENET_STD],
                "applied": "inside the model: (image / 255 - mean) / std",
            },
        },
        "outputs": outputs_of(kind),
        "flip": flip,
        "model_config": model_config,
        "checkpoint_sha256": checkpoint_sha256,
        "wsss_version": wsss.__version__,
    }
    if kind == DeepLabV3Plus.KIND:
        meta["labels"] = ["background", *classes]
        meta["merge"] = merge
    return meta


def wrap(model: nn.Module, kind: str, flip: bool, merge: str) -> nn.Module:
    if kind == DeepLabV3Plus.KIND:
        return SegmenterExport(model, flip, merge).eval()
    return ClassifierExport(model, flip).eval()


def export(wrapper: nn.Module, fmt: Format, path: Path, metadata: dict[str, Any]) -> Exported:
    """Write `wrapper` as a TorchScript or ONNX file at `path` (atomically), then check it."""
    text = json.dumps(metadata)
    example = _images(TRACE_SIZE, seed=0)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracers' deprecation notes and shape warnings: the check below is the test.
        warnings.simplefilter("ignore")
        data = (
            _torchscript(wrapper, example, text)
            if fmt == "torchscript"
            else _onnx(wrapper, example, text, tuple(outputs_of(metadata["kind"])))
        )
    checked = _check(wrapper, fmt, data, path)  # before the file exists: never a bad one
    atomic_write_bytes(path, data)
    return Exported(path, fmt, metadata, checked)


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=generator).float()


def _torchscript(wrapper: nn.Module, example: torch.Tensor, text: str) -> bytes:
    traced = torch.jit.trace(wrapper, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_KEY: text})
    return buffer.getvalue()


def _onnx(wrapper: nn.Module, example: torch.Tensor, text: str, names: tuple[str, ...]) -> bytes:
    onnx = _require("onnx")
    buffer = io.BytesIO()
    spatial = {0: "batch", 2: "height", 3: "width"}
    dynamic = {"image": spatial, names[0]: spatial, names[1]: spatial}
    if names[0] == "scores":
        dynamic[names[0]] = {0: "batch"}
    else:
        dynamic[names[1]] = {0: "batch", 1: "height", 2: "width"}
    # The TorchScript-based exporter: torch.export's needs onnxscript, one more dependency.
    torch.onnx.export(
        wrapper, (example,), buffer, dynamo=False, input_names=["image"],
        output_names=list(names), dynamic_axes=dynamic, opset_version=ONNX_OPSET,
    )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _check(wrapper: nn.Module, fmt: Format, data: bytes, path: Path) -> str:
    """The file's outputs at another size and batch against the wrapper's."""
    images = _images(CHECK_SIZE, seed=1)
    with torch.no_grad():
        expected = [t.numpy() for t in wrapper(images)]
    if fmt == "torchscript":
        with torch.no_grad():
            got = [t.numpy() for t in torch.jit.load(io.BytesIO(data))(images)]
    else:
        try:
            import onnxruntime
        except ImportError:
            return f"not run (onnxruntime is not installed: {EXPORT_HINT})"
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": images.numpy()})
    size = "x".join(map(str, CHECK_SIZE))
    first = np.asarray(got[0])
    same_shape = first.shape == expected[0].shape
    difference = float(np.abs(first - expected[0]).max()) if same_shape else float("inf")
    if difference > CHECK_TOLERANCE:
        raise WsssError(
            f"{path}: the exported model differs from the network at input {size} (output "
            f"shape {first.shape}, max difference {difference:.2g}); nothing was written"
        )
    return f"input {size}: max difference {difference:.1e} from the network in wsss"


def _require(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise WsssError(f"--format onnx needs the {name} package: {EXPORT_HINT}") from None

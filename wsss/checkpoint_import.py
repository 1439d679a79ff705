"""Checkpoints of the official Puzzle-CAM code as wsss checkpoints (`wsss import-checkpoint`).

The reference (github.com/shjo-april/PuzzleCAM) saves a model's `state_dict` (under
DataParallel every name starts with `module.`). Its names map onto wsss's by prefix
(`PREFIXES`; docs/parity.md, "Key maps", lists them): the ResNet under `model.` is wsss's
`backbone.`, and the same tensors appear again under the aliases `stage1..5` (the reference's
stages are views of the same ResNet); the heads map part by part.

The import is strict: every tensor of the file must have a wsss name, every name the
reference gives a tensor of the wsss model must be in the file, shapes must agree, and the
two names of one tensor must hold equal values; anything else is a one-line error naming the
key. Only BatchNorm's `num_batches_tracked` may be absent (older torch files lack it).

The wsss model is built with the reference's architecture: ResNet layer4 at stride 1 without
dilation (`dilate=False`, issue #25 row 1) and, for DeepLabv3+, `align_corners=True` and the
file's head normalisation, GroupNorm (the reference's default) or BatchNorm (row 8); the
AffinityNet as wsss's `head="reference"` (row 7), whose backbone is also named
`backbone.{0..4}` and whose branches are also named `edge_layers.{0..5}`. The backbone
(ResNet-50 or -101), the number of classes and the head's normalisation are read off the
tensors.

The reference's training and random-walk scripts build the AffinityNet with its walk's pair
index, whose buffers `path_indices_<n>` are saved with the weights: they are not weights
(make-rw computes its own pairs), and the import skips them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsss.engine.checkpoint import save_checkpoint
from wsss.errors import WsssError, file_error
from wsss.models import CheckpointModel
from wsss.models.affinity import AffinityNet
from wsss.models.backbone import read_weights_file
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus
from wsss.resume import file_sha256

SOURCES = ("puzzlecam",)
KINDS = ("classifier", "deeplab", "affinity")
REPOSITORY = "github.com/shjo-april/PuzzleCAM"
PARALLEL_PREFIX = "module."

# (reference prefix, wsss prefix), the primary reference name of a tensor first.
_BACKBONE = (
    ("model.", "backbone."),
    ("stage1.0.", "backbone.conv1."),
    ("stage1.1.", "backbone.bn1."),
    *((f"stage{i + 2}.0.", f"backbone.layer{i + 1}.") for i in range(4)),
)
_ASPP = tuple(
    pair
    for i in range(4)
    for pair in (
        (f"aspp.aspp{i + 1}.atrous_conv.", f"aspp.convs.{i}.0."),
        (f"aspp.aspp{i + 1}.bn.", f"aspp.convs.{i}.1."),
    )
)
PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "classifier": (*_BACKBONE, ("classifier.", "classifier.")),
    "deeplab": (
        *_BACKBONE,
        *_ASPP,
        ("aspp.global_avg_pool.1.", "aspp.convs.4.1."),  # the image-pooling branch's conv
        ("aspp.global_avg_pool.2.", "aspp.convs.4.2."),  # and its normalisation
        ("aspp.conv1.", "aspp.project.0."),
        ("aspp.bn1.", "aspp.project.1."),
        ("decoder.conv1.", "low_level.0."),
        ("decoder.bn1.", "low_level.1."),
        *((f"decoder.classifier.{i}.", f"decoder.{i}.") for i in (0, 1, 4, 5)),
        ("decoder.classifier.8.", "classifier."),
    ),
    "affinity": (
        *_BACKBONE,
        ("backbone.0.0.", "backbone.conv1."),  # backbone: a ModuleList of stage1..5
        ("backbone.0.1.", "backbone.bn1."),
        *((f"backbone.{i + 1}.0.", f"backbone.layer{i + 1}.") for i in range(4)),
        ("fc_edge1.", "stem."),
        *((f"fc_edge{i + 2}.", f"levels.{i}.") for i in range(4)),
        ("fc_edge6.", "boundary."),
        ("edge_layers.0.", "stem."),  # edge_layers: a ModuleList of fc_edge1..6
        *((f"edge_layers.{i + 1}.", f"levels.{i}.") for i in range(4)),
        ("edge_layers.5.", "boundary."),
    ),
}
# The reference AffinityNet's walk index (PathIndex), saved with its weights; not weights.
_PATH_INDEX = re.compile(r"path_indices_\d+")
_MODELS: dict[str, type[CheckpointModel]] = {
    "classifier": CamClassifier,
    "deeplab": DeepLabV3Plus,
    "affinity": AffinityNet,
}
# ResNet depth by the number of blocks in layer3.
_RESNET_BY_LAYER3 = {6: "resnet50", 23: "resnet101"}


def wsss_key(key: str, kind: str) -> str | None:
    """wsss's name of a reference state_dict key (`module.` already stripped), or None."""
    for theirs, ours in PREFIXES[kind]:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return None


def reference_keys(key: str, kind: str) -> list[str]:
    """Every name of a wsss state_dict key in the reference's state_dict, the primary first
    (a backbone tensor has two: `model.` and its `stage` alias)."""
    return [theirs + key[len(ours) :] for theirs, ours in PREFIXES[kind] if key.startswith(ours)]


def reference_key(key: str, kind: str) -> str:
    """The reference's (primary) name of a wsss state_dict key."""
    return next(iter(reference_keys(key, kind)), key)


@dataclass(frozen=True)
class Imported:
    """What `import_checkpoint` wrote."""

    kind: str  # the reference's kind (classifier | deeplab | affinity)
    model: CheckpointModel
    reference_keys: int
    classes: tuple[str, ...]
    out: Path

    @property
    def tensors(self) -> int:
        return len(self.model.state_dict())


def import_checkpoint(
    source: str, kind: str, path: Path, out: Path, classes: tuple[str, ...]
) -> Imported:
    """Read the reference's `kind` state_dict at `path`, write it to `out` as a wsss
    checkpoint of the model with the reference's architecture (the module's docstring)."""
    if source not in SOURCES:
        raise WsssError(f"--from must be one of {'|'.join(SOURCES)}, got '{source}'")
    if kind not in KINDS:
        raise WsssError(f"KIND must be one of {'|'.join(KINDS)}, got '{kind}'")
    if not Path(path).is_file():
        raise file_error(path, "checkpoint file not found")
    state = read_weights_file(path)
    model = reference_model(state, kind, str(path), len(classes))
    save_checkpoint(
        out,
        model.KIND,
        model_config=model.config(),
        classes=list(classes),
        model=model.state_dict(),
        imported={
            "from": source,
            "repository": REPOSITORY,
            "kind": kind,
            "file": str(path),
            "sha256": file_sha256(path),
        },
    )
    return Imported(kind, model, len(state), classes, Path(out))


def reference_model(
    state: Mapping[str, Tensor], kind: str, source: str, num_classes: int | None = None
) -> CheckpointModel:
    """The wsss model holding the reference's `kind` state_dict (strict, see the module's
    docstring); `num_classes`: the foreground classes it must have (None: any)."""
    mapped = _mapped(state, kind, source)
    model = _build(mapped, kind, source, num_classes)
    expected = model.state_dict()
    present = {k[len(PARALLEL_PREFIX) :] if k.startswith(PARALLEL_PREFIX) else k for k in state}
    missing = [
        name
        for key in expected
        if not key.endswith("num_batches_tracked")
        for name in reference_keys(key, kind)
        if name not in present
    ]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise file_error(source, f"missing key {missing[0]}{more}")
    for key, value in mapped.items():
        if key not in expected:
            raise file_error(
                source, f"extra key {reference_key(key, kind)}: the {model.NAME} has no {key}"
            )
        if value.shape != expected[key].shape:
            raise file_error(
                source,
                f"key {reference_key(key, kind)} has shape {tuple(value.shape)}, the "
                f"{model.NAME} expects {tuple(expected[key].shape)}",
            )
    model.load_state_dict({**expected, **mapped}, strict=True)
    return model.eval()


def _mapped(state: Mapping[str, Tensor], kind: str, source: str) -> dict[str, Tensor]:
    """The file's tensors under their wsss names; an alias must equal its first name."""
    mapped: dict[str, Tensor] = {}
    first: dict[str, str] = {}
    for key, value in state.items():
        name = key[len(PARALLEL_PREFIX) :] if key.startswith(PARALLEL_PREFIX) else key
        if kind == "affinity" and _PATH_INDEX.fullmatch(name):
            continue
        ours = wsss_key(name, kind)
        if ours is None:
            raise file_error(source, f"extra key {key}: not a tensor of the reference's {kind}")
        if ours in mapped:
            if not torch.equal(mapped[ours], value):
                raise file_error(
                    source, f"{key} and {first[ours]} differ: they name one tensor ({ours})"
                )
            continue
        mapped[ours], first[ours] = value, key
    return mapped


def _build(
    mapped: Mapping[str, Tensor], kind: str, source: str, num_classes: int | None
) -> CheckpointModel:
    if any(".radix" in k or ".rsoftmax" in k or ".conv2.conv." in k for k in mapped):
        raise file_error(source, "a ResNeSt backbone: only the reference's ResNet-50/101 import")
    blocks = {k.split(".")[2] for k in mapped if k.startswith("backbone.layer3.")}
    backbone = _RESNET_BY_LAYER3.get(len(blocks))
    if backbone is None:
        raise file_error(
            source, f"a backbone with {len(blocks)} blocks in layer3: not a ResNet-50 or -101"
        )
    config: dict[str, Any] = {"backbone": backbone, "dilate": False}
    if kind == "affinity":
        config["head"] = "reference"  # the affinity net has no classes to check
    else:
        head = mapped.get("classifier.weight")
        if head is None:
            raise file_error(source, f"missing key {reference_key('classifier.weight', kind)}")
        outputs = config["num_classes"] = int(head.shape[0])
        foreground = outputs
        if kind == "deeplab":
            foreground = outputs - 1  # DeepLab's outputs count background
            config["align_corners"] = True
            config["head_norm"] = "bn" if "aspp.convs.0.1.running_mean" in mapped else "gn"
        if num_classes is not None and foreground != num_classes:
            raise file_error(
                source,
                f"the file's {kind} has {foreground} foreground classes, the class list "
                f"{num_classes} (--class-list)",
            )
    torch.manual_seed(0)  # the initial values are all replaced; fix them anyway
    return _MODELS[kind](**config)

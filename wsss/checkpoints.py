"""Models from checkpoints: a finished model for inference, or a train-cam `--init`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from wsss.amp import AMP_DEFAULT
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import check_classes, load_checkpoint
from wsss.engine.device import resolve_device
from wsss.errors import WsssError, file_error
from wsss.inference import Predictor
from wsss.models.classifier import CamClassifier
from wsss.models.registry import model_class
from wsss.resume import file_sha256
from wsss.torchrun import env_info


def weights_error(path: str | Path, problem: str, exc: Exception) -> WsssError:
    """`problem: reason` in one line (torch's own message for a state dict is pages long)."""
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
    return file_error(path, f"{problem}: {reason}")


def load_model(
    path: str | Path, kind: str | Sequence[str], classes: tuple[str, ...] | None
) -> tuple[nn.Module, dict[str, Any]]:
    """Model of a checkpoint of `kind` (or of one of several kinds), checked against the
    dataset's class list (None: the model's own classes are the ones used)."""
    checkpoint = load_checkpoint(path, kind if isinstance(kind, str) else tuple(kind))
    if classes is not None:
        check_classes(path, checkpoint, classes)
    try:
        model = model_class(checkpoint["kind"]).from_config(checkpoint["model_config"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise weights_error(path, "weights do not fit the model it describes", exc) from None
    return model, checkpoint


class ModelStageConfig(Protocol):
    """What every per-image stage that runs a model is given."""

    checkpoint: Path
    data: Path
    split: str
    device: str
    amp: str
    class_list: Path | None


def open_model_stage(
    config: ModelStageConfig, kind: str
) -> tuple[VocDataset, list[str], Predictor, dict[str, Any]]:
    """The dataset, the split's ids, the model ready on its device, and the manifest entries
    the stage's outputs depend on so far (the checkpoint, its fingerprint, the architecture,
    the data)."""
    voc = VocDataset.open(config.data, config.class_list)
    ids = voc.split_ids(config.split)
    predictor, _, params = open_model(
        config.checkpoint, kind, config.device, voc.classes, config.amp
    )
    return voc, ids, predictor, params | {"data": str(config.data), "split": config.split}


def open_model(
    path: Path,
    kind: str,
    device: str,
    classes: tuple[str, ...] | None = None,
    amp: str = AMP_DEFAULT,
) -> tuple[Predictor, dict[str, Any], dict[str, Any]]:
    """The model of a checkpoint ready on its device (this process's GPU under torchrun) in
    the precision `amp` says, the checkpoint, and the manifest entries that name it."""
    model, checkpoint = load_model(path, kind, classes)
    predictor = Predictor.prepare(model, resolve_device(device, env_info().local_rank, amp))
    params = {
        "checkpoint": str(path),
        "checkpoint_sha256": file_sha256(path),
        "model_config": checkpoint.get("model_config"),
    }
    return predictor, checkpoint, params


def load_init_checkpoint(
    path: Path, backbone: str, classes: tuple[str, ...], dilate: bool = True
) -> dict[str, Any]:
    """A train-cam checkpoint given as `--init` (train-cam, train-aff), checked against this
    run's classes and backbone (its name and whether it is dilated: the same weights, another
    network)."""
    checkpoint = load_checkpoint(path, CamClassifier.KIND)
    check_classes(path, checkpoint, classes)
    config = checkpoint.get("model_config", {})
    saved = config.get("backbone")
    if saved != backbone:
        raise file_error(path, f"--init checkpoint has backbone {saved}, this run {backbone}")
    if config.get("dilate", True) != dilate:
        said = {True: "dilated", False: "undilated"}
        raise file_error(
            path,
            f"--init checkpoint's backbone is {said[bool(config.get('dilate', True))]}, this "
            f"run's is {said[dilate]} (--backbone-dilation)",
        )
    return checkpoint


class HasBackbone(Protocol):
    backbone: nn.Module
    backbone_name: str

    def config(self) -> dict[str, Any]: ...


def load_cam_backbone(model: HasBackbone, path: Path, classes: tuple[str, ...]) -> None:
    """The backbone weights (and BatchNorm statistics) of a train-cam checkpoint, for a
    network built on the same backbone (train-aff and train-seg `--init`)."""
    dilate = model.config().get("dilate", True)
    checkpoint = load_init_checkpoint(path, model.backbone_name, classes, dilate)
    prefix = "backbone."
    state = {
        key[len(prefix) :]: value
        for key, value in checkpoint.get("model", {}).items()
        if key.startswith(prefix)
    }
    try:
        model.backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise weights_error(path, "--init backbone weights do not fit", exc) from None

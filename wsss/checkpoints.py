"""Models from checkpoints: a finished model for inference, or a train-cam `--init`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import nn

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
    path: str | Path, kind: str, classes: tuple[str, ...]
) -> tuple[nn.Module, dict[str, Any]]:
    """Model of a checkpoint of `kind`, checked against the dataset's class list."""
    checkpoint = load_checkpoint(path, kind)
    check_classes(path, checkpoint, classes)
    try:
        model = model_class(kind).from_config(checkpoint["model_config"])
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
    model, checkpoint = load_model(config.checkpoint, kind, voc.classes)
    device = resolve_device(config.device, env_info().local_rank, config.amp)
    predictor = Predictor.prepare(model, device)
    params = {
        "checkpoint": str(config.checkpoint),
        "checkpoint_sha256": file_sha256(config.checkpoint),
        "model_config": checkpoint.get("model_config"),
        "data": str(config.data),
        "split": config.split,
    }
    return voc, ids, predictor, params


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

"""Models from checkpoints: a finished model for inference, or a train-cam `--init`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

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


def load_stage_model(
    path: Path, kind: str, classes: tuple[str, ...], device: str
) -> tuple[Predictor, dict[str, Any]]:
    """A per-image stage's model ready on its device, and what the stage's manifest records of
    it (the file, its fingerprint and the architecture)."""
    model, checkpoint = load_model(path, kind, classes)
    predictor = Predictor.prepare(model, resolve_device(device, env_info().local_rank))
    record = {
        "checkpoint": str(path),
        "checkpoint_sha256": file_sha256(path),
        "model_config": checkpoint.get("model_config"),
    }
    return predictor, record


def load_init_checkpoint(path: Path, backbone: str, classes: tuple[str, ...]) -> dict[str, Any]:
    """A train-cam checkpoint given as `--init` (train-cam, train-aff), checked against this
    run's classes and backbone."""
    checkpoint = load_checkpoint(path, CamClassifier.KIND)
    check_classes(path, checkpoint, classes)
    saved = checkpoint.get("model_config", {}).get("backbone")
    if saved != backbone:
        raise file_error(path, f"--init checkpoint has backbone {saved}, this run {backbone}")
    return checkpoint

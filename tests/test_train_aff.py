"""`wsss train-aff` on a tiny dataset: the loss falls, --init, resume, and its checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import CLASSES
from helpers_tinyvoc import Interrupt, save_model, stop_after_epoch

from wsss.engine.checkpoint import load_checkpoint
from wsss.errors import WsssError
from wsss.models.classifier import CamClassifier
from wsss.stages.train_aff import TrainAffConfig
from wsss.stages.train_aff import run as train_aff

# "It learned": the last two epochs' mean loss below this fraction of the first two's.
RATIO = 0.7  # 0.55 measured

pytestmark = pytest.mark.usefixtures("one_thread")


def _aff_config(
    rw_setup: dict[str, Path], tmp_path: Path, out: Path, **changes
) -> tuple[TrainAffConfig, CamClassifier]:
    """A tiny train-aff run initialised from a random classifier checkpoint (returned too)."""
    torch.manual_seed(0)
    cam_model = CamClassifier("resnet18", len(CLASSES))
    cam_checkpoint = save_model(tmp_path / "cls.pt", cam_model, CLASSES)
    config = TrainAffConfig(
        data=rw_setup["root"], labels=rw_setup["labels"], out=out, split="train",
        backbone="resnet18", pretrained="none", init=cam_checkpoint, epochs=6, batch_size=3,
        crop=40, scale_range=(40, 48), optimizer="adamw", lr=1e-3, radius=3, device="cpu",
        loader_workers=0,
    )  # fmt: skip
    return replace(config, **changes), cam_model


def test_train_aff_lowers_the_loss_and_resumes(rw_setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "aff"
    config, cam_model = _aff_config(rw_setup, tmp_path, out)
    result = train_aff(config)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines]
    assert len(lines) == 6 and sum(losses[-2:]) < RATIO * sum(losses[:2])
    assert {"bg", "fg", "neg"} <= set(lines[0])
    final = load_checkpoint(result.final, "affinity")
    assert final["model_config"]["freeze_backbone"] is True
    # the frozen backbone is the --init classifier's
    backbone = {k: v for k, v in final["model"].items() if k.startswith("backbone.")}
    torch.testing.assert_close(backbone["backbone.conv1.weight"], cam_model.backbone.conv1.weight)
    # resuming a finished run changes nothing; resuming with another radius is refused
    again = train_aff(replace(config, resume=True))
    assert again.metrics["loss"] == lines[-1]["loss"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6
    with pytest.raises(WsssError, match="radius"):
        train_aff(replace(config, resume=True, radius=4))


def test_train_aff_resumed_mid_run_ends_with_the_uninterrupted_weights(
    rw_setup: dict[str, Path], tmp_path: Path
) -> None:
    straight, _ = _aff_config(rw_setup, tmp_path, tmp_path / "a", epochs=3)
    stopped, _ = _aff_config(rw_setup, tmp_path, tmp_path / "b", epochs=3)
    train_aff(straight)
    with pytest.raises(Interrupt):
        train_aff(stopped, on_epoch_end=stop_after_epoch(2))
    assert load_checkpoint(tmp_path / "b" / "last.pt", "affinity")["epoch"] == 2
    assert not (tmp_path / "b" / "final.pt").exists()
    train_aff(replace(stopped, resume=True))
    a = load_checkpoint(tmp_path / "a" / "final.pt", "affinity")["model"]
    b = load_checkpoint(tmp_path / "b" / "final.pt", "affinity")["model"]
    assert a.keys() == b.keys()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 3


def test_train_aff_needs_labels_and_a_fitting_crop(
    rw_setup: dict[str, Path], tmp_path: Path
) -> None:
    common = dict(data=rw_setup["root"], out=tmp_path / "o", pretrained="none", device="cpu")
    with pytest.raises(WsssError, match="--labels directory not found"):
        train_aff(TrainAffConfig(labels=tmp_path / "missing", **common))
    with pytest.raises(WsssError, match="--crop 16 is too small for --radius 5"):
        train_aff(TrainAffConfig(labels=rw_setup["labels"], crop=16, **common))


# -- make-rw -------------------------------------------------------------------------------------


def test_aff_head_is_recorded_in_the_checkpoint_and_rebuilt(
    rw_setup: dict[str, Path], tmp_path: Path
) -> None:
    """--aff-head reference (row 7) trains the reference's head, and the checkpoint says so:
    make-rw rebuilds it from the model config alone, with its padding to 512."""
    from wsss.checkpoints import load_model
    from wsss.models.affinity import REFERENCE_EDGE_INPUT

    config, _ = _aff_config(rw_setup, tmp_path, tmp_path / "aff", epochs=1, aff_head="reference")
    result = train_aff(config)
    final = load_checkpoint(result.final, "affinity")
    assert final["model_config"]["head"] == "reference"
    model, _ = load_model(result.final, "affinity", CLASSES)
    assert model.edge_input == REFERENCE_EDGE_INPUT
    assert model.boundary.in_channels == 5 * model.level_channels  # the stem's branch too
    assert "stem.0.weight" in final["model"]
    with pytest.raises(WsssError, match="aff_head"):
        train_aff(replace(config, resume=True, aff_head="wsss"))
    with pytest.raises(WsssError, match="--aff-head reference .* timm"):
        train_aff(replace(config, backbone="timm:resnest50d", out=tmp_path / "t"))

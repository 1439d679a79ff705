"""`wsss train-seg`: DeepLab on tiny data, pseudo-label directories, the periodic mIoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_tinyvoc import read_metrics
from torch import nn

from cli.main import main
from wsss.data.palette import IGNORE, save_label_png
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import load_checkpoint
from wsss.errors import WsssError
from wsss.metrics import ConfusionMatrix
from wsss.seg_eval import segmenter_scores
from wsss.stages.train_seg import SegObjective, TrainSegConfig, run

TINY = dict(
    split="train", backbone="resnet18", pretrained="none", crop=32, scale_range=(32, 48),
    batch_size=2, device="cpu", loader_workers=0, lr=0.01,
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_on_pseudo_labels_lowers_the_loss_and_logs_val_miou(
    voc4: Path, tmp_path: Path, all_background_miou
) -> None:
    voc = VocDataset.open(voc4)
    labels = tmp_path / "pseudo"
    for image_id in voc.split_ids("train"):
        save_label_png(labels / f"{image_id}.png", voc.load_mask(image_id))
    out = tmp_path / "run"
    config = TrainSegConfig(
        data=voc4, labels=labels, out=out, epochs=12, eval_split="val", eval_every=1, **TINY
    )
    result = run(config)
    lines = read_metrics(out)
    loss = [line["loss"] for line in lines]
    assert sum(loss[-2:]) < 0.5 * sum(loss[:2])  # 0.22 measured
    # The final model beats predicting background everywhere (30.7 here) by a wide margin;
    # fewer epochs are not enough for BatchNorm's running statistics on 2-image batches.
    assert lines[-1]["eval"]["metric"] > all_background_miou(voc4, "val") + 20.0
    final = load_checkpoint(out / "final.pt", "deeplab")
    assert final["model_config"]["num_classes"] == 3 and final["args"]["labels"] == str(labels)
    assert result.best is not None and result.best_eval["name"] == "val mIoU"


def test_reference_head_options_are_recorded_for_predict(voc4: Path, tmp_path: Path) -> None:
    """--align-corners --head-norm gn (issue #25 row 8) go into the model's config in the
    checkpoint, so predict rebuilds that head; the GroupNorm head trains on 1-image batches."""
    from wsss.checkpoints import load_model

    out = tmp_path / "run"
    settings = {**TINY, "batch_size": 1}
    config = TrainSegConfig(
        data=voc4, out=out, epochs=1, align_corners=True, head_norm="gn", **settings
    )
    run(config)
    final = load_checkpoint(out / "final.pt", "deeplab")
    assert final["model_config"]["align_corners"] is True
    assert final["model_config"]["head_norm"] == "gn"
    model, _ = load_model(out / "final.pt", "deeplab", ("cat", "dog"))
    assert model.align_corners and isinstance(model.decoder[1], nn.GroupNorm)


def test_all_ignore_crop_gives_zero_loss_not_nan() -> None:
    model = nn.Conv2d(3, 3, 1)
    batch = {
        "image": torch.randn(2, 3, 8, 8),
        "mask": torch.full((2, 8, 8), IGNORE, dtype=torch.int64),
    }
    loss = SegObjective(model)(batch, 0.0)["loss"]
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(model.weight.grad).all()
    batch["mask"][0, 0, 0] = 1
    single = SegObjective(model)(batch, 0.0)["loss"]
    logits = model(batch["image"])[0, :, 0, 0]
    assert single.item() == pytest.approx(-logits.log_softmax(0)[1].item(), rel=1e-5)


class Background(nn.Module):
    """Predicts background everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 3, *x.shape[-2:])
        logits[:, 0] = 1.0
        return logits


def test_segmenter_scores_match_the_confusion_matrix(voc4: Path) -> None:
    voc = VocDataset.open(voc4)
    ids = voc.split_ids("val")
    scores = segmenter_scores(Background(), voc, ids, torch.device("cpu"))
    expected = ConfusionMatrix(3)
    for image_id in ids:
        gt = voc.load_mask(image_id)
        expected.update(gt, np.zeros_like(gt))
    assert scores.miou == pytest.approx(expected.compute().miou)
    assert scores.images == len(ids) and scores.class_names[0] == "background"


def test_missing_pseudo_label_is_a_one_line_error(voc4: Path, tmp_path: Path) -> None:
    labels = tmp_path / "pseudo"
    labels.mkdir()
    with pytest.raises(WsssError, match="img_000.png: label of list entry 'img_000' not found"):
        run(TrainSegConfig(data=voc4, labels=labels, out=tmp_path / "run", epochs=1, **TINY))


def test_cli_help_and_bad_batch_size(
    voc4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train-seg", "--help"]) == 0
    assert "--labels" in capsys.readouterr().out
    code = main(
        ["train-seg", "--data", str(voc4), "--out", str(tmp_path / "r"), "--batch-size", "1"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "needs at least 2" in err and len(err.splitlines()) == 1

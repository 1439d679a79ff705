"""`--tensorboard DIR`: the event files, read back with TensorBoard's own reader, hold the
loop's scalars and an evaluation's pictures; without the package, one line naming the extra."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import Interrupt
from helpers_toytask import loop, metrics, task

from cli.main import main
from wsss.engine.tensorboard import TensorBoardLog, tag
from wsss.engine.trainer import EvalResult, fit
from wsss.errors import WsssError

pytestmark = pytest.mark.usefixtures("one_thread")


def read_events(folder: Path):
    """TensorBoard's reader over a run's event files, every event kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


PICTURE = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)


def evaluate(model, device) -> EvalResult:
    return EvalResult("val toy mIoU", 12.5, {"threshold": 0.3}, images={"toy 1": PICTURE})


def test_a_run_writes_its_scalars_and_pictures(tmp_path: Path) -> None:
    board = tmp_path / "tb"
    fit(task(frozen=False, evaluate=evaluate),
        loop(tmp_path / "run", epochs=3, batch_size=4, accumulate=2, tensorboard=board,
             read_every=1))  # fmt: skip
    events = read_events(board)
    tags = events.Tags()
    assert {"train/loss", "train/lr", "epoch/loss", "epoch/lr", "epoch/images_per_s",
            "eval/val_toy_mIoU", "eval/threshold"} <= set(tags["scalars"])  # fmt: skip
    assert tags["images"] == ["eval/toy_1"]

    lines = metrics(tmp_path / "run")
    epoch_loss = events.Scalars("epoch/loss")
    # One point an epoch, at the optimiser step reached (4 steps of 2 micro-batches each).
    assert [e.step for e in epoch_loss] == [4, 8, 12]
    assert [e.value for e in epoch_loss] == pytest.approx([line["loss"] for line in lines])
    assert [e.value for e in events.Scalars("eval/val_toy_mIoU")] == [12.5] * 3
    # The windowed losses: every read, here every micro-batch (two a step).
    assert len(events.Scalars("train/loss")) == 3 * 8
    lrs = [e.value for e in events.Scalars("train/lr")]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.0, abs=1e-9)
    (image,) = events.Images("eval/toy_1")[-1:]
    assert (image.width, image.height) == (6, 4)


def test_a_resumed_run_continues_its_curves(tmp_path: Path) -> None:
    board = tmp_path / "tb"
    killed = task()
    forward, calls = killed.objective.forward, []

    def dies_in_epoch_3(batch, progress):  # after the first of epoch 3's two steps
        calls.append(1)
        if len(calls) == 6:
            raise Interrupt
        return forward(batch, progress)

    killed.objective.forward = dies_in_epoch_3
    with pytest.raises(Interrupt):
        fit(killed, loop(tmp_path / "run", epochs=3, tensorboard=board, read_every=1))
    # TensorBoard reads a folder's event files in name order, and a name starts with the
    # second it was made in (then a per-process counter, which sorts "10" before "9"): a
    # resume comes seconds later in use; here the resumed file must too, or it may be read
    # first and its purge find nothing to purge yet.
    started = int(time.time())
    while int(time.time()) == started:
        time.sleep(0.05)
    fit(task(), loop(tmp_path / "run", epochs=3, tensorboard=board, read_every=1, resume=True))
    events = read_events(board)
    # Step 5, written before the kill, is dropped for the resumed run's own: no point twice.
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events.Scalars("epoch/loss")] == [2, 4, 6]


def test_tags_are_tensorboard_names() -> None:
    assert tag("eval", "val CAM mIoU") == "eval/val_CAM_mIoU"
    assert tag("eval", "cam 2007_000032") == "eval/cam_2007_000032"


@pytest.mark.slow
def test_train_cam_and_train_seg_show_cams_and_predictions(voc4: Path, tmp_path: Path) -> None:
    from wsss.stages import train_cam, train_seg

    common = dict(data=voc4, split="train", backbone="resnet18", pretrained="none", epochs=1,
                  crop=32, scale_range=(32, 40), batch_size=2, device="cpu", loader_workers=0,
                  eval_split="val", eval_every=1)  # fmt: skip
    board = tmp_path / "tb"
    train_cam.run(train_cam.TrainCamConfig(out=tmp_path / "c", tensorboard=board / "cam", **common))
    train_seg.run(train_seg.TrainSegConfig(out=tmp_path / "s", tensorboard=board / "seg", **common))
    val = (voc4 / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    cam, seg = read_events(board / "cam"), read_events(board / "seg")
    assert "eval/val_CAM_mIoU" in cam.Tags()["scalars"] and "eval/val_mIoU" in seg.Tags()["scalars"]
    assert sorted(cam.Tags()["images"]) == [f"eval/cam_{i}" for i in sorted(val)]
    assert sorted(seg.Tags()["images"]) == [f"eval/prediction_{i}" for i in sorted(val)]
    # The segmenter's strip: image, prediction, ground truth, each 40 px wide.
    (strip,) = seg.Images(f"eval/prediction_{val[0]}")
    assert (strip.width, strip.height) == (3 * 40, 40)


def test_without_the_package_one_line_names_the_extra(
    tmp_path: Path, voc4: Path, monkeypatch, capsys
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    args = ["train-cam", "--data", str(voc4), "--split", "train", "--out", str(tmp_path / "run"),
            "--pretrained", "none", "--tensorboard", str(tmp_path / "tb")]  # fmt: skip
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: --tensorboard needs the tensorboard package: pip install "
                     "'wsss[tensorboard]'"]  # fmt: skip
    assert not (tmp_path / "run").exists()
    # The writer's own import, should the package go missing after the check.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(WsssError, match=r"pip install 'wsss\[tensorboard\]'"):
        TensorBoardLog(tmp_path / "tb")

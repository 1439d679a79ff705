"""Gradient accumulation (`--accumulate`): micro-batches that step like the whole batch, the lr
schedule counted in optimiser steps, exact resume, the manifest's record of the split and the
one-line error of a batch that does not split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers_tinyvoc import Interrupt, stop_after_epoch
from helpers_toytask import ANY, final_state, loop, metrics, task

from wsss.engine.trainer import fit
from wsss.errors import WsssError
from wsss.torchrun import per_process_batch


# (images, batch, accumulate): 2 steps of 2 x 4; 2 steps of 2 x 3 (the 5th micro-batch
# dropped as batch 6 drops its short batch); a split smaller than one step (4 + 2 images).
@pytest.mark.parametrize(("n", "batch", "accumulate"), [(16, 8, 2), (16, 6, 2), (6, 8, 2)])
def test_micro_batches_step_like_the_whole_batch_with_frozen_batchnorm(
    tmp_path: Path, n: int, batch: int, accumulate: int
) -> None:
    initial = {k: v.clone() for k, v in task(n).model.state_dict().items()}
    whole = fit(task(n), loop(tmp_path / "whole", batch_size=batch))
    micro = fit(task(n), loop(tmp_path / "micro", batch_size=batch, accumulate=accumulate))

    # The schedule counts optimiser steps: the same steps, the same lr at each.
    assert micro.iterations == whole.iterations == 2 * max(1, n // batch)
    one, two = final_state(tmp_path / "whole"), final_state(tmp_path / "micro")
    assert not torch.equal(one["conv.weight"], initial["conv.weight"])
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    assert torch.equal(two["bn.running_var"], initial["bn.running_var"])  # frozen
    for a, b in zip(metrics(tmp_path / "whole"), metrics(tmp_path / "micro"), strict=True):
        assert (a["iterations"], a["images"], a["lr"]) == (b["iterations"], b["images"], b["lr"])
        if n >= batch:  # (the log averages micro-batches: 4 and 2 images weigh alike)
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)

    manifest = json.loads((tmp_path / "micro" / "manifest.json").read_text())
    assert manifest["effective_batch"] == {
        "processes": 1, "per_process": batch // accumulate, "accumulate": accumulate,
        "total": batch, "sync_bn": False,
    }  # fmt: skip


def test_a_resumed_accumulated_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    # BatchNorm trains here: its statistics are part of what must resume exactly.
    settings = dict(epochs=3, batch_size=8, accumulate=2)
    fit(task(frozen=False), loop(tmp_path / "straight", **settings))
    with pytest.raises(Interrupt):
        fit(task(frozen=False), loop(tmp_path / "cut", **settings),
            on_epoch_end=stop_after_epoch(1))  # fmt: skip
    assert [line["epoch"] for line in metrics(tmp_path / "cut")] == [1]
    fit(task(frozen=False), loop(tmp_path / "cut", resume=True, **settings))

    straight, resumed = final_state(tmp_path / "straight"), final_state(tmp_path / "cut")
    assert [name for name in straight if not torch.equal(straight[name], resumed[name])] == []
    assert metrics(tmp_path / "cut") == [
        {**line, "images_per_s": ANY, "seconds": ANY} for line in metrics(tmp_path / "straight")
    ]
    # Another split of the same batch is another run (BatchNorm sees other micro-batches).
    with pytest.raises(WsssError, match="accumulate"):
        fit(task(frozen=False), loop(tmp_path / "cut", resume=True, epochs=3, accumulate=4))


def test_a_batch_that_does_not_split_names_the_option_that_fits(tmp_path: Path) -> None:
    assert per_process_batch(32, 4, 2) == 4
    with pytest.raises(WsssError, match=r"--batch-size 30 or 33") as error:
        per_process_batch(32, 3)
    assert "\n" not in str(error.value)
    with pytest.raises(WsssError, match=r"use --accumulate 2 or 4, or --batch-size 30 or 36"):
        per_process_batch(32, 2, 3)
    with pytest.raises(WsssError, match=r"--batch-size 8 \(--batch-size is the total"):
        per_process_batch(4, 8)
    with pytest.raises(WsssError, match="--accumulate 2 or 4"):
        fit(task(), loop(tmp_path / "run", accumulate=3))


def test_trainer_options_check_the_split_before_any_work(tmp_path: Path) -> None:
    from wsss.configs.trainers import TrainCamConfig, TrainSegConfig

    common = dict(data=tmp_path, out=tmp_path / "out", pretrained="none", device="cpu")
    with pytest.raises(WsssError, match="--accumulate 2 or 4"):
        TrainCamConfig(batch_size=32, accumulate=3, **common).validate()
    TrainCamConfig(batch_size=32, accumulate=4, **common).validate()
    # DeepLab's BatchNorm head needs 2 images per micro-batch: the fixes are named.
    with pytest.raises(WsssError, match="lower --accumulate, or --head-norm gn"):
        TrainSegConfig(batch_size=8, accumulate=8, **common).validate()

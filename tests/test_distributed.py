"""train-cam and train-seg under `torchrun --nproc_per_node 2` on CPU (gloo).

Both ranks must end with one model (weights and BatchNorm statistics), only rank 0 writes,
and the sharded val mIoU of train-seg must equal a single-process evaluation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers_tinyvoc import make_tiny_voc

from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import load_checkpoint
from wsss.models.deeplab import DeepLabV3Plus
from wsss.seg_eval import segmenter_scores

ROOT = Path(__file__).resolve().parents[1]

# Each rank dumps its model state after every epoch; the runs are the real stages.
WORKER = textwrap.dedent(
    """
    import sys

    import torch

    from wsss.engine.distributed import rank, world_size
    from wsss.stages import train_cam, train_seg

    data, out, dumps = sys.argv[1:4]
    common = dict(
        data=data, split="train", backbone="resnet18", pretrained="none", epochs=1,
        batch_size=4, crop=32, device="cpu", workers=0, eval_split="val",
    )


    def dumper(stage):
        def dump(end):
            state = {k: v.detach().clone() for k, v in end.model.state_dict().items()}
            record = {"world": world_size(), "state": state, "metrics": end.metrics}
            torch.save(record, f"{dumps}/{stage}-rank{rank()}.pt")

        return dump


    train_cam.run(
        train_cam.TrainCamConfig(
            out=f"{out}/cam", scale_range=(32, 40), optimizer="adamw", lr=1e-3, **common
        ),
        on_epoch_end=dumper("cam"),
    )
    train_seg.run(
        train_seg.TrainSegConfig(out=f"{out}/seg", scale_range=(32, 48), lr=0.01, **common),
        on_epoch_end=dumper("seg"),
    )
    """
)


def _dumps(folder: Path, stage: str) -> tuple[dict, dict]:
    load = lambda rank: torch.load(folder / f"{stage}-rank{rank}.pt", weights_only=True)  # noqa: E731
    return load(0), load(1)


@pytest.mark.slow
def test_two_cpu_processes_train_one_model_and_write_once(tmp_path: Path) -> None:
    data = make_tiny_voc(tmp_path / "voc", n=8, size=40)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    command += [str(script), str(data), str(out), str(dumps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    for stage, kind in (("cam", "cam_classifier"), ("seg", "deeplab")):
        rank0, rank1 = _dumps(dumps, stage)
        assert rank0["world"] == rank1["world"] == 2
        # Each rank trained on its own half of the split: equal weights mean synced gradients.
        for name, tensor in rank0["state"].items():
            assert torch.equal(tensor, rank1["state"][name]), f"{stage}: {name}"
        final = load_checkpoint(out / stage / "final.pt", kind)["model"]
        for name, tensor in rank0["state"].items():
            assert torch.equal(final[name], tensor), f"{stage}: {name}"
        # Only rank 0 logs: one line for one epoch, counting both ranks' images.
        lines = (out / stage / "metrics.jsonl").read_text().splitlines()
        (line,) = [json.loads(text) for text in lines]
        assert line["epoch"] == 1 and line["iterations"] == 2 and line["images"] == 8
        assert "eval" in line and (out / stage / "best.pt").is_file()
        assert sorted(p.name for p in (out / stage).iterdir()) == [
            "best.pt", "final.pt", "last.pt", "manifest.json", "metrics.jsonl", "summary.json",
        ]  # fmt: skip

    # The sharded evaluation summed over ranks equals one process scoring every image.
    rank0, rank1 = _dumps(dumps, "seg")
    assert rank0["metrics"]["eval"] == rank1["metrics"]["eval"]
    voc = VocDataset.open(data)
    model = DeepLabV3Plus.from_config(load_checkpoint(out / "seg" / "final.pt")["model_config"])
    model.load_state_dict(rank0["state"])
    scores = segmenter_scores(model.eval(), voc, voc.split_ids("val"), torch.device("cpu"))
    assert rank0["metrics"]["eval"]["metric"] == pytest.approx(scores.miou)

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
        batch_size=4, crop=32, device="cpu", loader_workers=0, eval_split="val",
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


# -- against one process at the same global batch, and a resumed distributed run ---------------

# A toy task without BatchNorm or dropout: two processes at half the batch each must then
# take exactly the steps of one process at the whole batch (DDP averages the gradients).
TOY = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import Dataset

    from wsss.data.transforms import sample_rng
    from wsss.engine.trainer import LoopConfig, TrainTask, fit


    class Data(Dataset):
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 16

        def __getitem__(self, index):
            rng = sample_rng(0, self.epoch, index)
            target = index % 2
            image = torch.from_numpy(rng.normal(0, 1, (3, 6, 6))).float() + (2.0 * target - 1)
            return {"image": image, "target": torch.tensor(target)}


    class Objective(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, batch, progress):
            x = F.relu(self.model[0](batch["image"])).mean(dim=(2, 3))
            loss = F.cross_entropy(self.model[1](x), batch["target"])
            return {"loss": loss}


    def task():
        torch.manual_seed(0)
        model = nn.ModuleList([nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 2)])
        groups = [{"params": list(model.parameters()), "lr_mult": 1.0,
                   "weight_decay_mult": 1.0, "name": "all"}]
        return TrainTask(kind="toy", model=model, objective=Objective(model), dataset=Data(),
                         param_groups=groups, model_config={}, classes=("a", "b"))


    def loop(out, resume=False):
        return LoopConfig(out_dir=Path(out), stage="train-toy", epochs=3, batch_size=4,
                          lr=0.1, weight_decay=1e-4, schedule="poly", seed=1, device="cpu",
                          workers=0, resume=resume, args={"toy": 1}, optimizer="sgd",
                          warmup_epochs=0.0, compile=False, eval_every=1, threads=None,
                          amp="off")


    class Interrupt(Exception):
        pass


    def stop_after_first_epoch(end):
        if end.epoch == 1:
            raise Interrupt


    if __name__ == "__main__":
        out = sys.argv[1]
        fit(task(), loop(f"{out}/straight"))
        try:
            fit(task(), loop(f"{out}/stopped"), on_epoch_end=stop_after_first_epoch)
        except Interrupt:
            pass
        fit(task(), loop(f"{out}/stopped", resume=True))
    """
)


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "final.pt", "toy")["model"]


@pytest.mark.slow
def test_two_processes_step_like_one_at_the_same_global_batch_and_resume_exactly(
    tmp_path: Path,
) -> None:
    import importlib.util

    script = tmp_path / "toy_worker.py"
    script.write_text(TOY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(script), str(tmp_path / "two")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    # The same task in this process: one rank, the whole batch of 4 per step.
    spec = importlib.util.spec_from_file_location("toy_worker", script)
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    fit_one = toy.fit(toy.task(), toy.loop(tmp_path / "one"))
    assert fit_one.iterations == 3 * 4

    one, two = _final_state(tmp_path / "one"), _final_state(tmp_path / "two" / "straight")
    initial = toy.task().model.state_dict()
    assert one.keys() == two.keys()
    for name in one:
        assert not torch.allclose(one[name], initial[name]), f"{name} did not train"
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    lines = [json.loads(t) for t in (tmp_path / "two" / "straight" / "metrics.jsonl").open()]
    assert [line["iterations"] for line in lines] == [4, 4, 4]
    assert [line["images"] for line in lines] == [16, 16, 16]

    # Stopped after epoch 1 and resumed under torchrun: bitwise the uninterrupted run.
    resumed = _final_state(tmp_path / "two" / "stopped")
    assert [name for name in two if not torch.equal(two[name], resumed[name])] == []
    stopped = [json.loads(t) for t in (tmp_path / "two" / "stopped" / "metrics.jsonl").open()]
    assert [line["loss"] for line in stopped] == [line["loss"] for line in lines]


# -- --sync-bn: two processes' BatchNorm over the whole batch -----------------------------------

# BatchNorm in training mode, no dropout: with --sync-bn two processes at 4 images each must
# keep the statistics and take the steps of one process at 8; without it they must not.
SYNC_BN = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import Dataset

    from wsss.data.transforms import sample_rng
    from wsss.engine.device import set_seed
    from wsss.engine.trainer import LoopConfig, TrainTask, fit


    class Data(Dataset):
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 16

        def __getitem__(self, index):
            rng = sample_rng(0, self.epoch, index)
            target = index % 2
            # Each image its own offset: per-process statistics differ from the batch's.
            image = torch.from_numpy(rng.normal(index / 4, 1 + index / 8, (3, 6, 6))).float()
            return {"image": image + (2.0 * target - 1), "target": torch.tensor(target)}


    class Objective(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, batch, progress):
            conv, bn, fc = self.model
            x = F.relu(bn(conv(batch["image"]))).mean(dim=(2, 3))
            return {"loss": F.cross_entropy(fc(x), batch["target"])}


    def task():
        set_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 2))
        groups = [{"params": list(model.parameters()), "name": "all"}]
        return TrainTask(kind="toy", model=model, objective=Objective(model), dataset=Data(),
                         param_groups=groups, model_config={}, classes=("a", "b"))


    def loop(out, sync_bn=False):
        return LoopConfig(out_dir=Path(out), stage="train-toy", epochs=2, batch_size=8,
                          lr=0.1, weight_decay=1e-4, schedule="poly", seed=0, device="cpu",
                          workers=0, resume=False, args={"sync_bn": sync_bn}, optimizer="sgd",
                          warmup_epochs=0.0, compile=False, eval_every=1, threads=1,
                          sync_bn=sync_bn, amp="off")


    if __name__ == "__main__":
        out = sys.argv[1]
        fit(task(), loop(f"{out}/sync", sync_bn=True))
        fit(task(), loop(f"{out}/local"))
    """
)


@pytest.mark.slow
def test_sync_bn_two_processes_at_4_keep_the_statistics_and_weights_of_one_at_8(
    tmp_path: Path,
) -> None:
    import importlib.util

    script = tmp_path / "sync_worker.py"
    script.write_text(SYNC_BN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(script), str(tmp_path / "two")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    spec = importlib.util.spec_from_file_location("sync_worker", script)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker.fit(worker.task(), worker.loop(tmp_path / "one"))

    one = _final_state(tmp_path / "one")
    synced = _final_state(tmp_path / "two" / "sync")
    local = _final_state(tmp_path / "two" / "local")
    initial = worker.task().model.state_dict()
    for name in one:
        if name.endswith("num_batches_tracked"):
            assert synced[name] == one[name] == 4  # 2 epochs x 2 steps
            continue
        assert not torch.allclose(one[name], initial[name]), f"{name} did not change"
        torch.testing.assert_close(synced[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    # Without --sync-bn each process normalises its own 4 images: other statistics.
    assert not torch.allclose(local["1.running_var"], one["1.running_var"], rtol=1e-3)
    manifest = json.loads((tmp_path / "two" / "sync" / "manifest.json").read_text())
    assert manifest["effective_batch"] == {
        "processes": 2, "per_process": 4, "accumulate": 1, "total": 8, "sync_bn": True,
    }  # fmt: skip

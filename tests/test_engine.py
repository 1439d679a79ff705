"""The training engine: optimiser groups, lr schedules, the loop, exact resume, NaN stop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers_tinyvoc import Interrupt, stop_after_epoch
from torch import nn
from torch.utils.data import Dataset

from wsss.data.transforms import sample_rng
from wsss.engine.checkpoint import load_checkpoint
from wsss.engine.device import resolve_device, restore_rng_state, rng_state, set_seed
from wsss.engine.optim import LrSchedule, build_optimizer
from wsss.engine.trainer import EvalResult, LoopConfig, TrainTask, fit
from wsss.errors import WsssError

# -- a toy task: two classes told apart by the mean colour, with noise per (seed, epoch, index)


class ToyData(Dataset):
    def __init__(self, n: int = 16, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = sample_rng(self.seed, self.epoch, index)
        target = index % 2
        image = torch.from_numpy(rng.normal(0, 1, (3, 8, 8))).float() + (2.0 * target - 1.0)
        return {"image": image, "target": torch.tensor(target), "epoch": torch.tensor(self.epoch)}


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)  # consumes the global RNG: resume must restore it
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return self.fc(self.drop(x))

    def param_groups(self) -> list[dict]:
        weights = [self.conv.weight, self.bn.weight, self.fc.weight]
        biases = [self.conv.bias, self.bn.bias, self.fc.bias]
        return [
            {"params": weights, "lr_mult": 1.0, "weight_decay_mult": 1.0, "name": "w"},
            {"params": biases, "lr_mult": 2.0, "weight_decay_mult": 0.0, "name": "b"},
        ]


class ToyObjective(nn.Module):
    def __init__(self, model: nn.Module, nan_at: int | None = None) -> None:
        super().__init__()
        self.model, self.nan_at, self.calls = model, nan_at, 0
        self.epochs_seen: list[int] = []

    def forward(self, batch: dict[str, torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        self.calls += 1
        self.epochs_seen.extend(batch["epoch"].tolist())
        loss = F.cross_entropy(self.model(batch["image"]), batch["target"])
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "ce": loss.detach(), "progress": torch.tensor(progress)}


def toy_task(seed: int = 0, nan_at: int | None = None, evaluate=None) -> TrainTask:
    set_seed(seed)
    model = ToyNet()
    return TrainTask(
        kind="toy",
        model=model,
        objective=ToyObjective(model, nan_at),
        dataset=ToyData(seed=seed),
        param_groups=model.param_groups(),
        model_config={"name": "toy"},
        classes=("a", "b"),
        evaluate=evaluate,
    )


def loop(out: Path, **overrides) -> LoopConfig:
    settings = dict(
        out_dir=out, stage="train-toy", epochs=2, batch_size=4, lr=0.05, weight_decay=1e-4,
        device="cpu", workers=0, args={"lr": 0.05, "epochs": 2}, optimizer="sgd",
        schedule="poly", warmup_epochs=0.0, seed=0, resume=False, compile=False, eval_every=1,
        threads=None,
    )  # fmt: skip
    settings.update(overrides)
    return LoopConfig(**settings)


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# -- optimiser and schedule -------------------------------------------------------------------


def test_optimizer_applies_group_multipliers() -> None:
    params = [nn.Parameter(torch.zeros(2)) for _ in range(5)]
    params[4].requires_grad_(False)  # frozen: left out
    groups = [
        {"params": [params[0]], "lr_mult": 1, "weight_decay_mult": 1, "name": "pre_w"},
        {"params": [params[1]], "lr_mult": 2, "weight_decay_mult": 0, "name": "pre_b"},
        {"params": [params[2]], "lr_mult": 10, "weight_decay_mult": 1, "name": "new_w"},
        {"params": [params[3]], "lr_mult": 20, "weight_decay_mult": 0, "name": "new_b"},
        {"params": [params[4]], "lr_mult": 1, "weight_decay_mult": 1, "name": "frozen"},
    ]
    sgd = build_optimizer(groups, "sgd", lr=0.1, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD)
    got = [(g["name"], g["lr"], g["weight_decay"]) for g in sgd.param_groups]
    assert got == [
        ("pre_w", 0.1, 1e-4),
        ("pre_b", 0.2, 0.0),
        ("new_w", 1.0, 1e-4),
        ("new_b", 2.0, 0.0),
    ]
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in sgd.param_groups)
    adamw = build_optimizer(groups, "adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(adamw, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.05, 0.0, 0.05, 0.0]
    with pytest.raises(WsssError, match="--optimizer"):
        build_optimizer(groups, "lamb", lr=1.0)


def _schedule(kind: str, total: int = 100, warmup: int = 0) -> LrSchedule:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    return LrSchedule(optimizer, total, kind, warmup)


def test_poly_and_cosine_values_at_known_steps() -> None:
    poly = _schedule("poly")
    assert poly.factor(0) == 1.0
    assert poly.factor(50) == pytest.approx(0.5**0.9)
    assert poly.factor(99) == pytest.approx(0.01**0.9)
    cosine = _schedule("cosine")
    assert cosine.factor(0) == 1.0
    assert cosine.factor(50) == pytest.approx(0.5)
    assert cosine.factor(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    warm = _schedule("cosine", total=110, warmup=10)
    assert [warm.factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert warm.factor(60) == pytest.approx(0.5)  # half-way through the decay part
    # The optimiser follows the schedule step by step.
    assert warm.lr == pytest.approx(0.01)
    for _ in range(5):
        warm.step()
    assert warm.lr == pytest.approx(0.06)


def test_schedule_state_round_trip() -> None:
    first = _schedule("poly", total=40, warmup=4)
    for _ in range(13):
        first.step()
    second = _schedule("poly", total=40, warmup=4)
    second.load_state_dict(first.state_dict())
    assert second.step_count == 13 and second.lr == first.lr
    first.step(), second.step()
    assert second.lr == first.lr
    with pytest.raises(WsssError, match="did the split or batch size change"):
        _schedule("poly", total=41).load_state_dict(first.state_dict())


def test_rng_state_round_trip() -> None:
    import random

    import numpy as np

    set_seed(3)
    state = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(99)
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_cuda_request_without_gpu_is_a_user_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(WsssError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


# -- the loop -----------------------------------------------------------------------------------


def test_fit_learns_and_writes_metrics_and_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "run"
    task = toy_task()
    result = fit(task, loop(out, epochs=6))
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]
    assert {"loss", "ce", "progress", "lr", "images_per_s", "seconds"} <= set(metrics[0])
    assert metrics[0]["iterations"] == 4 and metrics[0]["progress"] == pytest.approx(1.5 / 24)
    last = load_checkpoint(out / "last.pt", "toy")
    assert last["epoch"] == 6 and last["schedule"]["step"] == 24
    assert {"optimizer", "scaler", "rng", "args", "classes", "model_config", "versions"} <= set(
        last
    )
    final = load_checkpoint(out / "final.pt", "toy")
    for name, tensor in task.model.state_dict().items():
        assert torch.equal(final["model"][name], tensor)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 6 and summary["best"] is None
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert result.best is None and not (out / "best.pt").exists()


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    straight = toy_task()
    fit(straight, loop(tmp_path / "a", epochs=3))
    with pytest.raises(Interrupt):
        fit(toy_task(), loop(tmp_path / "b", epochs=3), on_epoch_end=stop_after_epoch(1))
    assert len(read_metrics(tmp_path / "b")) == 1
    # A kill after the metrics line but before the checkpoint leaves a line to drop, maybe torn.
    with open(tmp_path / "b" / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "loss": 9.0}\n{"epoch": 3, "lo')
    resumed = toy_task(seed=0)
    fit(resumed, loop(tmp_path / "b", epochs=3, resume=True))
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [m["loss"] for m in a] == [m["loss"] for m in b]


def test_resume_refuses_changed_options_and_fresh_runs_refuse_old_dirs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(toy_task(), loop(out, epochs=1))
    with pytest.raises(WsssError, match="pass --resume"):
        fit(toy_task(), loop(out, epochs=1))
    with pytest.raises(WsssError, match="saved with lr=0.05, this run has 0.1"):
        fit(toy_task(), loop(out, epochs=1, resume=True, args={"lr": 0.1, "epochs": 2}))
    # A finished run resumes as a no-op that reports the same outcome.
    before = (out / "final.pt").stat().st_mtime_ns
    result = fit(toy_task(), loop(out, epochs=1, resume=True, workers=1))
    assert result.metrics["epoch"] == 1 and (out / "final.pt").stat().st_mtime_ns == before


def test_nan_loss_stops_with_epoch_and_iteration(tmp_path: Path) -> None:
    # Losses are read every `read_every` steps and at the epoch's end: the error names the
    # iterations between two reads.
    with pytest.raises(WsssError, match=r"loss is nan at epoch 2, iterations 1-4/4 \("):
        fit(toy_task(nan_at=6), loop(tmp_path / "run", epochs=3))
    assert load_checkpoint(tmp_path / "run" / "last.pt", "toy")["epoch"] == 1
    with pytest.raises(WsssError, match=r"loss is nan at epoch 2, iteration 2/4 \("):
        fit(toy_task(nan_at=6), loop(tmp_path / "one", epochs=3, read_every=1))
    with pytest.raises(WsssError, match=r"loss is nan at epoch 2, iterations 3-4/4 \("):
        fit(toy_task(nan_at=7), loop(tmp_path / "two", epochs=3, read_every=2))


class QuietObjective(nn.Module):
    """The toy loss and a detached term, with nothing read on the host."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        loss = F.cross_entropy(self.model(batch["image"]), batch["target"])
        return {"loss": loss, "ce": loss.detach(), "progress": progress}


def test_loss_values_reach_the_host_every_n_steps_not_every_step(tmp_path, monkeypatch) -> None:
    """A read of a tensor's values waits for the device to finish every queued step: a GPU
    idles while the host catches up. The loop reads the losses every `read_every` steps."""
    reads = {"count": 0}
    for name in ("tolist", "item", "cpu", "numpy", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads["count"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    counts: list[int] = []
    task = toy_task()
    task.objective = QuietObjective(task.model)
    task.dataset = ToyData(n=64)
    steps, every, epochs = 64, 10, 3
    fit(
        task,
        loop(tmp_path / "run", epochs=epochs, batch_size=1, read_every=every),
        on_epoch_end=lambda end: counts.append(reads["count"]),
    )
    per_epoch = [b - a for a, b in zip([0, *counts], counts, strict=False)]
    # ceil(64 / 10) reads of the losses, plus the sampler's shuffle and the checkpoint.
    assert max(per_epoch) <= math.ceil(steps / every) + 4, per_epoch
    metrics = read_metrics(tmp_path / "run")
    assert metrics[0]["iterations"] == steps and math.isfinite(metrics[-1]["loss"])
    assert metrics[0]["progress"] == pytest.approx((steps - 1) / 2 / (epochs * steps))


def test_best_checkpoint_follows_the_eval_metric_and_final_is_the_last_epoch(
    tmp_path: Path,
) -> None:
    scores = iter([10.0, 30.0, 20.0])

    def evaluate(model: nn.Module, device: torch.device) -> EvalResult:
        assert not model.training
        return EvalResult("val mIoU", next(scores), {"threshold": 0.3})

    out = tmp_path / "run"
    result = fit(toy_task(evaluate=evaluate), loop(out, epochs=3))
    assert result.best_eval == {"epoch": 2, "name": "val mIoU", "metric": 30.0}
    assert load_checkpoint(out / "best.pt", "toy")["epoch"] == 2
    assert load_checkpoint(out / "final.pt", "toy")["epoch"] == 3
    assert [m["eval"]["metric"] for m in read_metrics(out)] == [10.0, 30.0, 20.0]
    labels = dict(result.summary_rows())
    assert labels["best val mIoU (best.pt)"] == "30.00 at epoch 2"


def test_persistent_workers_see_each_epoch(tmp_path: Path) -> None:
    """Augmentation must change with the epoch even though workers keep their dataset copy."""
    task = toy_task()
    fit(task, loop(tmp_path / "run", epochs=2, workers=2))
    seen = task.objective.epochs_seen
    assert sorted(set(seen)) == [0, 1] and seen.count(0) == seen.count(1) == 16


def test_loader_workers_default_to_none_on_the_cpu_and_some_for_a_gpu(monkeypatch):
    from wsss.data import loader as device

    assert device.default_loader_workers("cpu") == 0
    assert device.default_loader_workers(torch.device("cpu")) == 0
    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: False)
    assert device.default_loader_workers("auto") == 0
    monkeypatch.setattr(device.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device.os, "cpu_count", lambda: 16)
    assert device.default_loader_workers("auto") == 4
    assert device.default_loader_workers(torch.device("cuda", 0)) == 4


def test_auto_eval_every_keeps_counted_evaluation_within_the_budget(tmp_path):
    from helpers_tinyvoc import make_tiny_voc

    from wsss.data.voc import VocDataset
    from wsss.engine.evaluation import auto_eval_every

    voc = VocDataset.open(make_tiny_voc(tmp_path / "voc", n=8, size=48))
    ids = voc.split_ids("train")
    # 8 images of 48 x 48 evaluated; 8 crops of 48 px trained at 6 passes: 1/7 = 14.3 % if
    # evaluated every epoch, 1/13 = 7.7 % every 2 epochs.
    assert auto_eval_every(voc, ids, len(ids), 48, train_passes=6) == 2
    assert auto_eval_every(voc, ids, len(ids), 48, train_passes=3) == 3  # 1/10 is within 10 %
    assert auto_eval_every(voc, ids[:1], 100, 48, train_passes=3) == 1
    assert auto_eval_every(voc, ids, 0, 48, train_passes=3) == 1

"""A toy training task for the engine's tests: two classes told apart by the mean colour,
conv -> BatchNorm -> linear, no dropout (micro-batches and processes then see the same
numbers as one batch)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from wsss.data.transforms import sample_rng
from wsss.engine.checkpoint import load_checkpoint
from wsss.engine.device import set_seed
from wsss.engine.trainer import LoopConfig, TrainTask


class Data(Dataset):
    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = sample_rng(0, self.epoch, index)
        target = index % 2
        image = torch.from_numpy(rng.normal(0, 1, (3, 6, 6))).float() + (2.0 * target - 1.0)
        return {"image": image, "target": torch.tensor(target)}


class Net(nn.Module):
    """Conv, BatchNorm, linear; no dropout. `frozen`: BatchNorm keeps its statistics and
    weights (as train-cam --freeze-bn), so a batch's images do not interact."""

    def __init__(self, frozen: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.frozen = frozen
        if frozen:
            with torch.no_grad():  # statistics that are not the default, to be kept
                self.bn.running_mean.uniform_(-0.5, 0.5)
                self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.requires_grad_(False)

    def train(self, mode: bool = True) -> Net:
        super().train(mode)
        if self.frozen:
            self.bn.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class Objective(nn.Module):
    def __init__(self, model: Net) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor], progress: float) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.model(batch["image"]), batch["target"])}


def task(n: int = 16, frozen: bool = True, evaluate=None) -> TrainTask:
    set_seed(0)
    model = Net(frozen)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]
    return TrainTask(kind="toy", model=model, objective=Objective(model), dataset=Data(n),
                     param_groups=groups, model_config={}, classes=("a", "b"),
                     evaluate=evaluate)  # fmt: skip


def loop(out: Path, **overrides) -> LoopConfig:
    # amp off: fp32, since the toy tests compare weights to 1e-6
    settings = dict(
        out_dir=out, stage="train-toy", epochs=2, batch_size=8, lr=0.1, weight_decay=1e-4,
        device="cpu", workers=0, optimizer="sgd", schedule="poly", warmup_epochs=0.0, seed=0,
        resume=False, compile=False, eval_every=1, threads=1, amp="off",
    )  # fmt: skip
    settings.update(overrides)
    settings["args"] = {"accumulate": settings.get("accumulate", 1)}
    return LoopConfig(**settings)


class _Any:
    """Equal to anything: the timings of a metrics line."""

    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


def final_state(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "final.pt", "toy")["model"]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

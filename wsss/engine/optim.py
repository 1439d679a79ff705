"""Optimisers built from a model's parameter groups, and the per-iteration lr schedule.

Models describe their groups as `{"params", "lr_mult", "weight_decay_mult", "name"}` (the
paper: pretrained weights 1x, pretrained biases 2x without decay, new weights 10x, new
biases 20x without decay); the optimiser turns the multipliers into per-group values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from wsss.errors import WsssError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine")


def build_optimizer(
    param_groups: Iterable[dict[str, Any]],
    name: str = "sgd",
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
    nesterov: bool = True,
) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW with each group's lr and decay multipliers applied."""
    groups = []
    for group in param_groups:
        params = [p for p in group["params"] if p.requires_grad]
        if not params:  # e.g. frozen BatchNorm: nothing to optimise in this group
            continue
        lr_mult = float(group.get("lr_mult", 1.0))
        wd_mult = float(group.get("weight_decay_mult", 1.0))
        groups.append(
            {
                "params": params,
                "lr": lr * lr_mult,
                "weight_decay": weight_decay * wd_mult,
                "lr_mult": lr_mult,
                "weight_decay_mult": wd_mult,
                "name": str(group.get("name", f"group{len(groups)}")),
            }
        )
    if not groups:
        raise WsssError("the model has no trainable parameters")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise WsssError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{name}'")


class LrSchedule:
    """Per-iteration lr: optional linear warm-up, then poly (power 0.9) or cosine decay to 0.

    The position is one integer, saved in the checkpoint, so a resumed run continues with
    exactly the lr the uninterrupted run would have used. `factor(step)` is the multiplier
    of every group's base lr for the iteration `step` (0-based).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        kind: str = "poly",
        warmup_steps: int = 0,
        power: float = 0.9,
    ) -> None:
        if kind not in SCHEDULES:
            raise WsssError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{kind}'")
        if total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise WsssError(
                f"schedule needs 0 <= warm-up ({warmup_steps}) < iterations ({total_steps}) "
                "(fewer --warmup-epochs?)"
            )
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.kind = kind
        self.warmup_steps = warmup_steps
        self.power = power
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        t = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        if self.kind == "poly":
            return (1.0 - t) ** self.power
        return 0.5 * (1.0 + math.cos(math.pi * t))

    def step(self) -> None:
        """Advance after an optimiser step: the next iteration uses the next lr."""
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        """Current lr of the first group (the base lr times its multiplier)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _apply(self) -> None:
        factor = self.factor(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "total_steps": self.total_steps,
            "kind": self.kind,
            "warmup_steps": self.warmup_steps,
            "power": self.power,
            "base_lrs": list(self.base_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; a schedule of another length would not continue exactly."""
        if state["total_steps"] != self.total_steps or state["kind"] != self.kind:
            raise WsssError(
                f"saved schedule ({state['kind']}, {state['total_steps']} iterations) differs "
                f"from this run's ({self.kind}, {self.total_steps}); did the split or batch "
                "size change?"
            )
        self.warmup_steps = int(state["warmup_steps"])
        self.power = float(state["power"])
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.step_count = int(state["step"])
        self._apply()

"""Periodic evaluation during training: how often (within a compute budget) and on which
checked split; what is scored lives with the stage (`cam_eval`, `seg_eval`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from wsss.data.voc import VocDataset, image_size
from wsss.engine.trainer import EvalResult, Evaluate

# The share of training compute that periodic evaluation may take by default.
EVAL_BUDGET = 0.10
# Images of the evaluated split shown in TensorBoard after each evaluation.
PREVIEWS = 4


def auto_eval_every(
    voc: VocDataset,
    eval_list: Sequence[str],
    train_images: int,
    crop: int,
    train_passes: float,
    budget: float = EVAL_BUDGET,
) -> int:
    """The default `--eval-every`: the smallest K that keeps evaluation within `budget`.

    Costs are counted, not timed, so the choice is the same on every machine and on resume:
    pixels times forward passes, one per evaluated pixel (single scale) and `train_passes` per
    trained pixel (3 for forward + backward, 6 with Puzzle-CAM's tile branch). Counted this
    way, evaluating the demo's training split after each epoch is 1/7 of the time (K = 2),
    on VOC 1.6 % (K = 1); BENCHMARKS.md compares the count with measured times.
    """
    evaluated = sum(w * h for w, h in (image_size(voc.image_path(i)) for i in eval_list))
    trained = train_images * crop * crop * train_passes
    if trained <= 0:
        return 1
    return max(1, math.ceil(evaluated * (1 - budget) / (budget * trained) - 1e-9))


def eval_ids(voc: VocDataset, split: str) -> list[str]:
    """Ids of an evaluation split, checked before training so that a typo fails at once."""
    ids = voc.split_ids(split)
    voc.check_image_ids(ids)
    voc.require_masks(
        ids, f"--eval-split {split}: ground-truth mask not found ({{missing}} of {{total}} missing)"
    )
    return ids


Score = Callable[[nn.Module, list[str], torch.device], "tuple[float, dict[str, Any]] | None"]
# Pictures of a few of the split's images (TensorBoard's), by name; rank 0 only.
Previews = Callable[[nn.Module, list[str], torch.device], "dict[str, Any]"]


def split_evaluator(
    voc: VocDataset, split: str, name: str, score: Score, previews: Previews | None = None
) -> tuple[Evaluate, list[str]]:
    """The periodic evaluation `score(model, ids, device)` -> (metric, details) on a checked
    split (None where a process leaves the scoring to another), and the split's ids; with
    `previews`, the pictures of the split's first `PREVIEWS` images too."""
    ids = eval_ids(voc, split)

    def evaluate(model: nn.Module, device: torch.device) -> EvalResult | None:
        scored = score(model, ids, device)
        if scored is None:
            return None
        metric, details = scored
        images = previews(model, ids[:PREVIEWS], device) if previews is not None else {}
        return EvalResult(name=f"{split} {name}", metric=metric, details=details, images=images)

    return evaluate, ids

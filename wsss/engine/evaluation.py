"""Periodic evaluation during training: checked eval splits and single-scale segmenter mIoU.

Multi-scale + flip inference of a finished model is `wsss predict`; this is the quick
number logged every few epochs, computed with the same confusion matrix as `wsss eval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from wsss.cam import Predictor, TtaConfig, default_batch_size, image_loader, segment_probs
from wsss.data.classes import class_names_with_background
from wsss.data.voc import VocDataset, image_size
from wsss.engine.distributed import all_reduce_array
from wsss.errors import file_error
from wsss.metrics import ConfusionMatrix, SegmentationScores
from wsss.resume import shard

SINGLE_SCALE = TtaConfig(scales=(1.0,), flip=False)
# The share of training compute that periodic evaluation may take by default (issue 6).
EVAL_BUDGET = 0.10


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
    way, evaluating the demo's training split after each epoch is 1/7 = 14.3 % of the time;
    `make bench` measured 14.4 %. On VOC (1,464 images evaluated, 10,582 crops of 512 px
    trained) it is 1.6 %, so K = 1 there and K = 2 on the demo.
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
    missing = [image_id for image_id in ids if not voc.has_mask(image_id)]
    if missing:
        raise file_error(
            voc.mask_path(missing[0]),
            f"--eval-split {split}: ground-truth mask not found "
            f"({len(missing)} of {len(ids)} missing)",
        )
    return ids


def segmenter_scores(
    model: nn.Module, voc: VocDataset, ids: list[str], device: torch.device
) -> SegmentationScores:
    """Single-scale mIoU of a segmenter; each torchrun process scores its share of `ids`."""
    names = class_names_with_background(voc.classes)
    matrix = ConfusionMatrix(len(names), names)
    predictor = Predictor(model, device)
    mine = shard(ids)
    loader = image_loader(voc, mine, default_batch_size(device), workers=0, device=device)
    for batch in loader:
        probs = segment_probs(predictor, predictor.to_device(batch["image"]), SINGLE_SCALE)
        preds = probs.argmax(1).to(torch.uint8).cpu().numpy()
        for index, pred in zip(batch["index"], preds, strict=True):
            image_id = mine[index]
            gt = voc.load_mask(image_id, expect_size=(pred.shape[1], pred.shape[0]))
            matrix.update(gt, np.asarray(pred), name=image_id)
    totals = all_reduce_array(np.append(matrix.matrix.reshape(-1), matrix.images), device)
    matrix.matrix = totals[:-1].reshape(matrix.matrix.shape)
    matrix.images = int(totals[-1])
    return matrix.compute()

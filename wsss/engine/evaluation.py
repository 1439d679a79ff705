"""Periodic evaluation during training: checked eval splits and single-scale segmenter mIoU.

Multi-scale + flip inference of a finished model is `wsss predict`; this is the quick
number logged every few epochs, computed with the same confusion matrix as `wsss eval`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wsss.cam import Predictor, TtaConfig, default_batch_size, image_loader, segment_probs
from wsss.data.classes import class_names_with_background
from wsss.data.voc import VocDataset
from wsss.engine.distributed import all_reduce_array
from wsss.errors import file_error
from wsss.metrics import ConfusionMatrix, SegmentationScores
from wsss.resume import shard

SINGLE_SCALE = TtaConfig(scales=(1.0,), flip=False)


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

"""Single-scale segmenter mIoU, the quick number logged every few epochs of train-seg.

Multi-scale + flip inference of a finished model is `wsss predict`; this uses the same
confusion matrix as `wsss eval`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wsss.data.classes import class_names_with_background
from wsss.data.loader import image_loader
from wsss.data.voc import VocDataset
from wsss.inference import Predictor, TtaConfig, default_batch_size, segment_probs
from wsss.metrics import ConfusionMatrix, SegmentationScores
from wsss.resume import shard

SINGLE_SCALE = TtaConfig(scales=(1.0,), flip=False)


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
    matrix.reduce_from_all_processes()
    return matrix.compute()


def segmenter_previews(
    model: nn.Module, voc: VocDataset, ids: list[str], device: torch.device
) -> dict[str, np.ndarray]:
    """The image, the single-scale prediction and the ground truth side by side (VOC colours)
    for each of `ids`, by id: what TensorBoard shows of an evaluation. Rank 0 only."""
    from wsss.data.palette import colorize
    from wsss.torchrun import env_info

    if not env_info().is_main:
        return {}
    predictor = Predictor(model, device)
    strips = {}
    for batch in image_loader(voc, ids, 1, workers=0, device=device):
        image_id = ids[batch["index"][0]]
        probs = segment_probs(predictor, predictor.to_device(batch["image"]), SINGLE_SCALE)
        pred = probs.argmax(1)[0].to(torch.uint8).cpu().numpy()
        image = np.asarray(voc.load_image(image_id).convert("RGB"))
        gt = voc.load_mask(image_id, expect_size=(pred.shape[1], pred.shape[0]))
        strips[f"prediction {image_id}"] = np.concatenate([image, colorize(pred), colorize(gt)], 1)
    return strips

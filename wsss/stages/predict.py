"""`wsss predict`: segment a split with a trained DeepLab, one palette PNG per image.

Softmax probabilities are averaged over scales and flips (the engine shared with make-cam;
`--merge logits` takes the softmax of the summed logits instead, as the official Puzzle-CAM
code does), optionally refined by a dense CRF (`--crf-preset` names its parameters).
Resumable, atomic and sharded like make-cam; `wsss eval`
scores the result.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from wsss.checkpoints import open_model_stage
from wsss.configs.inference import PredictConfig
from wsss.crf import CrfParams, crf_preset, crf_refine_probs, densecrf_module
from wsss.data.loader import image_loader
from wsss.data.palette import save_label_png
from wsss.errors import check_count
from wsss.inference import TtaConfig, default_batch_size, segment_probs
from wsss.models.deeplab import DeepLabV3Plus
from wsss.perimage import PerImageResult, PerImageRun, check_finite_outputs
from wsss.transfers import writing_loop

STAGE = "predict"
SUFFIX = ".png"
SIGNATURE = ("checkpoint_sha256", "scales", "flip", "resize", "merge", "crf", "classes")


PredictResult = PerImageResult


def run(config: PredictConfig) -> PredictResult:
    tta = TtaConfig(scales=tuple(config.scales), flip=config.flip, resize=config.resize)
    crf_params = _crf_params(config) if config.crf else None
    check_count("--batch-size", config.batch_size)
    check_count("--loader-workers", config.loader_workers, 0)
    voc, ids, predictor, params = open_model_stage(config, DeepLabV3Plus.KIND)
    device = predictor.device
    params |= {
        "scales": list(tta.scales),
        "flip": tta.flip,
        "merge": config.merge,
        "crf": crf_params.to_json() if crf_params is not None else None,
        "crf_preset": config.crf_preset if crf_params is not None else None,
        "classes": list(voc.classes),
    }
    if tta.resize != "bilinear":  # absent: bilinear, as in the manifests of earlier versions
        params["resize"] = tta.resize
    outputs = PerImageRun(STAGE, config.out, ids, SUFFIX, params, SIGNATURE)
    voc.check_image_ids(outputs.todo)
    batch_size = default_batch_size(device) if config.batch_size is None else config.batch_size
    loader = image_loader(
        voc, outputs.todo, batch_size, config.loader_workers, device, raw=config.crf,
        pil_scales=tta.pil_scales,
    )  # fmt: skip

    def write(
        batch_ids: list[str], raws: list[np.ndarray] | None, arrays: list[np.ndarray]
    ) -> None:
        check_finite_outputs(arrays[1], batch_ids, voc.image_path, config.checkpoint)
        if crf_params is None:
            labels = list(arrays[0])
        else:  # the CRF reads each image's probabilities and pixels
            assert raws is not None
            labels = [_refine(r, p, crf_params) for r, p in zip(raws, arrays[0], strict=True)]
        for image_id, label in zip(batch_ids, labels, strict=True):
            writer.submit(save_label_png, outputs.output(image_id), label)
        advance(len(batch_ids))

    with writing_loop(outputs, device) as (advance, writer, readback):
        for batch in loader:
            batch_ids = [outputs.todo[i] for i in batch["index"]]
            images = predictor.to_device(batch["image"])
            scaled = predictor.scaled_to_device(batch)
            probs = segment_probs(predictor, images, tta, config.merge, scaled)
            result = probs.argmax(1).to(torch.uint8) if crf_params is None else probs
            finite = torch.isfinite(probs).flatten(1).all(1)  # read with the batch: no wait
            readback.submit([result, finite], functools.partial(write, batch_ids, batch.get("raw")))
    return outputs.finish("label maps")


def _crf_params(config: PredictConfig) -> CrfParams:
    """The CRF's parameters: the preset's for a segmenter's probabilities, each option given
    replacing its value; pydensecrf (optional) is checked now, not after a batch."""
    densecrf_module()
    names = ("gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb",
             "bilateral_compat")  # fmt: skip
    given = {name: getattr(config, name) for name in names}
    return crf_preset(config.crf_preset, segmenter=True, iterations=config.crf_iters, **given)


def _refine(image: np.ndarray, probs: np.ndarray, params: CrfParams) -> np.ndarray:
    return crf_refine_probs(image, np.ascontiguousarray(probs, dtype=np.float32), params)

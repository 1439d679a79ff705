"""`wsss make-cam`: multi-scale + flip CAMs of a split, one file per image.

Resumable (finished files are skipped, writes are atomic), sharded under torchrun (each
process takes every WORLD_SIZE-th id), and described by a manifest next to the files.
"""

from __future__ import annotations

import functools

import numpy as np

from wsss.camfile import cam_suffix, save_cam_file
from wsss.checkpoints import open_model_stage
from wsss.configs.inference import MakeCamConfig
from wsss.data.loader import image_loader
from wsss.errors import check_count
from wsss.inference import CamBatch, TtaConfig, cam_batch, default_batch_size
from wsss.models.classifier import CamClassifier
from wsss.overlay import write_overlays
from wsss.perimage import PerImageResult, PerImageRun, check_finite_outputs
from wsss.torchrun import env_info
from wsss.transfers import writing_loop

STAGE = "make-cam"
# Resuming into a folder made with other values of these would mix two kinds of CAMs.
SIGNATURE = ("checkpoint_sha256", "scales", "flip", "resize", "format", "classes")


MakeCamResult = PerImageResult


def run(config: MakeCamConfig) -> MakeCamResult:
    tta = TtaConfig(scales=tuple(config.scales), flip=config.flip, resize=config.resize)
    suffix = cam_suffix(config.format)
    check_count("--batch-size", config.batch_size)
    check_count("--loader-workers", config.loader_workers, 0)
    check_count("--overlays", config.overlays, 0)
    voc, ids, predictor, params = open_model_stage(config, CamClassifier.KIND)
    device = predictor.device
    params |= {
        "scales": list(tta.scales),
        "flip": tta.flip,
        "format": config.format,
        "classes": list(voc.classes),
    }
    if tta.resize != "bilinear":  # absent: bilinear, as in the manifests of earlier versions
        params["resize"] = tta.resize
    outputs = PerImageRun(STAGE, config.out, ids, suffix, params, SIGNATURE)
    voc.check_image_ids(outputs.todo)
    classes = {image_id: voc.image_classes(image_id) for image_id in outputs.todo}
    loader = image_loader(
        voc,
        outputs.todo,
        default_batch_size(device) if config.batch_size is None else config.batch_size,
        config.loader_workers,
        device,
        pil_scales=tta.pil_scales,
    )

    def write(batch_ids: list[str], cams: CamBatch, arrays: list[np.ndarray]) -> None:
        records = cams.records(arrays)
        if not np.isfinite(arrays[-1]).all():  # one pass over the batch; then find the image
            finite = [bool(np.isfinite(r.hr_cam).all()) for r in records]
            check_finite_outputs(finite, batch_ids, voc.image_path, config.checkpoint)
        for image_id, record in zip(batch_ids, records, strict=True):
            writer.submit(save_cam_file, outputs.output(image_id), record, config.format)
        advance(len(batch_ids))

    with writing_loop(outputs, device) as (advance, writer, readback):
        for batch in loader:
            batch_ids = [outputs.todo[i] for i in batch["index"]]
            images = predictor.to_device(batch["image"])
            scaled = predictor.scaled_to_device(batch)
            cams = cam_batch(predictor, images, [classes[i] for i in batch_ids], tta, True, scaled)
            readback.submit(cams.maps, functools.partial(write, batch_ids, cams))
    overlays = []
    if config.overlays and env_info().is_main:
        overlays = write_overlays(voc, ids[: config.overlays], outputs.out, suffix)
    return outputs.finish("CAM files", overlays)

"""`wsss predict`: segment a split with a trained DeepLab, one palette PNG per image.

Softmax probabilities are averaged over scales and flips (the engine shared with make-cam),
optionally refined by a dense CRF. Resumable, atomic and sharded like make-cam; `wsss eval`
scores the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wsss.cam import (
    Predictor,
    TtaConfig,
    default_batch_size,
    image_loader,
    load_model,
    segment_probs,
)
from wsss.crf import CrfParams, crf_refine_probs, densecrf_module
from wsss.data.palette import save_label_png
from wsss.data.voc import VocDataset
from wsss.engine.device import resolve_device
from wsss.engine.distributed import env_info
from wsss.errors import check_count
from wsss.models.deeplab import DeepLabV3Plus
from wsss.resume import file_sha256, finish_outputs, output_path, plan_outputs
from wsss.ui import make_progress

STAGE = "predict"
SUFFIX = ".png"
SIGNATURE = ("checkpoint_sha256", "scales", "flip", "crf", "classes")


@dataclass(frozen=True)
class PredictConfig:
    checkpoint: Path
    data: Path
    split: str
    out: Path
    scales: tuple[float, ...] = (1.0,)
    flip: bool = True
    crf: bool = False
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None  # image loader processes; None: by device
    class_list: Path | None = None


@dataclass
class PredictResult:
    out: Path
    total: int
    written: int
    skipped: int
    seconds: float
    files: int

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def summary_rows(self) -> list[tuple[str, object]]:
        return [
            ("images in split", self.total),
            ("written now", self.written),
            ("finished before (skipped)", self.skipped),
            ("label maps present", self.files),
            ("time", f"{self.seconds:.1f} s"),
            ("images/s", f"{self.images_per_second:.2f}"),
            ("output", self.out),
        ]


def run(config: PredictConfig) -> PredictResult:
    tta = TtaConfig(scales=tuple(config.scales), flip=config.flip)
    crf_params = _crf_params() if config.crf else None
    check_count("--batch-size", config.batch_size)
    check_count("--workers", config.workers, 0)
    voc = VocDataset.open(config.data, config.class_list)
    ids = voc.split_ids(config.split)
    device = resolve_device(config.device, env_info().local_rank)
    model, checkpoint = load_model(
        config.checkpoint, "deeplab", voc.classes, DeepLabV3Plus.from_config
    )
    params = {
        "checkpoint": str(config.checkpoint),
        "checkpoint_sha256": file_sha256(config.checkpoint),
        "model_config": checkpoint.get("model_config"),
        "data": str(config.data),
        "split": config.split,
        "scales": list(tta.scales),
        "flip": tta.flip,
        "crf": crf_params.to_json() if crf_params is not None else None,
        "classes": list(voc.classes),
    }
    plan = plan_outputs(config.out, ids, SUFFIX, STAGE, params, SIGNATURE)
    voc.check_image_ids(plan.todo)
    predictor = Predictor.prepare(model, device)
    batch_size = default_batch_size(device) if config.batch_size is None else config.batch_size
    loader = image_loader(voc, plan.todo, batch_size, config.workers, device, raw=config.crf)
    start = time.perf_counter()
    with make_progress() as progress:
        task = progress.add_task(STAGE, total=len(plan.todo), status=f"{plan.skipped} done before")
        for batch in loader:
            batch_ids = [plan.todo[i] for i in batch["index"]]
            probs = segment_probs(predictor, predictor.to_device(batch["image"]), tta)
            if crf_params is None:
                labels = list(probs.argmax(1).to(torch.uint8).cpu().numpy())
            else:
                labels = [
                    _refine(raw, p.cpu().numpy(), crf_params)
                    for raw, p in zip(batch["raw"], probs, strict=True)
                ]
            for image_id, label in zip(batch_ids, labels, strict=True):
                save_label_png(output_path(plan.out, image_id, SUFFIX), label)
            progress.advance(task, len(batch_ids))
    seconds = time.perf_counter() - start
    files = finish_outputs(plan, ids, SUFFIX, STAGE)
    return PredictResult(
        out=plan.out,
        total=len(ids),
        written=len(plan.todo),
        skipped=plan.skipped,
        seconds=seconds,
        files=files,
    )


def _crf_params() -> CrfParams:
    """The CRF's default parameters; pydensecrf (optional) is checked now, not after a batch."""
    densecrf_module()
    return CrfParams()


def _refine(image: np.ndarray, probs: np.ndarray, params: CrfParams) -> np.ndarray:
    return crf_refine_probs(image, np.ascontiguousarray(probs, dtype=np.float32), params)

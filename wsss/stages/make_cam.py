"""`wsss make-cam`: multi-scale + flip CAMs of a split, one file per image (SPEC section 5).

Resumable (finished files are skipped, writes are atomic), sharded under torchrun (each
process takes every WORLD_SIZE-th id), and described by a manifest next to the files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsss.cam import (
    DEFAULT_SCALES,
    Predictor,
    TtaConfig,
    default_batch_size,
    image_loader,
    load_model,
    make_cams,
)
from wsss.camfile import CamFormat, cam_suffix, load_cam_file, save_cam_file
from wsss.data.voc import VocDataset
from wsss.engine.device import resolve_device
from wsss.engine.distributed import env_info
from wsss.errors import check_count
from wsss.models.classifier import CamClassifier
from wsss.overlay import cam_overlay, save_png
from wsss.resume import file_sha256, finish_outputs, output_path, plan_outputs, shard_info
from wsss.ui import make_progress

STAGE = "make-cam"
OVERLAY_DIR = "overlays"
# Resuming into a folder made with other values of these would mix two kinds of CAMs.
SIGNATURE = ("checkpoint_sha256", "scales", "flip", "format", "classes")


@dataclass(frozen=True)
class MakeCamConfig:
    checkpoint: Path
    data: Path
    split: str
    out: Path
    scales: tuple[float, ...] = DEFAULT_SCALES
    flip: bool = True
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None  # image loader processes; None: by device
    fmt: CamFormat = "npy"
    overlays: int = 0
    class_list: Path | None = None


@dataclass
class MakeCamResult:
    out: Path
    total: int
    written: int
    skipped: int
    seconds: float
    files: int
    overlays: list[Path] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def summary_rows(self) -> list[tuple[str, object]]:
        return [
            ("images in split", self.total),
            ("written now", self.written),
            ("finished before (skipped)", self.skipped),
            ("CAM files present", self.files),
            ("time", f"{self.seconds:.1f} s"),
            ("images/s", f"{self.images_per_second:.2f}"),
            ("overlays", len(self.overlays)),
            ("output", self.out),
        ]


def run(config: MakeCamConfig) -> MakeCamResult:
    tta = TtaConfig(scales=tuple(config.scales), flip=config.flip)
    suffix = cam_suffix(config.fmt)
    check_count("--batch-size", config.batch_size)
    check_count("--workers", config.workers, 0)
    check_count("--overlays", config.overlays, 0)
    voc = VocDataset.open(config.data, config.class_list)
    ids = voc.split_ids(config.split)
    device = resolve_device(config.device, env_info().local_rank)
    model, checkpoint = load_model(
        config.checkpoint, "cam_classifier", voc.classes, CamClassifier.from_config
    )
    params = {
        "checkpoint": str(config.checkpoint),
        "checkpoint_sha256": file_sha256(config.checkpoint),
        "model_config": checkpoint.get("model_config"),
        "data": str(config.data),
        "split": config.split,
        "scales": list(tta.scales),
        "flip": tta.flip,
        "format": config.fmt,
        "classes": list(voc.classes),
    }
    plan = plan_outputs(config.out, ids, suffix, STAGE, params, SIGNATURE)
    voc.check_image_ids(plan.todo)
    classes = {image_id: voc.image_classes(image_id) for image_id in plan.todo}
    predictor = Predictor.prepare(model, device)
    loader = image_loader(
        voc,
        plan.todo,
        default_batch_size(device) if config.batch_size is None else config.batch_size,
        config.workers,
        device,
    )
    start = time.perf_counter()
    with make_progress() as progress:
        task = progress.add_task(STAGE, total=len(plan.todo), status=f"{plan.skipped} done before")
        for batch in loader:
            batch_ids = [plan.todo[i] for i in batch["index"]]
            images = predictor.to_device(batch["image"])
            records = make_cams(predictor, images, [classes[i] for i in batch_ids], tta)
            for image_id, record in zip(batch_ids, records, strict=True):
                save_cam_file(output_path(plan.out, image_id, suffix), record, config.fmt)
            progress.advance(task, len(batch_ids))
    seconds = time.perf_counter() - start
    overlays = []
    if config.overlays and shard_info().rank == 0:
        overlays = write_overlays(voc, ids[: config.overlays], plan.out, suffix)
    files = finish_outputs(plan, ids, suffix, STAGE)
    return MakeCamResult(
        out=plan.out,
        total=len(ids),
        written=len(plan.todo),
        skipped=plan.skipped,
        seconds=seconds,
        files=files,
        overlays=overlays,
    )


def write_overlays(voc: VocDataset, ids: list[str], out: Path, suffix: str) -> list[Path]:
    """Heatmap strips (image + one jet-coloured CAM per class) of the ids whose CAMs exist."""
    written = []
    for image_id in ids:
        cam_path = output_path(out, image_id, suffix)
        if not cam_path.is_file():
            continue  # another shard's image that is not finished yet
        image = np.asarray(voc.load_image(image_id))
        record = load_cam_file(cam_path, voc.num_classes, image.shape[:2])
        names = [voc.classes[label - 1] for label in record.labels]
        path = output_path(out / OVERLAY_DIR, image_id, ".png")
        written.append(save_png(path, cam_overlay(image, record.hr_cam, names)))
    return written

"""`wsss predict`: segment images with a trained DeepLab, one palette PNG per image.

Softmax probabilities are averaged over scales and flips (the engine shared with make-cam;
`--merge logits` takes the softmax of the summed logits instead, as the official Puzzle-CAM
code does), optionally refined by a dense CRF (`--crf-preset` names its parameters).
Resumable, atomic and sharded like make-cam; `wsss eval` scores a split's result.

The images are a split (`--data`, `--split`: batches of same-size images) or any image files
(`--images`: one image at a time, in overlapping windows where it is larger than `--window`,
`wsss.sliding`). With `--images` an image's outputs are written in one job, its label map
last, so a label map on disk means the image is done; an unreadable file is skipped and named
at the end, after the others are written; `classes.csv` / `classes.json` hold each image's
pixel share per class once every image is done.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wsss.checkpoints import open_model, open_model_stage
from wsss.configs.inference import PredictConfig
from wsss.crf import CrfParams, crf_preset, crf_refine_probs, densecrf_module
from wsss.data.classes import read_class_list
from wsss.data.imagefiles import ImageFiles
from wsss.data.loader import image_loader, single_image_loader
from wsss.data.palette import read_label_png, save_label_png
from wsss.errors import WsssError, check_count
from wsss.inference import TtaConfig, default_batch_size, segment_probs
from wsss.io import atomic_write, atomic_write_bytes, write_json
from wsss.models.deeplab import DeepLabV3Plus
from wsss.overlay import label_overlay, save_jpeg
from wsss.perimage import PerImageResult, PerImageRun, check_finite_outputs
from wsss.resume import output_path, pending_ids
from wsss.sliding import segment_image
from wsss.transfers import writing_loop
from wsss.writer import BackgroundWriter, writer_threads

STAGE = "predict"
SUFFIX = ".png"
OVERLAY_SUFFIX = ".overlay.jpg"
PROBS_SUFFIX = ".probs.npz"
SHARES = "classes"  # classes.csv and classes.json
SIGNATURE = ("checkpoint_sha256", "scales", "flip", "resize", "merge", "crf", "classes")
IMAGES_SIGNATURE = (*SIGNATURE, "window", "overlap", "overlay", "save_probs")
BACKGROUND = "background"


PredictResult = PerImageResult


@dataclass
class PredictImagesResult(PerImageResult):
    """predict --images: also how many images took several windows, and the shares table."""

    windowed: int = 0
    shares: Path | None = None

    def summary_rows(self) -> list[tuple[str, object]]:
        head = [("images found", self.total), *self.head_rows()[1:]]
        rows = [*head, ("segmented in windows", self.windowed), *self.timing_rows()]
        rows.append(("pixel shares", self.shares or "when every image is done"))
        return [*rows, ("output", self.out)]


def run(config: PredictConfig) -> PredictResult:
    tta = TtaConfig(scales=tuple(config.scales), flip=config.flip, resize=config.resize)
    _check_inputs(config)
    crf_params = _crf_params(config) if config.crf else None
    check_count("--batch-size", config.batch_size)
    check_count("--loader-workers", config.loader_workers, 0)
    if config.images is not None:
        return _run_images(config, tta, crf_params)
    voc, ids, predictor, params = open_model_stage(config, DeepLabV3Plus.KIND)  # type: ignore[arg-type]
    device = predictor.device
    params |= _tta_params(config, tta, crf_params, voc.classes)
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


def _check_inputs(config: PredictConfig) -> None:
    """One way of naming the images: a split of a dataset, or image files."""
    if config.images is not None:
        if config.data is not None or config.split is not None:
            raise WsssError("--images names the images itself; leave out --data and --split")
        return
    if config.data is None or config.split is None:
        raise WsssError("predict needs --images, or --data and --split")
    if config.overlay or config.save_probs:
        raise WsssError("--overlay and --save-probs go with --images")


def _tta_params(
    config: PredictConfig, tta: TtaConfig, crf_params: CrfParams | None, classes: tuple[str, ...]
) -> dict[str, object]:
    params: dict[str, object] = {
        "scales": list(tta.scales),
        "flip": tta.flip,
        "merge": config.merge,
        "crf": crf_params.to_json() if crf_params is not None else None,
        "crf_preset": config.crf_preset if crf_params is not None else None,
        "classes": list(classes),
    }
    if tta.resize != "bilinear":  # absent: bilinear, as in the manifests of earlier versions
        params["resize"] = tta.resize
    return params


def _run_images(
    config: PredictConfig, tta: TtaConfig, crf_params: CrfParams | None
) -> PredictImagesResult:
    assert config.images is not None
    source = ImageFiles.find(config.images, exclude=Path(config.out))
    listed = None if config.class_list is None else read_class_list(config.class_list)
    predictor, checkpoint, params = open_model(
        config.checkpoint, DeepLabV3Plus.KIND, config.device, listed, config.amp
    )
    classes = tuple(checkpoint.get("classes", ()))
    params |= _tta_params(config, tta, crf_params, classes) | {
        "images": list(config.images),
        "exif_orientation": True,
        "window": config.window,
        "overlap": config.overlap,
        "overlay": config.overlay,
        "save_probs": config.save_probs,
    }
    outputs = PerImageRun(STAGE, config.out, source.ids, SUFFIX, params, IMAGES_SIGNATURE)
    names = (BACKGROUND, *classes)
    failures: list[str] = []
    windowed = 0
    device = predictor.device
    loader = single_image_loader(source, outputs.todo, config.loader_workers, device)
    with outputs.loop() as advance, BackgroundWriter(writer_threads(device)) as writer:
        for item in loader:
            image_id = outputs.todo[item["index"]]
            if "error" in item:
                failures.append(item["error"])
                advance()
                continue
            image = item["image"]
            keep = crf_params is not None or config.save_probs
            done = segment_image(
                predictor, image, tta, config.merge, config.window, config.overlap,
                config.batch_size or 1, keep_probs=keep,
            )  # fmt: skip
            check_finite_outputs([done.finite], [image_id], source.image_path, config.checkpoint)
            windowed += done.windows > 1
            pixels = image.permute(1, 2, 0).numpy()
            labels = done.labels
            if crf_params is not None:
                assert done.probs is not None
                labels = _refine(pixels, done.probs, crf_params)
            writer.submit(
                _write_image, outputs, image_id, labels,
                pixels if config.overlay else None,
                done.probs if config.save_probs else None, names,
            )  # fmt: skip
            advance()
    shares = None
    if not pending_ids(source.ids, outputs.out, SUFFIX):  # every image done (any process)
        shares = _write_shares(outputs.out, source.ids, names)
    result = outputs.finish("label maps", result=PredictImagesResult, windowed=windowed)
    result.shares = shares
    if failures:
        more = f" (and {len(failures) - 1} more unreadable)" if len(failures) > 1 else ""
        written = result.written - len(failures)
        raise WsssError(
            f"{failures[0]}{more}; the other {written} image(s) were written to {outputs.out}, "
            "and a run after fixing or removing it does the rest"
        )
    return result


def _write_image(
    outputs: PerImageRun,
    image_id: str,
    labels: np.ndarray,
    pixels: np.ndarray | None,
    probs: np.ndarray | None,
    names: tuple[str, ...],
) -> None:
    """An image's outputs, the label map last: it marks the image done for a resumed run."""
    if probs is not None:

        def save(handle: io.BufferedIOBase) -> None:
            np.savez_compressed(handle, probs=probs, classes=np.array(names))

        atomic_write(output_path(outputs.out, image_id, PROBS_SUFFIX), save)
    if pixels is not None:
        save_jpeg(output_path(outputs.out, image_id, OVERLAY_SUFFIX), label_overlay(pixels, labels))
    save_label_png(outputs.output(image_id), labels)


def _write_shares(out: Path, ids: list[str], names: tuple[str, ...]) -> Path:
    """classes.csv and classes.json: each image's size and share of pixels per class, read
    back from the label maps (so a resumed or sharded run counts every image)."""
    rows = []
    for image_id in ids:
        labels = read_label_png(output_path(out, image_id, SUFFIX))
        counts = np.bincount(labels.ravel(), minlength=len(names))[: len(names)]
        share = counts / labels.size
        rows.append({
            "id": image_id, "width": int(labels.shape[1]), "height": int(labels.shape[0]),
            "share": {name: round(float(v), 6) for name, v in zip(names, share, strict=True)},
        })  # fmt: skip
    text = io.StringIO()
    table = csv.writer(text, lineterminator="\n")
    table.writerow(["id", "width", "height", *names])
    for row in rows:
        table.writerow([row["id"], row["width"], row["height"],
                        *(f"{row['share'][name]:.6f}" for name in names)])  # fmt: skip
    atomic_write_bytes(out / f"{SHARES}.csv", text.getvalue().encode())
    write_json(out / f"{SHARES}.json", {"classes": list(names), "images": rows})
    return out / f"{SHARES}.csv"


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

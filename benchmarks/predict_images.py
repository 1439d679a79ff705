"""`wsss predict --images` on large images: speed and peak memory against the network's own
forward at the same size (issue #29).

Two measurements per image size, each in its own process (bench.py runs every job in a fresh
interpreter and reads the process tree's peak RSS), so each peak belongs to one of them:

- "predict-images": the stage itself (`wsss.stages.predict.run` with `--images`) on one
  image of that size, the demo's segmenter (DeepLabv3+ ResNet-18, randomly initialised: speed
  does not depend on the weights), predict's default test-time views (scale 1 + flip) and
  default window (1024 px, overlap 0.25): model load, decode, windows, merge and the PNG;
- "segment-forward": the same network's forward on the whole image at once, the same views
  and merge (`segment_probs`), in memory; what windows and file handling are compared with.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import BenchSettings, Numbers, scratch
from wsss.checkpoints import load_model
from wsss.configs.inference import PredictConfig
from wsss.data.demo import DEMO_CLASSES
from wsss.data.transforms import to_chw_uint8
from wsss.engine.checkpoint import save_checkpoint
from wsss.inference import Predictor, TtaConfig, segment_probs
from wsss.models.deeplab import DeepLabV3Plus
from wsss.sliding import window_starts
from wsss.stages import predict

BACKBONE = "resnet18"  # the demo recipe's segmenter


def image_size(side: int) -> tuple[int, int]:
    """(height, width) of the measured image: `side` wide, 4:3 like most photos."""
    return side * 3 // 4, side


def _inputs(settings: BenchSettings, side: int) -> tuple[Path, Path]:
    """The segmenter checkpoint and a folder holding one photo-like PNG `side` px wide."""
    checkpoint = settings.work / "predict_images_seg.pt"
    if not checkpoint.is_file():
        torch.manual_seed(0)
        model = DeepLabV3Plus(BACKBONE, len(DEMO_CLASSES) + 1)
        save_checkpoint(checkpoint, DeepLabV3Plus.KIND, model_config=model.config(),
                        classes=list(DEMO_CLASSES), model=model.state_dict())  # fmt: skip
    folder = settings.work / f"large_{side}"
    path = folder / "photo.png"
    if not path.is_file():
        height, width = image_size(side)
        rng = np.random.default_rng(side)
        yy, xx = np.mgrid[0:height, 0:width]
        pixels = np.stack([(xx // 7) % 256, (yy // 5) % 256, (xx + yy) // 11 % 256], -1)
        pixels = (pixels + rng.integers(0, 30, (height, width, 3))).clip(0, 255)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(path)
    return checkpoint, folder


def measure_predict_images(settings: BenchSettings, side: int) -> Numbers:
    """The stage on one image `side` px wide: seconds, megapixels per second, windows."""
    checkpoint, folder = _inputs(settings, side)
    height, width = image_size(side)
    config_window = settings.predict_window
    with scratch(settings, "predict-images") as out:
        config = PredictConfig(checkpoint=checkpoint, images=(str(folder),), out=out,
                               device="cpu", amp=settings.amp,
                               window=config_window)  # fmt: skip
        start = time.perf_counter()
        result = predict.run(config)
        seconds = time.perf_counter() - start
        assert result.written == 1, "predict --images did not write the label map"
    step = max(1, config_window - round(config_window * config.overlap))
    windows = len(window_starts(height, config_window, step)) * len(
        window_starts(width, config_window, step)
    )
    return {
        "megapixels": height * width / 1e6,
        "seconds": seconds,
        "megapixels_per_s": height * width / 1e6 / seconds,
        "windows": windows,
        "window": config_window,
    }


def measure_segment_forward(settings: BenchSettings, side: int) -> Numbers:
    """The network's forward on the whole image, predict's views and merge, in memory."""
    checkpoint, folder = _inputs(settings, side)
    model, _ = load_model(checkpoint, DeepLabV3Plus.KIND, list(DEMO_CLASSES))
    predictor = Predictor.prepare(model, torch.device("cpu"))
    image = to_chw_uint8(Image.open(folder / "photo.png").convert("RGB"))[None]
    tta = TtaConfig(scales=(1.0,))
    with torch.inference_mode():
        segment_probs(predictor, predictor.to_device(image[..., :64, :64]), tta)  # warm-up
        start = time.perf_counter()
        segment_probs(predictor, predictor.to_device(image), tta).argmax(1)
        seconds = time.perf_counter() - start
    height, width = image.shape[-2:]
    return {
        "megapixels": height * width / 1e6,
        "seconds": seconds,
        "megapixels_per_s": height * width / 1e6 / seconds,
    }

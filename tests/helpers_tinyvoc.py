"""A tiny dataset in VOC layout for tests: noise images with solid class-coloured squares.

Every class has its own colour, so a small network learns the task in a few steps; masks
mark the squares (255 on a one-pixel border, like VOC's object outlines).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wsss.data.palette import IGNORE, save_label_png

COLOURS = ((230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 220, 20), (200, 40, 200))


def make_tiny_voc(
    root: str | Path,
    n: int = 8,
    size: int = 48,
    classes: tuple[str, ...] = ("cat", "dog"),
    seed: int = 0,
) -> Path:
    """Write `n` images with XMLs, palette masks, classes.txt and the lists train, val,
    train_aug (all ids) and val (the first half); returns `root`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    ids = [f"img_{i:03d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        present = [i % len(classes)]
        if len(classes) > 1 and i % 3 == 2:
            present.append((i + 1) % len(classes))
        pixels = rng.integers(90, 160, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), dtype=np.uint8)
        side = size // 3
        for slot, cls in enumerate(present):
            top = int(rng.integers(0, size - side))
            left = slot * (size // 2) + int(rng.integers(0, size // 2 - side + 1))
            pixels[top : top + side, left : left + side] = COLOURS[cls % len(COLOURS)]
            mask[top : top + side, left : left + side] = IGNORE
            mask[top + 1 : top + side - 1, left + 1 : left + side - 1] = cls + 1
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
        objects = "".join(f"<object><name>{classes[c]}</name></object>" for c in present)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>{objects}</annotation>"
        )
    lists = root / "ImageSets" / "Segmentation"
    for name, members in (("train", ids), ("train_aug", ids), ("val", ids[: max(1, n // 2)])):
        (lists / f"{name}.txt").write_text("".join(f"{i}\n" for i in members))
    return root


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine the
    thread pool's contention makes them several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cli_train_cam_and_make_cam(
    data: Path, work: Path, cam_split: str = "train", scale_range: str = "32,40", *make_args: str
) -> Path:
    """Through the CLI: train-cam (ResNet-18, 1 epoch, CPU) on the `train` split of `data`,
    then make-cam (scale 1, no flip) on `cam_split`; returns the CAM folder."""
    from cli.main import main

    run, cams = work / "run", work / "cams"
    with one_torch_thread():
        train = ["train-cam", "--data", str(data), "--split", "train", "--out", str(run)]
        train += ["--backbone", "resnet18", "--pretrained", "none", "--epochs", "1"]
        train += ["--batch-size", "2", "--crop", "32", "--scale-range", scale_range]
        assert main([*train, "--device", "cpu", "--workers", "0"]) == 0
        make = ["make-cam", "--checkpoint", str(run / "final.pt"), "--data", str(data)]
        make += ["--split", cam_split, "--out", str(cams), "--scales", "1.0", "--no-flip"]
        assert main([*make, "--device", "cpu", "--workers", "0", *make_args]) == 0
    return cams


def save_model(path: Path, model: torch.nn.Module, classes: tuple[str, ...]) -> Path:
    """A checkpoint of `model` (of its own kind) as the trainers write it."""
    from wsss.engine.checkpoint import save_checkpoint

    return save_checkpoint(
        path,
        model.KIND,
        model_config=model.config(),
        classes=list(classes),
        model=model.state_dict(),
    )


def read_metrics(out: Path) -> list[dict]:
    """The records of a trainer's metrics.jsonl."""
    import json

    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def cams_from_mask(voc, image_id: str, shift: int = 0):
    """Blurred object masks with peak 1 (moved `shift` pixels right): CAMs that need no network."""
    from scipy import ndimage

    from wsss.cam_math import strided_size
    from wsss.camfile import CamRecord

    gt = voc.load_mask(image_id)
    classes = voc.image_classes(image_id)
    maps = []
    for c in classes:
        blurred = ndimage.gaussian_filter((gt == c + 1).astype(np.float32), 3.0)
        blurred = np.roll(blurred, shift, axis=1)
        maps.append(blurred / blurred.max())
    hr_cam = np.stack(maps).astype(np.float32)
    cam = np.zeros((len(maps), *strided_size(*gt.shape)), np.float32)
    return CamRecord(keys=np.array([0, *(c + 1 for c in classes)]), cam=cam, hr_cam=hr_cam)


def stage_config(config_class, setup: tuple[Path, Path], out: Path, **settings):
    """A model stage's config on a (root, checkpoint) setup, on the CPU, loading in-process."""
    root, checkpoint = setup
    defaults = dict(checkpoint=checkpoint, data=root, split="train", device="cpu", loader_workers=0)
    return config_class(**{**defaults, "out": out, **settings})


def wsss_process(args: list[str], env: dict[str, str], **popen):
    """`wsss ARGS` as a child process of the repository's code, its stderr piped."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "cli.main", *args]
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen
    )


class Interrupt(Exception):
    """Raised by `stop_after_epoch` to cut a training run short, as a kill would."""


def stop_after_epoch(epoch: int):
    """An `on_epoch_end` callback that interrupts the trainer once `epoch` has finished."""

    def callback(end) -> None:
        if end.epoch == epoch:
            raise Interrupt

    return callback

"""`make bench-gpu`: each stage's speed on a GPU next to what its own network allows.

For every network the training step on synthetic tensors already on the GPU (the stage's own
model, objective and optimiser, bf16 autocast and channels_last as the trainer uses them, no
loader, no loop) is the ceiling; train-cam (plain and Puzzle-CAM), train-seg and train-aff
then run through the real stage code on generated data, and their steady throughput (the
epochs after the first, from metrics.jsonl) is divided by it. make-cam, predict and make-rw
are compared with their network's batched forward at the same sizes, scales and flips.
Peak GPU memory is measured per stage, and the import + CUDA start-up of a fresh process
separately. Writes its section of BENCHMARKS.md (between its markers, the rest is kept) and
a JSON file with every number.

    python benchmarks/bench_gpu.py --out BENCHMARKS.md --json runs/bench/bench_gpu.json
    python benchmarks/bench_gpu.py --quick ...             # tiny sizes, on the GPU
    python benchmarks/bench_gpu.py --allow-cpu --quick ... # the same code on the CPU (test)

Without a GPU (and without --allow-cpu) it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, default_collate

import wsss
from wsss.cam_math import strided_size
from wsss.camfile import CamRecord
from wsss.checkpoints import load_model
from wsss.data.demo import generate_demo
from wsss.data.loader import default_loader_workers
from wsss.data.transforms import normalize
from wsss.data.voc import VocDataset, image_size
from wsss.engine.device import amp_policy, memory_format
from wsss.engine.trainer import LoopConfig, TrainTask, loop_optimizer
from wsss.inference import Predictor, TtaConfig, default_batch_size, tta_outputs
from wsss.io import atomic_write_bytes, environment_versions, write_json
from wsss.models.affinity import AffinityNet
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus
from wsss.stages import make_cam, make_rw, predict, train_aff, train_cam, train_seg

START_MARKER = "<!-- bench-gpu: start (rewritten by `make bench-gpu`) -->"
END_MARKER = "<!-- bench-gpu: end -->"
TARGET = 0.85
SPLIT = "bench"
RW_SPLIT = "bench_rw"
# Inference stages run twice, on a split and on one twice as long: the difference is the
# steady rate, the rest their fixed cost (loader start-up, the last writes).
DOUBLE = "_x2"


@dataclass(frozen=True)
class Sizes:
    backbone: str
    output_stride: int
    batch: int  # training batch
    crop: int
    image_size: int  # generated images are square
    images: int  # training split (and make-cam / predict)
    unique_images: int  # generated; the rest are copies under new ids
    epochs: int  # the first is warm-up, the others are timed
    warmup_steps: int  # synthetic step
    timed_steps: int
    rw_images: int
    forward_repeats: int
    scale_range: tuple[int, int] | None = None  # None: each stage's default


FULL = Sizes("resnet50", 16, 16, 512, 512, 160, 32, 4, 8, 30, 32, 5)
QUICK = Sizes("resnet18", 16, 8, 256, 256, 48, 16, 3, 3, 10, 8, 3)
CPU = Sizes("resnet18", 16, 2, 64, 64, 2, 1, 2, 1, 1, 1, 1, scale_range=(64, 80))


# -- helpers -----------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    gc.collect()  # models of the previous measurement must not count in the next one
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    """Peak GPU memory since the last reset (None on the CPU, where it is not measured)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def loader_workers(device: torch.device) -> int:
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


class _Captured(Exception):
    def __init__(self, task: TrainTask, loop: LoopConfig) -> None:
        super().__init__("captured")
        self.task, self.loop = task, loop


def captured_task(stage: ModuleType, config: Any) -> tuple[TrainTask, LoopConfig]:
    """What a training stage would hand to the trainer (model, objective, data, optimiser
    settings), built by the stage's own code and not trained."""

    def capture(task: TrainTask, loop: LoopConfig, on_epoch_end: Any = None) -> Any:
        raise _Captured(task, loop)

    original = stage.fit
    stage.fit = capture
    try:
        stage.run(config)
    except _Captured as got:
        return got.task, got.loop
    finally:
        stage.fit = original
    raise RuntimeError(f"{stage.__name__}.run finished without calling fit")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    fmt = memory_format(device)
    moved = {}
    for key, value in batch.items():
        value = value.to(device)
        if value.dim() == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=fmt)
        moved[key] = value
    return moved


# -- measurements --------------------------------------------------------------------------------


def synthetic_step(
    task: TrainTask, loop: LoopConfig, device: torch.device, sizes: Sizes
) -> dict[str, Any]:
    """The network's own training speed: the stage's objective, optimiser and precision on one
    batch already on the device, stepped `timed_steps` times after `warmup_steps`."""
    objective = task.objective.to(device=device, memory_format=memory_format(device)).train()
    optimizer = loop_optimizer(task.param_groups, loop)
    amp = amp_policy(device)
    scaler = amp.grad_scaler()
    items = [task.dataset[i % len(task.dataset)] for i in range(loop.batch_size)]
    batch = to_device(default_collate(items), device)

    def step() -> None:
        with amp.autocast():
            terms = objective(batch, 1.0)  # late in training: every Puzzle-CAM term is on
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()

    reset_peak(device)
    for _ in range(sizes.warmup_steps):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(sizes.timed_steps):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    out = {
        "images_per_s": loop.batch_size * sizes.timed_steps / seconds,
        "steps": sizes.timed_steps,
        "peak_memory_gb": peak_gb(device),
    }
    return out


def loader_rate(task: TrainTask, loop: LoopConfig, passes: int = 4) -> float:
    """Images/s of the training data loader alone (decoding and augmentation), steady: the
    split `passes` times over in one run, timed from the first batch to the last. (One short
    epoch timed whole is mostly the wait for its first batches, which the training loop hides
    by starting the next epoch's loading early: it had the loader below the stage's rate.)"""
    loader = DataLoader(
        task.dataset,
        batch_size=loop.batch_size,
        sampler=RandomSampler(task.dataset, num_samples=passes * len(task.dataset)),
        num_workers=loop.workers,
        drop_last=True,
    )
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    images = sum(len(batch["image"]) for batch in batches)
    return images / (time.perf_counter() - start)


def steady_rate(out: Path) -> dict[str, Any]:
    """Images/s over the epochs after the first, from the run's metrics.jsonl."""
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = lines[1:] or lines
    images = sum(line["images"] for line in timed)
    seconds = sum(line["seconds"] for line in timed)
    return {
        "images_per_s": images / seconds,
        "first_epoch_images_per_s": lines[0]["images_per_s"],
        "timed_epochs": len(timed),
        "timed_images": images,
    }


@contextmanager
def reading_every(stage: ModuleType, steps: int) -> Iterator[None]:
    """The stage's trainer reading its loss values every `steps` steps (1: the loop before
    the reads were spaced out, which waited for the GPU after every step)."""
    original = stage.fit

    def fit(task: TrainTask, loop: LoopConfig, on_epoch_end: Any = None) -> Any:
        return original(task, replace(loop, read_every=steps), on_epoch_end)

    stage.fit = fit
    try:
        yield
    finally:
        stage.fit = original


def measure_training(
    name: str,
    stage: ModuleType,
    config: Any,
    device: torch.device,
    sizes: Sizes,
    ceiling_of: dict[str, Any] | None = None,
    read_every: int | None = None,
) -> dict[str, Any]:
    """One training stage: its synthetic ceiling (or that of `ceiling_of`, a row measured
    before), then the real run; the ratio of the two."""
    if ceiling_of is None:
        capture = replace(config, out=Path(config.out).with_name("capture"))
        task, loop = captured_task(stage, capture)
        ceiling = synthetic_step(task, loop, device, sizes)
        loader: float | None = loader_rate(task, loop)
        # The bench's loader processes are more than a user's default: does the default
        # keep up with the stage? (The stage's rate over this one says so.)
        default = default_loader_workers(device)
        default_loader = (
            loader if default == loop.workers else loader_rate(task, replace(loop, workers=default))
        )
        task.objective.to("cpu")
        del task
    else:
        ceiling = {
            "images_per_s": ceiling_of["ceiling_images_per_s"],
            "peak_memory_gb": ceiling_of["ceiling_peak_memory_gb"],
        }
        loader = ceiling_of["loader_images_per_s"]
        default, default_loader = (
            ceiling_of["default_loader_workers"],
            ceiling_of["default_loader_images_per_s"],
        )
    reset_peak(device)
    start = time.perf_counter()
    if read_every is None:
        stage.run(config)
    else:
        with reading_every(stage, read_every):
            stage.run(config)
    wall = time.perf_counter() - start
    real = steady_rate(Path(config.out))
    print(
        f"{name}: {real['images_per_s']:.1f} img/s, ceiling {ceiling['images_per_s']:.1f}",
        flush=True,
    )
    return {
        "stage": name,
        "kind": "train",
        "images_per_s": real["images_per_s"],
        "ceiling_images_per_s": ceiling["images_per_s"],
        "ratio": real["images_per_s"] / ceiling["images_per_s"],
        "peak_memory_gb": peak_gb(device),
        "ceiling_peak_memory_gb": ceiling["peak_memory_gb"],
        "loader_images_per_s": loader,
        "default_loader_workers": default,
        "default_loader_images_per_s": default_loader,
        "first_epoch_images_per_s": real["first_epoch_images_per_s"],
        "timed_images": real["timed_images"],
        "wall_s": wall,
    }


def forward_rate(
    model: torch.nn.Module,
    voc: VocDataset,
    ids: list[str],
    batch: int,
    tta: TtaConfig,
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """The network's batched inference speed at the stage's sizes, scales and flips, on
    images already on the device."""
    predictor = Predictor.prepare(model, device)
    images = torch.stack([normalize(voc.load_image(i)) for i in ids[:batch]]).to(device)
    reset_peak(device)
    with torch.inference_mode():
        for _ in tta_outputs(predictor, images, tta):  # warm-up
            pass
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            for _ in tta_outputs(predictor, images, tta):
                pass
        sync(device)
        seconds = time.perf_counter() - start
    return {"images_per_s": len(images) * repeats / seconds, "peak_memory_gb": peak_gb(device)}


def measure_inference(
    name: str,
    run: Callable[[], Any],
    run_double: Callable[[], Any],
    ceiling: dict[str, Any],
    device: torch.device,
    batch: int,
) -> dict[str, Any]:
    """The stage on N images, then on 2N: its steady rate is N over the difference of the
    two work times (as training's epochs after the first), the rest of the first run's
    time its fixed cost."""
    reset_peak(device)
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    double = run_double()
    extra_images, extra_s = double.written - result.written, double.seconds - result.seconds
    steady = (
        extra_images / extra_s if extra_images > 0 and extra_s > 0 else double.images_per_second
    )
    print(f"{name}: {steady:.1f} img/s, forward {ceiling['images_per_s']:.1f}", flush=True)
    return {
        "stage": name,
        "kind": "inference",
        "images_per_s": steady,
        "ceiling_images_per_s": ceiling["images_per_s"],
        "ratio": steady / ceiling["images_per_s"],
        "peak_memory_gb": peak_gb(device),
        "ceiling_peak_memory_gb": ceiling["peak_memory_gb"],
        "images": result.written,
        "single_run_images_per_s": result.images_per_second,
        "fixed_s": max(0.0, result.seconds - result.written / steady),
        "double_images": double.written,
        "double_work_s": double.seconds,
        "forward_batch": batch,
        "work_s": result.seconds,
        "wall_s": wall,
    }


def startup_seconds(device: torch.device) -> dict[str, float]:
    """A fresh process: importing the stages, then the first CUDA call (context creation)."""
    cuda = (
        "torch.zeros(1, device='cuda'); torch.cuda.synchronize()" if device.type == "cuda" else "0"
    )
    code = (
        "import time; t0 = time.perf_counter(); import torch, wsss.stages.make_cam; "
        f"t1 = time.perf_counter(); {cuda}; "
        "print(t1 - t0, time.perf_counter() - t1)"
    )
    # The child imports the same wsss as this process.
    root = str(Path(wsss.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    wall = time.perf_counter() - start
    imports, cuda_s = (float(x) for x in done.stdout.split())
    return {"process_wall_s": wall, "import_s": imports, "cuda_init_s": cuda_s}


# -- data ----------------------------------------------------------------------------------------


def make_data(root: Path, sizes: Sizes) -> list[str]:
    """Demo images in VOC layout; beyond `unique_images`, copies under new ids (speed does not
    depend on the content, and generating is slower than training on them)."""
    generate_demo(root, n_train=sizes.unique_images, n_val=0, size=sizes.image_size, progress=False)
    voc = VocDataset.open(root)
    unique = voc.split_ids("train")
    ids = list(unique)
    folders = [p for p in root.iterdir() if p.is_dir() and p.name != "ImageSets"]
    for n in range(len(unique), 2 * sizes.images):
        source, target = unique[n % len(unique)], f"copy_{n:06d}"
        for folder in folders:
            for path in folder.glob(f"{source}.*"):
                shutil.copyfile(path, folder / f"{target}{path.suffix}")
        ids.append(target)
    lists = root / "ImageSets" / "Segmentation"
    for split, count in ((SPLIT, sizes.images), (RW_SPLIT, sizes.rw_images)):
        for name, n in ((split, count), (split + DOUBLE, 2 * count)):
            atomic_write_bytes(lists / f"{name}.txt", "".join(f"{i}\n" for i in ids[:n]).encode())
    return ids[: sizes.images]


# -- the run -------------------------------------------------------------------------------------


def inference_row(
    name: str,
    stage: ModuleType,
    config: Any,
    kind: str,
    tta: TtaConfig,
    batch: int,
    device: torch.device,
    sizes: Sizes,
) -> dict[str, Any]:
    """An inference stage against its checkpoint's network, batched, at the same sizes."""
    voc = VocDataset.open(config.data)
    model, _ = load_model(config.checkpoint, kind, voc.classes)
    ids = voc.split_ids(SPLIT)
    ceiling = forward_rate(model, voc, ids, batch, tta, device, sizes.forward_repeats)
    del model
    double = replace(config, split=config.split + DOUBLE, out=Path(f"{config.out}{DOUBLE}"))
    if isinstance(config, make_rw.MakeRwConfig):  # CAMs of every id: make-cam's second run
        double = replace(double, cams=Path(f"{config.cams}{DOUBLE}"))
    row = measure_inference(
        name, lambda: stage.run(config), lambda: stage.run(double), ceiling, device, batch
    )
    if isinstance(config, make_rw.MakeRwConfig):  # how much of make-rw is the walk
        size = image_size(voc.image_path(ids[0]))
        row["walk_alone_images_per_s"] = walk_rate(size, batch, device, sizes.forward_repeats)
    return row


def walk_rate(size: tuple[int, int], batch: int, device: torch.device, repeats: int) -> float:
    """Images/s of make-rw's walk alone (`walk_batch`: matrix, walk, upsampling) on `batch`
    images of `size` with 2 classes each and random boundaries, already on the device."""
    height, width = size
    grid = strided_size(height, width)
    rng = np.random.default_rng(0)
    records = [
        CamRecord(
            np.arange(3),
            rng.random((2, *grid), dtype=np.float32),
            rng.random((2, height, width), dtype=np.float32),
        )
        for _ in range(batch)
    ]
    boundary = torch.rand(batch, *grid, device=device)
    with torch.inference_mode():
        make_rw.walk_batch(records, boundary, make_rw.RwParams())  # warm-up
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            make_rw.walk_batch(records, boundary, make_rw.RwParams())
        sync(device)
    return batch * repeats / (time.perf_counter() - start)


def run_all(
    work: Path, sizes: Sizes, device: torch.device, on_row: Callable[[list[dict[str, Any]]], None]
) -> dict[str, Any]:
    data = work / "data"
    make_data(data, sizes)
    workers = loader_workers(device)
    common = {
        "data": data,
        "split": SPLIT,
        "backbone": sizes.backbone,
        "pretrained": "none",
        "output_stride": sizes.output_stride,
        "epochs": sizes.epochs,
        "batch_size": sizes.batch,
        "crop": sizes.crop,
        "device": device.type,
        "loader_workers": workers,
    }
    if sizes.scale_range is not None:
        common["scale_range"] = sizes.scale_range
    rows: list[dict[str, Any]] = []

    def attempt(name: str, measure: Callable[..., dict[str, Any]], *args: Any) -> None:
        try:
            row = measure(name, *args)
        except Exception as exc:  # one stage's failure must not lose the other figures
            row = {"stage": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
            print(f"{name}: failed: {row['error']}", flush=True)
        rows.append(row)
        on_row(rows)

    # train-cam's lr lowered from 0.1: randomly initialised, speed does not depend on it,
    # and a diverged run would stop the stages that read its checkpoint.
    cam = {**common, "lr": 0.01}
    cam_plain = train_cam.TrainCamConfig(out=work / "cam-plain" / "run", pieces=1, alpha=0, **cam)
    cam_puzzle = train_cam.TrainCamConfig(out=work / "cam-puzzle" / "run", **cam)
    seg = train_seg.TrainSegConfig(out=work / "seg" / "run", **common)
    aff = train_aff.TrainAffConfig(
        out=work / "aff" / "run", labels=data / "SegmentationClass", **common
    )
    for name, stage, config in (
        ("train-cam plain", train_cam, cam_plain),
        ("train-cam Puzzle-CAM", train_cam, cam_puzzle),
    ):
        attempt(name, measure_training, stage, config, device, sizes)
    # The same two runs reading the losses after every step, as the loop used to.
    for row, config in zip(rows[:2], (cam_plain, cam_puzzle), strict=True):
        every_step = replace(config, out=Path(config.out).with_name("every-step") / "run")
        name = f"{row['stage']}, losses read every step"
        attempt(name, measure_training, train_cam, every_step, device, sizes, row, 1)
    attempt("train-seg", measure_training, train_seg, seg, device, sizes)
    attempt("train-aff", measure_training, train_aff, aff, device, sizes)

    batch = default_batch_size(device)
    common = {"data": data, "device": device.type, "loader_workers": workers}
    inference = (
        ("make-cam", make_cam, make_cam.MakeCamConfig(
            checkpoint=cam_puzzle.out / "final.pt", split=SPLIT, out=work / "cams", **common),
         CamClassifier.KIND, None),
        ("predict", predict, predict.PredictConfig(
            checkpoint=seg.out / "final.pt", split=SPLIT, out=work / "predict", **common),
         DeepLabV3Plus.KIND, None),
        # make-rw walks a batch together (one block-diagonal matrix); the ceiling is its forward.
        ("make-rw", make_rw, make_rw.MakeRwConfig(
            checkpoint=aff.out / "final.pt", cams=work / "cams", split=RW_SPLIT,
            out=work / "rw", **common),
         AffinityNet.KIND, (1.0,)),
    )  # fmt: skip
    for name, stage, config, kind, scales in inference:
        tta = TtaConfig(scales=scales or tuple(config.scales), flip=config.flip)
        attempt(name, inference_row, stage, config, kind, tta, batch, device, sizes)
    return {"rows": rows, "startup": startup_seconds(device)}


def machine(device: torch.device) -> dict[str, Any]:
    versions = environment_versions()
    info: dict[str, Any] = {
        "device": device.type,
        "torch": versions["torch"],
        "python": versions["python"],
        "wsss": versions["wsss"],
        "cpu_cores": os.cpu_count(),
    }
    if Path("/dev/shm").is_dir():  # where loader processes hand batches over
        info["dev_shm_gb"] = shutil.disk_usage("/dev/shm").total / 2**30
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gb=props.total_memory / 2**30,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            amp=str(amp_policy(device).dtype).removeprefix("torch."),
        )
    else:
        info["gpu"] = "none (CPU dry run)"
    return info


# -- the report ----------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def section(result: dict[str, Any], command: str) -> str:
    m, s = result["machine"], result["sizes"]
    when = result["written"]
    lines = [
        START_MARKER,
        "## GPU (`make bench-gpu`)",
        "",
        f"Written by `make bench-gpu` on {when}: `{command}` ({result['seconds']:.0f} s).",
        "",
        f"GPU: {m['gpu']}; torch {m['torch']}, CUDA {m.get('cuda', '-')}, "
        f"cuDNN {m.get('cudnn', '-')}, AMP {m.get('amp', 'none')}; {m['cpu_cores']} CPU cores.",
        f"Sizes: {s['backbone']} OS{s['output_stride']}, random init, batch {s['batch']}, "
        f"crop {s['crop']}, {s['images']} generated {s['image_size']} px images "
        f"({s['unique_images']} unique), {s['epochs']} epochs (the first untimed), "
        f"synthetic step {s['timed_steps']} timed after {s['warmup_steps']}; "
        f"{result['workers']} loader workers.",
        "",
        "| stage | images/s | network alone, images/s | ratio | target | "
        "peak GPU GB (stage / network alone) | loader alone, images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['stage']} | failed: {row['error']} | | | | | |")
            continue
        verdict = "PASS" if row["ratio"] >= TARGET else "MISS"
        memory = (
            f"{_number(row['peak_memory_gb'], 2)} / {_number(row['ceiling_peak_memory_gb'], 2)}"
        )
        lines.append(
            f"| {row['stage']} | {row['images_per_s']:.1f} | {row['ceiling_images_per_s']:.1f} "
            f"| {row['ratio']:.2f} | >= {TARGET} {verdict} | {memory} "
            f"| {_number(row.get('loader_images_per_s'))} |"
        )
    fixed_costs = [
        f"{row['stage']} {row['single_run_images_per_s']:.1f} img/s, fixed {row['fixed_s']:.2f} s"
        for row in result["rows"]
        if "fixed_s" in row
    ]
    fixed = (
        f"One run of N images, start-up included, and its fixed cost: {'; '.join(fixed_costs)}. "
        if fixed_costs
        else ""
    )
    defaults = [
        f"{row['stage']} {row['default_loader_images_per_s']:.1f} img/s"
        for row in result["rows"]
        if row.get("default_loader_images_per_s") is not None and "losses read" not in row["stage"]
    ]
    if defaults:
        workers = next(
            r["default_loader_workers"] for r in result["rows"] if "default_loader_workers" in r
        )
        fixed += (
            f"The loader alone with a user's default {workers} processes (the table's column "
            f"has the bench's): {'; '.join(defaults)}. "
        )
    fixed += "".join(
        f"make-rw's walk alone (batch {row['forward_batch']}, 2 maps an image, on the device): "
        f"{row['walk_alone_images_per_s']:.1f} img/s. "
        for row in result["rows"]
        if "walk_alone_images_per_s" in row
    )
    start = result.get("startup")
    if start is None:
        startup = "Start-up: not measured yet (a partial report, written after each stage)."
    else:
        startup = (
            f"A fresh process: {start['process_wall_s']:.1f} s in all, of which importing the "
            f"stages {start['import_s']:.1f} s and CUDA start-up {start['cuda_init_s']:.1f} s "
            "(not in the rates above)."
        )
    lines += [
        "",
        "Training: steady images/s over the timed epochs (metrics.jsonl) against the stage's "
        "own objective and optimiser stepped on one batch already on the GPU. make-cam "
        "(4 scales + flip), predict (1 scale + flip) and make-rw (1 scale + flip and the "
        "random walk, a batch walked together): their steady work rate (the stage on N "
        "images and on 2N, N over the difference of the work times) against the network's "
        f"batched forward at the same sizes and flips. {fixed}"
        'The rows "losses read every step" are the same runs with the trainer '
        "reading its loss values after each step, as it did before they were summed on the "
        "device (the other loop changes stay in).",
        startup,
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace this script's section of `path`, or append it; the rest is kept."""
    old = path.read_text() if path.is_file() else ""
    if START_MARKER in old and END_MARKER in old:
        head, rest = old.split(START_MARKER, 1)
        tail = rest.split(END_MARKER, 1)[1].lstrip("\n")
        new = head + text + tail
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + text
    atomic_write_bytes(path, new.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--json", type=Path, default=Path("runs/bench/bench_gpu.json"))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument(
        "--allow-cpu", action="store_true", help="run on the CPU with tiny sizes (a dry run)"
    )
    args = parser.parse_args(argv)
    if args.allow_cpu:
        device, sizes = torch.device("cpu"), CPU
    elif not torch.cuda.is_available():
        print("bench-gpu: no CUDA GPU on this machine, nothing measured")
        return 0
    else:
        device, sizes = torch.device("cuda", 0), QUICK if args.quick else FULL
    command = " ".join(["python", "benchmarks/bench_gpu.py", *(argv or sys.argv[1:])])
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": machine(device),
        "sizes": asdict(sizes),
        "workers": loader_workers(device),
        "target": TARGET,
    }

    def report(rows: list[dict[str, Any]], startup: dict[str, float] | None = None) -> None:
        # Written after every stage: a run cut short still leaves what it measured.
        result.update(
            written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            rows=rows,
            startup=startup,
            seconds=time.perf_counter() - started,
        )
        write_json(args.json, result)
        write_section(args.out, section(result, command))

    work = Path(tempfile.mkdtemp(prefix="bench-gpu-", dir=args.work))
    try:
        measured = run_all(work, sizes, device, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(measured["rows"], measured["startup"])
    rows = result["rows"]
    failed = [row["stage"] for row in rows if "error" in row]
    ratios = [row["ratio"] for row in rows if "error" not in row]
    lowest = f"lowest ratio {min(ratios):.2f}" if ratios else "nothing measured"
    print(f"bench-gpu: {len(rows)} rows, {lowest}, failed: {failed or 'none'}; {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

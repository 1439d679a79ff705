"""Measurements behind `make bench`: each stage timed next to the machine's limits.

Every `measure_*` function runs the real stage (or the trainer's real loop) on the demo data
and returns a flat dict of numbers for one repetition. `benchmarks/bench.py` runs each of them
in its own process, so that the process's peak RSS is the stage's, takes medians over
repetitions and writes BENCHMARKS.md. Ratios are formed inside one measurement, from runs
made one right after the other, so that the load of other jobs cancels out as far as it can.
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

from wsss.cam_eval import evaluate_model_cams
from wsss.cam_threshold import DEFAULT_THRESHOLDS
from wsss.camfile import load_cam_file
from wsss.checkpoints import load_model
from wsss.data.datasets import ClassificationDataset
from wsss.data.demo import DEMO_CLASSES, generate_demo
from wsss.data.transforms import TrainTransform, normalize
from wsss.data.voc import LISTS, VocDataset
from wsss.engine.checkpoint import save_checkpoint
from wsss.engine.trainer import EvalResult, Evaluate, FitResult, TrainTask, fit
from wsss.inference import Predictor, TtaConfig, default_batch_size, make_cams
from wsss.io import atomic_write_bytes
from wsss.models.classifier import CamClassifier
from wsss.recipes import DEMO
from wsss.stages import eval_cam, make_cam, make_pseudo, train_cam

Numbers = dict[str, float]

DATA, CHECKPOINTS, FIXTURE_CAMS = "data", "checkpoints", "cams_fixture"
CAM_SPLIT, CAM_SPLIT_LARGE = "bench_cam", "bench_cam_large"
TRAIN_SPLIT, PSEUDO_SHORT_SPLIT, ALL_SPLIT = "bench_train", "bench_pseudo_short", "train"
SINGLE_THRESHOLD = (0.15,)


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one benchmark run (the presets are in benchmarks/bench.py)."""

    work: Path  # scratch folder: data, checkpoints, outputs
    images: int  # demo train images: eval-cam and make-pseudo run over all of them
    size: int  # demo image side, px
    cam_images: int  # make-cam (4 scales + flip) runs over the first ones
    cam_images_large: int  # ... and the rows of the other backbones over fewer
    train_images: int  # one train-cam epoch
    train_batch: int
    forward_batch: int  # the plain batched forward that make-cam is compared with
    matmul_size: int
    batch_sizes: tuple[int, ...]  # make-cam batch sizes of the first backbone (1 first)
    backbones: tuple[str, ...]
    min_seconds: float  # short measurements are repeated until they last this long
    large_sides: tuple[int, ...] = ()  # predict --images on one image this wide (4:3)
    predict_window: int = 1024  # its --window
    threads: int | None = None  # torch threads per process; None: torch's default (all cores)
    # The stage rows' --amp: fp32 on the CPU (gpu), the precision their targets and the
    # official code's rows were set in; the precision tables measure bf16 side by side.
    amp: str = "gpu"

    @property
    def data(self) -> Path:
        return self.work / DATA

    def checkpoint(self, backbone: str) -> Path:
        return self.work / CHECKPOINTS / f"{backbone}.pt"

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> BenchSettings:
        tuples = {k: tuple(values[k]) for k in ("batch_sizes", "backbones", "large_sides")}
        return cls(**{**values, "work": Path(values["work"]), **tuples})


# -- timing and counting ----------------------------------------------------------------------


def seconds_of(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def count_flops(action: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of the matmuls and convolutions `action` runs."""
    with FlopCounterMode(display=False) as counter:
        action()
    return int(counter.get_total_flops())


def alternate(
    runs: dict[str, Callable[[], float]], min_seconds: float, min_rounds: int = 1
) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns (so load drifts hit all alike).

    Each callable returns its own duration; rounds continue until `min_rounds` are done and
    the slowest run has used `min_seconds` in total (at most 50 rounds).
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    while True:
        for name, run in runs.items():
            times[name].append(run())
        rounds = len(next(iter(times.values())))
        spent = max(sum(values) for values in times.values())
        if rounds >= 50 or (rounds >= min_rounds and spent >= min_seconds):
            return {name: statistics.median(values) for name, values in times.items()}


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else math.nan


@contextmanager
def scratch(settings: BenchSettings, name: str) -> Iterator[Path]:
    """A fresh output folder for one timed run, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=settings.work))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- inputs -----------------------------------------------------------------------------------


def prepare(settings: BenchSettings) -> Numbers:
    """Demo data, its split lists, randomly initialised checkpoints and the CAMs that
    eval-cam and make-pseudo read (single scale: their cost does not depend on how the
    CAMs were made). Throughput does not depend on the weights, so nothing is trained."""
    generate_demo(
        settings.data, n_train=settings.images, n_val=0, size=settings.size, progress=False
    )
    ids = VocDataset.open(settings.data).split_ids(ALL_SPLIT)
    for split, count in (
        (CAM_SPLIT, settings.cam_images),
        (CAM_SPLIT_LARGE, settings.cam_images_large),
        (TRAIN_SPLIT, settings.train_images),
        (PSEUDO_SHORT_SPLIT, _short_count(settings)),
    ):
        text = "".join(f"{i}\n" for i in ids[:count])
        atomic_write_bytes(settings.data / LISTS / f"{split}.txt", text.encode())
    torch.manual_seed(0)
    for backbone in settings.backbones:
        model = CamClassifier(backbone, len(DEMO_CLASSES))
        save_checkpoint(
            settings.checkpoint(backbone),
            "cam_classifier",
            model_config=model.config(),
            classes=list(DEMO_CLASSES),
            model=model.state_dict(),
        )
    shutil.rmtree(settings.work / FIXTURE_CAMS, ignore_errors=True)  # a reused --work
    config = make_cam.MakeCamConfig(
        checkpoint=settings.checkpoint(settings.backbones[0]),
        data=settings.data,
        split=ALL_SPLIT,
        out=settings.work / FIXTURE_CAMS,
        scales=(1.0,),
        flip=False,
        device="cpu",
        amp=settings.amp,
        batch_size=8,
    )
    return {"fixture_seconds": seconds_of(lambda: make_cam.run(config))}


# -- the machine's limits ---------------------------------------------------------------------


def measure_machine(settings: BenchSettings) -> Numbers:
    """Dense float32 matmul GFLOP/s with torch on all its threads."""
    n = settings.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    seconds = alternate({"matmul": lambda: seconds_of(lambda: a @ b)}, settings.min_seconds, 3)
    return {
        "matmul_gflops": gflops(2 * n**3, seconds["matmul"]),
        "threads": torch.get_num_threads(),
    }


def plain_forward(model: torch.nn.Module, batch: int, size: int, min_seconds: float) -> Numbers:
    """The network's own batched inference speed: the limit make-cam is compared with."""
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        flops = count_flops(lambda: model(x[:1]))  # also the warm-up
        model(x)
        seconds = alternate({"forward": lambda: seconds_of(lambda: model(x))}, min_seconds, 3)
    return {
        "forward_gflop_per_image": flops / 1e9,
        "forward_gflops": gflops(batch * flops, seconds["forward"]),
    }


# -- stages -----------------------------------------------------------------------------------


def measure_make_cam(settings: BenchSettings, backbone: str) -> Numbers:
    """make-cam (4 scales + flip) GFLOP/s against the plain batched forward; with batch
    sizes above 1 (the CUDA default path, run here on the CPU), its speed and its largest
    difference from the one-image-at-a-time output."""
    checkpoint = settings.checkpoint(backbone)
    voc = VocDataset.open(settings.data)
    model, _ = load_model(checkpoint, CamClassifier.KIND, voc.classes)
    model.eval()
    out = plain_forward(model, settings.forward_batch, settings.size, settings.min_seconds)
    first = voc.split_ids(CAM_SPLIT)[0]
    image = normalize(voc.load_image(first))[None]
    predictor = Predictor(model, torch.device("cpu"))
    tta = TtaConfig()
    flops = count_flops(lambda: make_cams(predictor, image, [voc.image_classes(first)], tta))
    out["make_cam_gflop_per_image"] = flops / 1e9
    large = backbone != settings.backbones[0]
    split = CAM_SPLIT_LARGE if large else CAM_SPLIT
    default_batch = default_batch_size(torch.device("cpu"))
    out["default_batch"] = default_batch
    with scratch(settings, "make-cam") as work:
        batches = {1, default_batch} if large else {*settings.batch_sizes, default_batch}
        for batch in sorted(batches):
            config = make_cam.MakeCamConfig(
                checkpoint=checkpoint,
                data=settings.data,
                split=split,
                out=work / f"batch{batch}",
                device="cpu",
                amp=settings.amp,
                batch_size=batch,
            )
            images_per_s = make_cam.run(config).images_per_second
            out[f"b{batch}_images_per_s"] = images_per_s
            out[f"b{batch}_gflops"] = images_per_s * flops / 1e9
            out[f"b{batch}_forward_ratio"] = out[f"b{batch}_gflops"] / out["forward_gflops"]
            if batch == default_batch:
                out["default_forward_ratio"] = out[f"b{batch}_forward_ratio"]
            if batch != 1:
                out[f"b{batch}_max_abs_diff"] = max_cam_difference(
                    work / "batch1", work / f"batch{batch}", voc, voc.split_ids(split)
                )
    out["images"] = len(voc.split_ids(split))
    return out


def max_cam_difference(a: Path, b: Path, voc: VocDataset, ids: list[str]) -> float:
    """Largest difference between two folders' CAMs (hr_cam and strided cam)."""
    worst = 0.0
    for image_id in ids:
        size = voc.load_image(image_id).size[::-1]
        left = load_cam_file(a / f"{image_id}.npy", voc.num_classes, size)
        right = load_cam_file(b / f"{image_id}.npy", voc.num_classes, size)
        if not np.array_equal(left.keys, right.keys):
            return math.inf
        for x, y in ((left.hr_cam, right.hr_cam), (left.cam, right.cam)):
            if x.size:
                worst = max(worst, float(np.abs(x - y).max()))
    return worst


def measure_eval_cam(settings: BenchSettings) -> Numbers:
    """eval-cam over the same CAM files with the 19-threshold sweep and with one threshold."""
    cams = settings.work / FIXTURE_CAMS

    def run(thresholds: tuple[float, ...]) -> Callable[[], float]:
        config = eval_cam.EvalCamConfig(
            cams=cams,
            gt=settings.data,
            split=ALL_SPLIT,
            json_path=cams / "bench_eval.json",
            thresholds=thresholds,
            plot=False,
        )
        return lambda: seconds_of(lambda: eval_cam.run(config))

    sweep = DEFAULT_THRESHOLDS
    seconds = alternate(
        {"sweep": run(sweep), "single": run(SINGLE_THRESHOLD)}, settings.min_seconds, 3
    )
    images = settings.images
    return {
        "thresholds": len(sweep),
        "images": images,
        "sweep_seconds": seconds["sweep"],
        "single_seconds": seconds["single"],
        "sweep_images_per_s": images / seconds["sweep"],
        "single_images_per_s": images / seconds["single"],
        "sweep_ratio": seconds["sweep"] / seconds["single"],
    }


def measure_make_pseudo(settings: BenchSettings) -> Numbers:
    """make-pseudo (dense CRF on) with one worker process and with one per core.

    The pool's start-up is a fixed cost that a small split feels and VOC does not: a run on
    the first quarter of the images separates it from the steady per-image time.
    """
    cores = make_pseudo.default_workers()
    images, short = settings.images, _short_count(settings)

    def run(workers: int, split: str) -> Callable[[], float]:
        def once() -> float:
            with scratch(settings, "make-pseudo") as work:
                config = make_pseudo.MakePseudoConfig(
                    cams=settings.work / FIXTURE_CAMS,
                    data=settings.data,
                    split=split,
                    out=work,
                    crf_workers=workers,
                )
                return make_pseudo.run(config).seconds

        return once

    runs = {
        "one": run(1, ALL_SPLIT),
        "all": run(cores, ALL_SPLIT),
        "all_short": run(cores, PSEUDO_SHORT_SPLIT),
    }
    seconds = alternate(runs, settings.min_seconds)
    one, all_cores = images / seconds["one"], images / seconds["all"]
    steady = (seconds["all"] - seconds["all_short"]) / (images - short)  # s per image
    steady_speedup = seconds["one"] / images / steady if steady > 0 else math.nan
    return {
        "cores": cores,
        "images": images,
        "one_worker_images_per_s": one,
        "all_cores_images_per_s": all_cores,
        "speedup": all_cores / one,
        "speedup_per_core": all_cores / one / cores,
        "pool_start_s": max(0.0, seconds["all_short"] - short * steady) if steady > 0 else math.nan,
        "steady_speedup_per_core": steady_speedup / cores,
    }


def _short_count(settings: BenchSettings) -> int:
    return max(1, min(settings.images // 4, settings.images - 1))


# -- training ---------------------------------------------------------------------------------


class InMemoryDataset(Dataset):
    """Training items computed once: the trainer's loop with no loading cost at all."""

    def __init__(self, items: list[dict[str, torch.Tensor]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def bench_train_config(
    settings: BenchSettings, out: Path, **changes: Any
) -> train_cam.TrainCamConfig:
    """The demo recipe's train-cam options for one epoch of the bench's training split;
    everything else (`--eval-every`, loader workers, puzzle settings) at its default."""
    options = {
        **DEMO.train_cam,
        "epochs": 1,
        "warmup_epochs": 0.0,
        "batch_size": settings.train_batch,
        "crop": settings.size,
    }
    config = train_cam.TrainCamConfig(
        data=settings.data,
        out=out,
        split=TRAIN_SPLIT,
        device="cpu",
        amp=settings.amp,
        **options,
    )
    config = replace(config, **changes)
    config.validate()
    return config


def train_task(
    config: train_cam.TrainCamConfig, dataset: Dataset, evaluate: Evaluate | None
) -> TrainTask:
    """The TrainTask `train_cam.run` builds, with the dataset and evaluation swappable."""
    torch.manual_seed(config.seed)
    voc = VocDataset.open(config.data)
    model = CamClassifier(config.backbone, voc.num_classes, config.output_stride, "none")
    return TrainTask(
        kind=CamClassifier.KIND,
        model=model,
        objective=train_cam.PuzzleObjective(model, train_cam.puzzle_config(config)),
        dataset=dataset,
        param_groups=model.param_groups(),
        model_config=model.config(),
        classes=voc.classes,
        evaluate=evaluate,
    )


def timed_cam_evaluator(voc: VocDataset, split: str, spent: list[float]) -> Evaluate:
    """train-cam's periodic CAM evaluation, with the seconds of each call appended to `spent`."""
    ids = voc.split_ids(split)

    def evaluate(model: torch.nn.Module, device: torch.device) -> EvalResult:
        start = time.perf_counter()
        sweep = evaluate_model_cams(model, voc, ids, device)
        spent.append(time.perf_counter() - start)
        return EvalResult(name=f"{split} CAM mIoU", metric=sweep.best_miou)

    return evaluate


def measure_train_cam(settings: BenchSettings) -> Numbers:
    """One epoch of train-cam's loop three ways: plain CAM and Puzzle-CAM on tensors held in
    memory, and Puzzle-CAM on the real data loader with periodic evaluation."""
    voc = VocDataset.open(settings.data)
    ids = voc.split_ids(TRAIN_SPLIT)
    base = bench_train_config(settings, settings.work)
    real = ClassificationDataset(voc, ids, TrainTransform(train_cam.augmentation(base)), base.seed)
    memory = InMemoryDataset([real[i] for i in range(len(real))])
    _warm_up(base, memory)

    def epoch(dataset: Dataset, evaluate: Evaluate | None = None, **changes: Any) -> FitResult:
        with scratch(settings, "train-cam") as out:
            config = bench_train_config(settings, out, **changes)
            return fit(train_task(config, dataset, evaluate), config.loop_config(train_cam.STAGE))

    def step_seconds(result: FitResult) -> float:
        return result.metrics["seconds"] / result.metrics["iterations"]

    baseline = epoch(memory, loader_workers=0, pieces=1, alpha=0.0)
    puzzle = epoch(memory, loader_workers=0)
    spent: list[float] = []
    loaded = epoch(real, timed_cam_evaluator(voc, TRAIN_SPLIT, spent), eval_split=TRAIN_SPLIT)
    eval_seconds = sum(spent)
    # One epoch, evaluated at its end; by default evaluation comes every `every` epochs.
    every = train_cam.default_eval_every(base, voc, ids, ids)
    train_seconds = loaded.seconds - eval_seconds
    return {
        "batch": settings.train_batch,
        "baseline_step_s": step_seconds(baseline),
        "puzzle_step_s": step_seconds(puzzle),
        "loader_step_s": step_seconds(loaded),
        "baseline_images_per_s": baseline.metrics["images_per_s"],
        "puzzle_images_per_s": puzzle.metrics["images_per_s"],
        "loader_images_per_s": loaded.metrics["images_per_s"],
        "loader_workers": base.loop_config(train_cam.STAGE).workers,
        "puzzle_ratio": step_seconds(puzzle) / step_seconds(baseline),
        "loader_ratio": step_seconds(loaded) / step_seconds(puzzle),
        "epoch_wall_s": loaded.seconds,
        "eval_s": eval_seconds,
        "eval_share_every_epoch": eval_seconds / loaded.seconds,
        "eval_share": eval_seconds / (every * train_seconds + eval_seconds),
        "eval_every": every,
    }


def _warm_up(config: train_cam.TrainCamConfig, dataset: Dataset) -> None:
    """One untimed Puzzle-CAM step, so the timed epochs do not pay for first-call setup."""
    task = train_task(config, dataset, None)
    batch = {
        key: torch.stack([dataset[i][key] for i in range(config.batch_size)])
        for key in ("image", "label")
    }
    task.objective(batch, 1.0)["loss"].backward()


MEASUREMENTS: dict[str, Callable[..., Numbers]] = {
    "prepare": prepare,
    "machine": measure_machine,
    "make-cam": measure_make_cam,
    "eval-cam": measure_eval_cam,
    "make-pseudo": measure_make_pseudo,
    "train-cam": measure_train_cam,
}

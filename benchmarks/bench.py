"""`make bench`: every stage's throughput and peak memory next to the machine's own limits.

Runs each measurement of `benchmarks/common.py` in its own process (its peak RSS is the stage's),
`--repeats` times in turn, and writes BENCHMARKS.md (medians, the speed targets with PASS
or MISS) and a JSON file with every number of every repetition. Hand-written notes below
the notes marker of an existing BENCHMARKS.md are kept.

    python benchmarks/bench.py --out BENCHMARKS.md --json runs/bench/bench.json [--repeats 3]
    python benchmarks/bench.py --tiny --repeats 1 ...     # seconds-long run (the test)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.io import atomic_write_bytes, write_json  # noqa: E402

NOTES_MARKER = "<!-- notes: text below this line is kept when `make bench` rewrites this file -->"
SCRIPT = Path(__file__).resolve()
# benchmarks.precision.CAM_BATCHED, named here without importing torch (a test ties the two)
CAM_BATCHED = "make-cam x4"
# `common.BenchSettings` fields. The default run takes about 5-10 minutes on 2 idle cores.
DEFAULT_SIZES: dict[str, Any] = {
    "images": 300,  # the demo's train split: what eval-cam and make-pseudo run on in make demo
    "size": 128,
    "cam_images": 16,
    "cam_images_large": 16,
    "train_images": 128,  # 8 steps: an epoch long enough to hide the loader's first batch
    "train_batch": 16,
    "forward_batch": 16,
    "matmul_size": 2048,
    "batch_sizes": [1, 4],
    "backbones": ["resnet18", "resnet50"],
    "min_seconds": 2.0,
    "large_sides": [1024, 2048, 4096],  # predict --images: 1 window, 6, 20
    "predict_window": 1024,
}
TINY_SIZES: dict[str, Any] = {
    **DEFAULT_SIZES,
    "images": 6,
    "size": 32,
    "cam_images": 4,
    "cam_images_large": 4,
    "train_images": 4,
    "train_batch": 2,
    "forward_batch": 2,
    "matmul_size": 256,
    "backbones": ["resnet18"],
    "min_seconds": 0.1,
    "large_sides": [48, 96],
    "predict_window": 64,
}


# -- running measurements in child processes --------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One measurement: `benchmarks.common.MEASUREMENTS[name](settings, **params)`."""

    key: str
    name: str
    params: dict[str, Any]


def plan(backbones: Sequence[str], large_sides: Sequence[int]) -> list[Job]:
    jobs = [Job("machine", "machine", {})]
    jobs += [Job(f"make-cam {b}", "make-cam", {"backbone": b}) for b in backbones]
    jobs += [Job(name, name, {}) for name in ("eval-cam", "make-pseudo", "train-cam")]
    jobs += [Job(f"precision {b}", "precision", {"backbone": b}) for b in backbones]
    jobs += [Job(f"fold {b}", "fold", {"backbone": b}) for b in backbones]
    for side in large_sides:
        jobs.append(Job(f"predict-images {side}", "predict-images", {"side": side}))
        jobs.append(Job(f"segment-forward {side}", "segment-forward", {"side": side}))
    return jobs


def run_child(job: Job, settings: dict[str, Any], log: Path) -> dict[str, float]:
    """Run `job` in a fresh interpreter; its numbers plus the process tree's peak RSS.

    `wait4` gives the child's own resource usage: ru_maxrss is the largest resident size of
    the child or of any process it started and waited for (loader workers, CRF pool).
    """
    work = Path(settings["work"])
    spec, result = work / "job.json", work / "result.json"
    spec.write_text(json.dumps({"name": job.name, "params": job.params, "settings": settings}))
    result.unlink(missing_ok=True)
    env = {**os.environ, "WSSS_QUIET": "1"}
    command = [sys.executable, str(SCRIPT), "--child", str(spec), str(result)]
    start = time.perf_counter()
    with open(log, "a") as output:
        output.write(f"\n== {job.key} {job.params}\n")
        output.flush()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not result.is_file():
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise SystemExit(f"bench: {job.key} failed (exit {process.returncode}); log {log}:\n{tail}")
    numbers = {
        key: math.nan if value is None else value
        for key, value in json.loads(result.read_text()).items()
    }
    numbers["peak_rss_mb"] = _maxrss_mb(usage.ru_maxrss)
    numbers["process_seconds"] = time.perf_counter() - start
    return numbers


def child_main(spec_path: Path, result_path: Path) -> int:
    import torch

    from benchmarks.common import MEASUREMENTS, BenchSettings
    from benchmarks.precision import measure_folding, measure_precision
    from benchmarks.predict_images import measure_predict_images, measure_segment_forward
    from wsss.engine.device import set_amp

    spec = json.loads(spec_path.read_text())
    settings = BenchSettings.from_json(spec["settings"])
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    set_amp(settings.amp)  # what runs outside a stage (the plain forward, make_cams) too
    # What the interpreter holds before the stage starts: torch alone is hundreds of MB.
    imported = _self_peak_rss_mb()
    measurements = {
        **MEASUREMENTS,
        "precision": measure_precision,
        "fold": measure_folding,
        "predict-images": measure_predict_images,
        "segment-forward": measure_segment_forward,
    }
    numbers = measurements[spec["name"]](settings, **spec["params"])
    numbers["import_rss_mb"] = imported
    write_json(result_path, finite_or_none(numbers))
    return 0


def _maxrss_mb(maxrss: int) -> float:
    return maxrss / (1 << 20) if sys.platform == "darwin" else maxrss / 1024  # bytes / KiB


def _self_peak_rss_mb() -> float:
    import resource

    return _maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- figures, targets ---------------------------------------------------------------------------


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median of the repetitions where it could be measured (else NaN)."""
    out = {}
    for key in runs[0]:
        values = [run[key] for run in runs if math.isfinite(run[key])]
        out[key] = statistics.median(values) if values else math.nan
    return out


def finite_or_none(value: Any) -> Any:
    """NaN is not JSON: figures that could not be measured are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_none(item) for item in value]
    return value


@dataclass(frozen=True)
class Target:
    stage: str
    figure: str
    key: str
    field: str
    at_most: bool  # the figure must be <= limit (else >=)
    limit: float
    percent: bool = False

    def check(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value <= self.limit if self.at_most else value >= self.limit


def targets(backbones: Sequence[str]) -> list[Target]:
    first = backbones[0]
    rows = [
        Target(
            "make-cam",
            f"achieved GFLOP/s / plain batched forward GFLOP/s ({b}, default CPU batch)",
            f"make-cam {b}",
            "default_forward_ratio",
            False,
            0.85,
        )
        for b in backbones
    ]
    rows += [
        Target(
            "make-cam on CUDA",
            f"batch 4 across images per scale (run on the CPU): largest "
            f"CAM difference from one image at a time ({first})",
            f"make-cam {first}",
            "b4_max_abs_diff",
            True,
            1e-4,
        ),
        Target(
            "eval-cam",
            "19-threshold sweep time / single-threshold time",
            "eval-cam",
            "sweep_ratio",
            True,
            1.5,
        ),
        Target(
            "make-pseudo",
            "images/s all cores / 1 worker, per core (CRF on)",
            "make-pseudo",
            "speedup_per_core",
            False,
            0.85,
        ),
        Target(
            "train-cam",
            "Puzzle-CAM step time / baseline step time, same batch",
            "train-cam",
            "puzzle_ratio",
            True,
            2.05,
        ),
        Target(
            "train-cam",
            "step time with the real data loader / tensors in memory",
            "train-cam",
            "loader_ratio",
            True,
            1.1,
        ),
        Target(
            "train-cam",
            "share of wall time in periodic evaluation (default --eval-every)",
            "train-cam",
            "eval_share",
            True,
            0.10,
            percent=True,
        ),
    ]
    # Issue #26: bf16 + channels_last against fp32 NCHW, on a CPU with native bf16.
    rows += [
        Target(
            "CPU bf16",
            f"{stage} images/s, bf16 + channels_last / fp32 NCHW ({b})",
            f"precision {b}",
            f"{stage}|bf16_cl_ratio",
            False,
            1.8,
        )
        for b in backbones
        for stage in ("train-cam plain", "train-cam puzzle", "make-cam", CAM_BATCHED, "train-seg")
    ]
    return rows


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for target in targets(report["settings"]["backbones"]):
        values = [run[target.field] for run in report["runs"][target.key]]
        values = [v for v in values if math.isfinite(v)] or [math.nan]
        value = report["medians"][target.key][target.field]
        rows.append(
            {
                "stage": target.stage,
                "figure": target.figure,
                "measured": value,
                "range": [min(values), max(values)],
                "target": f"{'<=' if target.at_most else '>='} "
                f"{_fmt(target.limit, percent=target.percent)}",
                "pass": target.check(value),
                "percent": target.percent,
            }
        )
    return rows


# VOC 2012 + SBD with the paper's recipe: trained pixels per epoch, evaluated pixels.
VOC_TRAIN_PIXELS = 10_582 * 512 * 512
VOC_EVAL_PIXELS = 1_464 * 500 * 375


def projected_voc_eval_share(train: dict[str, float], settings: dict[str, Any]) -> float:
    """The evaluation share at VOC's sizes, from the measured costs per pixel."""
    pixels = settings["size"] ** 2
    train_cost = train["loader_step_s"] / (train["batch"] * pixels)
    evaluation = train["eval_s"] / (settings["train_images"] * pixels) * VOC_EVAL_PIXELS
    return evaluation / (evaluation + train_cost * VOC_TRAIN_PIXELS)


# -- the report -------------------------------------------------------------------------------


def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores busy with other work right now, from /proc/stat (Linux); unlike the load
    average, which trails by minutes, this is zero as soon as other jobs stop or pause."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    ticks = total1 - total0
    cores = os.cpu_count() or 1
    return cores * (ticks - (idle1 - idle0)) / ticks if ticks > 0 else None


def machine_description() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    memory = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": memory,
        "python": platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "platform": platform.platform(),
    }


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _fmt(value: float, digits: int = 2, percent: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    if percent:
        return f"{100 * value:.1f} %"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}f}"
    return f"{value:.1e}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def render(report: dict[str, Any], notes: str) -> str:
    m, s, med = report["machine"], report["settings"], report["medians"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {report['date']}: `{report['command']}` "
        f"({report['repeats']} repetitions, medians quoted; every number of every repetition "
        f"is in `{report['json']}`). Issue 6 defines the figures and targets.",
        "",
        "## Machine",
        "",
        *_table(
            ["", ""],
            [
                ("CPU", m["cpu"]),
                ("cores", f"{m['cores']} ({m['usable_cores']} usable by this process)"),
                ("memory", m["memory"]),
                ("torch", f"{m['torch']}, {int(med['machine']['threads'])} threads"),
                ("python / numpy", f"{m['python']} / {m['numpy']}"),
                (
                    "load average before / after",
                    f"{report['load'][0]:.2f} / {report['load'][1]:.2f}",
                ),
                (
                    "cores busy in the second before the run",
                    _fmt(_number(report.get("busy_cores_before"))),
                ),
            ],
        ),
        f"Data: the demo generator, {s['images']} images at {s['size']} px; randomly "
        "initialised classifiers (speed does not depend on the weights); everything on the CPU.",
        "",
        "## Machine limits (same run)",
        "",
    ]
    rows = [
        (
            f"dense float32 matmul, {int(med['machine']['threads'])} torch threads",
            f"{s['matmul_size']}^3",
            f"{_fmt(med['machine']['matmul_gflops'], digits=1)} GFLOP/s",
        )
    ]
    for b in s["backbones"]:
        cam = med[f"make-cam {b}"]
        rows.append(
            (
                f"{b} plain batched forward (inference)",
                f"batch {s['forward_batch']} at {s['size']} px, "
                f"{_fmt(cam['forward_gflop_per_image'])} GFLOP/image",
                f"{_fmt(cam['forward_gflops'], digits=1)} GFLOP/s",
            )
        )
    lines += _table(["figure", "setting", "median"], rows)
    lines += [
        "FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (2 per "
        "multiply-add, convolutions and matmuls).",
        "",
    ]
    lines += _stage_tables(report)
    lines += ["## Targets", ""]
    lines += _table(
        ["stage", "figure", "measured (median)", "range", "target", "result"],
        [
            (
                r["stage"],
                r["figure"],
                _fmt(r["measured"], percent=r["percent"]),
                " - ".join(_fmt(v, percent=r["percent"]) for v in r["range"]),
                r["target"],
                "PASS" if r["pass"] else "**MISS**",
            )
            for r in report["targets"]
        ],
    )
    lines += ["## Findings", ""] + [f"- {line}" for line in report["findings"]] + [""]
    lines += [NOTES_MARKER, notes.strip("\n"), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _stage_tables(report: dict[str, Any]) -> list[str]:
    s, med = report["settings"], report["medians"]
    lines = ["## Stages", "", "### make-cam (4 scales + flip)", ""]
    rows = []
    for b in s["backbones"]:
        cam = med[f"make-cam {b}"]
        batches = sorted(
            int(m.group(1)) for k in cam if (m := re.fullmatch(r"b(\d+)_images_per_s", k))
        )
        for batch in batches:
            rows.append(
                (
                    b,
                    batch,
                    int(cam["images"]),
                    _fmt(cam[f"b{batch}_images_per_s"]),
                    _fmt(cam["make_cam_gflop_per_image"], digits=1),
                    _fmt(cam[f"b{batch}_gflops"], digits=1),
                    _fmt(cam[f"b{batch}_forward_ratio"]),
                    f"{cam['peak_rss_mb']:.0f}",
                )
            )
    lines += _table(
        [
            "backbone",
            "batch",
            "images",
            "images/s",
            "GFLOP/image",
            "GFLOP/s",
            "/ plain forward",
            "peak RSS MB",
        ],
        rows,
    )
    first = med[f"make-cam {s['backbones'][0]}"]
    diffs = [f"batch {b}: {_fmt(first[f'b{b}_max_abs_diff'])}" for b in s["batch_sizes"] if b > 1]
    lines += [f"Largest CAM difference from the one-image run: {', '.join(diffs) or '-'}.", ""]

    ev = med["eval-cam"]
    lines += ["### eval-cam", ""]
    lines += _table(
        ["thresholds", "images", "seconds", "images/s", "peak RSS MB"],
        [
            (
                int(ev["thresholds"]),
                int(ev["images"]),
                _fmt(ev["sweep_seconds"], digits=3),
                _fmt(ev["sweep_images_per_s"], digits=1),
                f"{ev['peak_rss_mb']:.0f}",
            ),
            (
                1,
                int(ev["images"]),
                _fmt(ev["single_seconds"], digits=3),
                _fmt(ev["single_images_per_s"], digits=1),
                "",
            ),
        ],
    )

    ps = med["make-pseudo"]
    cores = int(ps["cores"])
    lines += ["### make-pseudo (dense CRF on)", ""]
    lines += _table(
        ["workers", "images", "images/s"],
        [
            (1, int(ps["images"]), _fmt(ps["one_worker_images_per_s"])),
            (cores, int(ps["images"]), _fmt(ps["all_cores_images_per_s"])),
        ],
    )
    lines += [
        f"Speed-up {_fmt(ps['speedup'])}x on {cores} cores ({_fmt(ps['speedup_per_core'])} per "
        f"core). Starting the worker pool takes {_fmt(ps['pool_start_s'])} s (from a run on "
        f"a quarter of the images); without it the speed-up is "
        f"{_fmt(ps['steady_speedup_per_core'])} per core. Peak RSS {ps['peak_rss_mb']:.0f} MB.",
        "",
    ]

    lines += _precision_tables(report)
    lines += _predict_images_table(report)

    tr, derived = med["train-cam"], report["derived"]
    lines += [
        f"### train-cam ({s['backbones'][0]}, batch {int(tr['batch'])}, crop {s['size']} px, "
        f"{s['train_images']} images = one epoch)",
        "",
    ]
    lines += _table(
        ["run", "step s", "images/s"],
        [
            (
                "plain CAM baseline, tensors in memory",
                _fmt(tr["baseline_step_s"], digits=3),
                _fmt(tr["baseline_images_per_s"]),
            ),
            (
                "Puzzle-CAM, tensors in memory",
                _fmt(tr["puzzle_step_s"], digits=3),
                _fmt(tr["puzzle_images_per_s"]),
            ),
            (
                f"Puzzle-CAM, real data loader ({int(tr['loader_workers'])} workers)",
                _fmt(tr["loader_step_s"], digits=3),
                _fmt(tr["loader_images_per_s"]),
            ),
        ],
    )
    lines += [
        f"Periodic evaluation (CAMs of the training split itself): {_fmt(tr['eval_s'])} s "
        f"after a {_fmt(tr['epoch_wall_s'] - tr['eval_s'])} s epoch, "
        f"{100 * tr['eval_share_every_epoch']:.1f} % of the time when evaluating after every "
        f"epoch. The default `--eval-every`, counted from the split sizes (`auto_eval_every`), "
        f"is {int(tr['eval_every'])} here: {100 * tr['eval_share']:.1f} %. At the VOC recipe's "
        f"sizes (10,582 crops of 512 px trained, 1,464 images of about 500 x 375 evaluated) the "
        f"same per-pixel costs give {100 * derived['voc_eval_share']:.1f} % every epoch. "
        f"Peak RSS {tr['peak_rss_mb']:.0f} MB.",
        "",
    ]

    lines += ["### Peak RSS per measurement process", ""]
    lines += _table(
        ["process", "peak RSS MB (median)", "max over repetitions", "after imports MB"],
        [
            (
                key,
                f"{med[key]['peak_rss_mb']:.0f}",
                f"{max(r['peak_rss_mb'] for r in report['runs'][key]):.0f}",
                f"{med[key]['import_rss_mb']:.0f}",
            )
            for key in report["runs"]
        ],
    )
    lines += [
        "The peak covers the process and every process it started (loader workers, the CRF "
        "pool): the largest of them. 'After imports' is the interpreter with torch and wsss "
        "loaded, before the stage starts.",
        "",
    ]
    return lines


def _predict_images_table(report: dict[str, Any]) -> list[str]:
    s, med = report["settings"], report["medians"]
    rows = []
    for side in s.get("large_sides", []):
        stage, forward = med.get(f"predict-images {side}"), med.get(f"segment-forward {side}")
        if stage is None or forward is None:
            continue
        rows.append(
            (
                f"{side} x {side * 3 // 4}",
                _fmt(stage["megapixels"], digits=1),
                int(stage["windows"]),
                _fmt(stage["seconds"], digits=1),
                _fmt(stage["megapixels_per_s"], digits=3),
                f"{stage['peak_rss_mb']:.0f}",
                _fmt(forward["seconds"], digits=1),
                f"{forward['peak_rss_mb']:.0f}",
                _fmt(forward["seconds"] / stage["seconds"]),
            )
        )
    if not rows:
        return []
    lines = [
        f"### predict --images on large images (DeepLabv3+ resnet18, scale 1 + flip, "
        f"--window {int(s['predict_window'])}, overlap 0.25)",
        "",
    ]
    lines += _table(
        ["image (w x h)", "MP", "windows", "predict s", "MP/s", "predict peak RSS MB",
         "whole-image forward s", "forward peak RSS MB", "forward s / predict s"],
        rows,
    )  # fmt: skip
    lines += [
        "One image per process, each process measured alone (benchmarks/predict_images.py): "
        "predict is the whole stage (checkpoint load, decode, windows, merge, PNG write); the "
        "forward is the same network and views on the whole image at once, in memory. "
        "Windows overlap, so they compute more pixels than the image has; the forward's "
        "memory grows with the image, predict's stops at one window's.",
        "",
    ]
    return lines


def _precision_tables(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    precision = _mode_tables(
        report,
        "precision",
        "### Precision: fp32 against bf16 (CPU autocast) and channels_last",
        "Each stage's network work in the four modes, taking turns in one process "
        "(benchmarks/precision.py says what each row runs); ratios are images/s over fp32 "
        f"NCHW's, {s['size']} px, training batch {s['train_batch']}. The default, `--amp auto`, "
        "runs bf16 + channels_last on a CPU with native bf16 (as `--amp bf16` does anywhere) "
        "and fp32 NCHW elsewhere (as `--amp gpu` or `off` do on any CPU); the stage rows "
        "above are fp32 NCHW.",
    )
    folding = _mode_tables(
        report,
        "fold",
        "### Inference with BatchNorm folded into the convolutions",
        "The inference rows above in bf16 + channels_last as the stages ran them before "
        "(BatchNorm layers of their own, autocast casting every convolution's weights on "
        "every call) and as `Predictor.prepare` runs them now (`_folded`: BatchNorm folded "
        "into the convolutions, which are cast once), beside fp32 NCHW (never folded, so "
        "that its bits stay those of every figure measured before), taking turns in one "
        "process; ratios are images/s over fp32's.",
    )
    return precision + folding


def _mode_tables(report: dict[str, Any], job: str, heading: str, text: str) -> list[str]:
    """One table per backbone of a job whose numbers are "STAGE|MODE_images_per_s" and
    "STAGE|MODE_ratio" (over the first mode)."""
    med = report["medians"]
    lines = [heading, "", text, ""]
    for b in report["settings"]["backbones"]:
        row = med.get(f"{job} {b}")
        if row is None:
            continue
        # "STAGE|MODE_ratio" keys, in the order measured (the parent imports no torch)
        keys = [m.groups() for k in row if (m := re.fullmatch(r"(.+)\|(.+)_ratio", k))]
        stages = list(dict.fromkeys(stage for stage, _ in keys))
        first, *modes = list(dict.fromkeys(mode for _, mode in keys))
        lines += [f"{b}:", ""]
        lines += _table(
            ["stage", f"{first} images/s", *(f"{mode} / {first}" for mode in modes)],
            [
                (
                    stage,
                    _fmt(row[f"{stage}|{first}_images_per_s"]),
                    *(_fmt(row[f"{stage}|{mode}_ratio"]) for mode in modes),
                )
                for stage in stages
            ],
        )
    return lines if len(lines) > 4 else []


def findings(report: dict[str, Any]) -> list[str]:
    """What the numbers show, misses first with the cause the measurements point at; causes
    found by profiling belong in the notes below the marker."""
    machine, med = report["machine"], report["medians"]
    out = []
    busy = report.get("busy_cores_before")
    if busy is not None and busy > 0.25:
        out.append(
            f"Other jobs were running ({busy:.1f} of {machine['usable_cores']} cores busy just "
            "before the run): the ratios are noisier than on a quiet machine."
        )
    for row in report["targets"]:
        if not row["pass"]:
            out.append(
                f"MISS {row['stage']}: {row['figure']} = "
                f"{_fmt(row['measured'], percent=row['percent'])} "
                f"(target {row['target']})."
            )
    pseudo = med["make-pseudo"]
    if pseudo["speedup_per_core"] < 0.85 <= pseudo["steady_speedup_per_core"]:
        out.append(
            f"make-pseudo: the worker pool's start-up ({_fmt(pseudo['pool_start_s'])} s) is what "
            f"a {int(pseudo['images'])}-image split feels; past it the speed-up is "
            f"{_fmt(pseudo['steady_speedup_per_core'])} per core, and on VOC (10,582 images "
            "of ~500 x 375) the start-up is a fraction of one image's CRF."
        )
    if not out:
        out.append("Every target is met.")
    return out


def kept_notes(path: Path) -> str:
    if not path.is_file():
        return ""
    text = path.read_text()
    return text.split(NOTES_MARKER, 1)[1] if NOTES_MARKER in text else ""


# -- main -------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--json", type=Path, default=Path("runs/bench/bench.json"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny inputs: a seconds-long check")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--no-resnet50", action="store_true", help="skip the ResNet-50 row")
    parser.add_argument(
        "--threads", type=int, help="torch threads per process (default: all cores)"
    )
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(*args.child)
    # The parent never imports torch: a process started by one that holds torch reports the
    # parent's memory as its own peak (Linux keeps ru_maxrss across exec).
    args.json.parent.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="work-", dir=args.json.parent))
    work.mkdir(parents=True, exist_ok=True)
    spec = {**(TINY_SIZES if args.tiny else DEFAULT_SIZES), "work": str(work)}
    spec["threads"] = args.threads
    if args.no_resnet50:
        spec["backbones"] = spec["backbones"][:1]
    log = args.json.with_suffix(".log")
    log.write_text("")
    load_before = os.getloadavg()[0]
    busy_before = busy_cores()
    started = time.perf_counter()
    try:
        say(f"bench: preparing demo data in {work} (log {log})")
        prepared = run_child(Job("prepare", "prepare", {}), spec, log)
        runs: dict[str, list[dict[str, float]]] = {}
        for repeat in range(args.repeats):
            for job in plan(spec["backbones"], spec["large_sides"]):
                numbers = run_child(job, spec, log)
                runs.setdefault(job.key, []).append(numbers)
                say(
                    f"bench: [{repeat + 1}/{args.repeats}] {job.key}: "
                    f"{numbers['process_seconds']:.1f} s"
                )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "json": str(args.json),
        "repeats": args.repeats,
        "machine": machine_description(),
        "load": [load_before, os.getloadavg()[0]],
        "busy_cores_before": busy_before,
        "settings": {**spec, "work": None},
        "prepare": prepared,
        "seconds": time.perf_counter() - started,
        "runs": runs,
        "medians": {key: medians(values) for key, values in runs.items()},
    }
    train = report["medians"]["train-cam"]
    report["derived"] = {
        "voc_eval_share": projected_voc_eval_share(train, spec),
    }
    report["targets"] = target_rows(report)
    report["findings"] = findings(report)
    write_json(args.json, finite_or_none(report))
    atomic_write_bytes(args.out, render(report, kept_notes(args.out)).encode())
    say(f"bench: wrote {args.out} and {args.json} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench` must not rot: the script runs end to end on tiny inputs and reports every
figure, and its pure helpers compute what BENCHMARKS.md claims."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"

# Every figure the report quotes, per measurement process; all finite and positive.
FIGURES = {
    "machine": ["matmul_gflops", "threads"],
    "make-cam resnet18": [
        "forward_gflop_per_image",
        "forward_gflops",
        "make_cam_gflop_per_image",
        "b1_images_per_s",
        "b1_gflops",
        "b1_forward_ratio",
        "b4_images_per_s",
        "b4_gflops",
        "b4_forward_ratio",
    ],
    "eval-cam": ["sweep_seconds", "single_seconds", "sweep_images_per_s", "sweep_ratio"],
    "make-pseudo": ["one_worker_images_per_s", "all_cores_images_per_s", "speedup_per_core"],
    "train-cam": [
        "baseline_step_s",
        "puzzle_step_s",
        "loader_step_s",
        "puzzle_ratio",
        "loader_ratio",
        "eval_s",
        "eval_share",
    ],
    "precision resnet18": [
        f"{stage}|{mode}_{figure}"
        for stage in (
            "train-cam plain",
            "train-cam puzzle",
            "train-seg",
            "train-aff",
            "make-cam",
            "make-cam x4",
            "predict",
            "make-rw",
        )
        for mode in ("fp32", "fp32_cl", "bf16", "bf16_cl")
        for figure in ("images_per_s", "ratio")
    ],
    "fold resnet18": [
        f"{stage}|{run}_{figure}"
        for stage in ("make-cam", "make-cam x4", "predict", "make-rw")
        for run in ("fp32", "bf16_cl", "bf16_cl_folded")
        for figure in ("images_per_s", "ratio")
    ],
    "predict-images 48": ["megapixels", "seconds", "megapixels_per_s", "windows"],
    "predict-images 96": ["megapixels", "seconds", "megapixels_per_s", "windows"],
    "segment-forward 96": ["megapixels", "seconds", "megapixels_per_s"],
}


def load_script():
    spec = importlib.util.spec_from_file_location("bench_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_bench_reports_every_stage(tmp_path: Path) -> None:
    bench = load_script()
    out, json_path = tmp_path / "BENCHMARKS.md", tmp_path / "runs" / "bench.json"
    out.write_text(f"# stale numbers\n{bench.NOTES_MARKER}\nA profiling note by hand.\n")
    command = [sys.executable, str(SCRIPT), "--tiny", "--repeats", "1", "--threads", "1",
               "--out", str(out), "--json", str(json_path)]  # fmt: skip
    subprocess.run(command, check=True, timeout=600, capture_output=True)

    report = json.loads(json_path.read_text())
    for key, fields in FIGURES.items():
        assert len(report["runs"][key]) == 1
        figures = report["medians"][key]
        for field in [*fields, "peak_rss_mb", "import_rss_mb"]:
            assert math.isfinite(figures[field]) and figures[field] > 0, (key, field)
        # a process tree's peak cannot be below what the imports alone hold
        assert figures["peak_rss_mb"] >= figures["import_rss_mb"]
    batched = report["medians"]["make-cam resnet18"]["b4_max_abs_diff"]
    assert 0 <= batched <= 1e-4  # batching images per scale gives the per-image CAMs
    assert len(report["targets"]) == 12  # 7, and 5 bf16 rows per backbone
    precision = report["medians"]["precision resnet18"]
    assert precision["make-cam|fp32_ratio"] == 1.0
    assert all(math.isfinite(row["measured"]) for row in report["targets"])

    text = out.read_text()
    for heading in ("## Machine", "## Machine limits", "### make-cam", "### eval-cam",
                    "### make-pseudo", "### train-cam", "### Precision",
                    "### Inference with BatchNorm folded", "## Targets",
                    "## Findings"):  # fmt: skip
        assert heading in text
    assert "stale numbers" not in text and text.endswith("A profiling note by hand.\n")
    assert report["command"] in text
    target_lines = [line for line in text.splitlines() if line.endswith(("| PASS |", "MISS** |"))]
    assert len(target_lines) == 12
    assert "| train-aff | " in text  # a row of the precision table
    assert "| make-rw | " in text.split("### Inference with BatchNorm folded")[1]
    # predict --images: 48 x 36 fits the tiny preset's 64 px window; 96 x 72 takes 2 x 2
    assert report["medians"]["predict-images 48"]["windows"] == 1
    assert report["medians"]["predict-images 96"]["windows"] == 4
    assert "| 96 x 72 | " in text and "### predict --images on large images" in text
    matmul = report["medians"]["machine"]["matmul_gflops"]
    assert f"{matmul:.1f} GFLOP/s" in text
    assert not list(json_path.parent.glob("work-*"))  # the scratch folder is removed


def test_alternate_takes_turns_until_long_enough() -> None:
    from benchmarks.common import alternate

    calls: list[str] = []

    def run(name: str, seconds: float):
        def once() -> float:
            calls.append(name)
            return seconds

        return once

    medians = alternate({"a": run("a", 0.5), "b": run("b", 0.25)}, min_seconds=1.0, min_rounds=1)
    assert calls == ["a", "b", "a", "b"]  # a reaches 1 s after two rounds
    assert medians == {"a": 0.5, "b": 0.25}


def test_targets_compare_in_the_right_direction() -> None:
    bench = load_script()
    rows = {t.field: t for t in bench.targets(["resnet18"])}
    ratio = rows["default_forward_ratio"]
    assert ratio.check(0.9) and not ratio.check(0.8)
    assert rows["sweep_ratio"].check(1.2) and not rows["sweep_ratio"].check(1.6)
    assert not rows["eval_share"].check(math.nan)


def test_each_precision_mode_reaches_the_trainer_and_the_predictor(monkeypatch) -> None:
    import torch

    from benchmarks import precision
    from wsss.engine import device
    from wsss.inference import Predictor

    monkeypatch.setattr(device, "_amp_setting", "gpu")
    monkeypatch.setenv(device.CHANNELS_LAST_ENV, "")  # restored (unset) after the test
    expected = {"fp32": (None, torch.contiguous_format), "fp32_cl": (None, torch.channels_last),
                "bf16": (torch.bfloat16, torch.contiguous_format),
                "bf16_cl": (torch.bfloat16, torch.channels_last)}  # fmt: skip
    assert set(expected) == set(precision.MODES)
    for mode, (dtype, layout) in expected.items():
        policy = precision._in_mode(mode)
        predictor = Predictor(torch.nn.Identity(), torch.device("cpu"))
        assert (policy.dtype, policy.memory_format) == (dtype, layout), mode
        assert (predictor.amp.dtype, predictor.memory_format) == (dtype, layout), mode


def test_the_batched_make_cam_row_is_named_for_the_stage_s_cpu_batch() -> None:
    """bench.py names the row without importing torch; precision.py measures it at the batch
    make-cam runs on the CPU."""
    import torch

    from benchmarks import precision
    from wsss.inference import default_batch_size

    assert load_script().CAM_BATCHED == precision.CAM_BATCHED
    assert default_batch_size(torch.device("cpu")) == precision.CAM_BATCH
    assert f"make-cam x{precision.CAM_BATCH}" == precision.CAM_BATCHED

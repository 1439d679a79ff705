"""`make bench-gpu` must work the first time it meets a GPU: the same code runs end to end on
the CPU with tiny sizes, every row carries positive numbers, and its section of BENCHMARKS.md
is replaced without touching the rest."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
STAGES = [
    "train-cam plain",
    "train-cam Puzzle-CAM",
    "train-cam plain, losses read every step",
    "train-cam Puzzle-CAM, losses read every step",
    "train-seg",
    "train-aff",
    "make-cam",
    "predict",
    "make-rw",
]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def _script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_gpu", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_dry_run_measures_every_stage(tmp_path: Path) -> None:
    out, report = tmp_path / "BENCHMARKS.md", tmp_path / "bench_gpu.json"
    out.write_text("# Benchmarks\n\nthe CPU figures\n")
    command = [sys.executable, str(SCRIPT), "--allow-cpu", "--quick", "--out", str(out)]
    command += ["--json", str(report), "--work", str(tmp_path)]
    subprocess.run(command, check=True, timeout=900, capture_output=True, env=_env())
    result = json.loads(report.read_text())
    rows = {row["stage"]: row for row in result["rows"]}
    assert list(rows) == STAGES
    for name, row in rows.items():
        for key in ("images_per_s", "ceiling_images_per_s", "ratio", "wall_s"):
            assert row[key] > 0, (name, key)
        assert row["ratio"] == pytest.approx(row["images_per_s"] / row["ceiling_images_per_s"])
        if row["kind"] == "train":
            assert row["loader_images_per_s"] > 0 and row["timed_images"] > 0, name
            assert row["default_loader_images_per_s"] > 0, name  # a user's default workers
        else:
            assert row["images"] > 0 and 0 < row["work_s"] <= row["wall_s"], name
            # the steady rate: the stage once more on twice the images
            assert row["double_images"] == 2 * row["images"] and row["fixed_s"] >= 0, name
            assert row["double_work_s"] > 0 and row["single_run_images_per_s"] > 0, name
    assert result["startup"]["import_s"] > 0 and result["machine"]["device"] == "cpu"
    assert rows["make-rw"]["walk_alone_images_per_s"] > 0  # how much of make-rw is the walk
    text = out.read_text()
    assert "make-rw's walk alone (batch" in text
    assert "The loader alone with a user's default 0 processes" in text
    assert text.startswith("# Benchmarks\n\nthe CPU figures\n")
    assert all(f"| {name} |" in text for name in STAGES)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("bench-gpu-")] == []


def test_section_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    bench = _script()
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nCPU table\n")
    first = f"{bench.START_MARKER}\nfirst run\n{bench.END_MARKER}\n"
    bench.write_section(path, first)
    path.write_text(path.read_text() + "notes after\n")
    bench.write_section(path, f"{bench.START_MARKER}\nsecond run\n{bench.END_MARKER}\n")
    text = path.read_text()
    assert "first run" not in text and text.count("second run") == 1
    assert text.startswith("# Benchmarks\n\nCPU table\n") and text.endswith("notes after\n")


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    env = {**_env(), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--json", str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "bench-gpu: no CUDA GPU on this machine, nothing measured"
    ]
    assert not out.exists()

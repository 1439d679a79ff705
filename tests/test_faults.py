"""Fault injection: kill -9 in the middle of a stage and run it again, a disk that fills up,
truncated checkpoints, manifests and CAM files.

The killed runs are real `wsss` processes (`python -m cli.main`), killed with SIGKILL as soon
as they have written part of their output, so nothing in the process gets a chance to clean
up. The re-runs go through the same CLI. See docs/reliability.md for the table these prove.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_tinyvoc import (
    cams_from_mask,
    make_tiny_voc,
    one_torch_thread,
    save_model,
    wsss_process,
)

from cli.main import main
from wsss.camfile import load_cam_file, save_cam_file
from wsss.data.palette import IGNORE, read_label_png
from wsss.data.voc import VocDataset
from wsss.engine.checkpoint import load_checkpoint
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog")
N, SIZE = 40, 48  # enough images for a kill to land mid-run
KILL_AFTER = 4  # output files written before the kill
TIMEOUT = 180.0


@pytest.fixture(autouse=True)
def _quiet_one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WSSS_QUIET", "1")
    with one_torch_thread():
        yield


@dataclass(frozen=True)
class World:
    voc: VocDataset
    classifier: Path
    segmenter: Path
    cams: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A 40-image dataset, random ResNet-18 checkpoints of both kinds, CAMs from the masks."""
    base = tmp_path_factory.mktemp("faults")
    voc = VocDataset.open(make_tiny_voc(base / "voc", n=N, size=SIZE, classes=CLASSES))
    torch.manual_seed(0)
    classifier = CamClassifier("resnet18", len(CLASSES))
    segmenter = DeepLabV3Plus("resnet18", len(CLASSES) + 1)
    save_model(base / "cls.pt", classifier, CLASSES)
    save_model(base / "seg.pt", segmenter, CLASSES)
    cams = base / "cams"
    for image_id in voc.split_ids("train"):
        save_cam_file(cams / f"{image_id}.npy", cams_from_mask(voc, image_id))
    return World(voc, base / "cls.pt", base / "seg.pt", cams)


# -- running and killing real processes ----------------------------------------------------------


def start(args: list[str]) -> subprocess.Popen:
    """`wsss ARGS` in a new process group (so cleanup can reach every child it starts)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    return wsss_process(args, env, start_new_session=True)


def kill_when(process: subprocess.Popen, ready: Callable[[], bool]) -> None:
    """SIGKILL the process (not its children) as soon as `ready()` holds."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"finished before the kill: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the run never reached the point to kill it at")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def group_exits(process: subprocess.Popen, timeout: float = 20.0) -> bool:
    """Whether every process of the killed run's group (pool workers...) exits by itself."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; whatever is left of their groups is killed afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):  # the whole group has exited
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stderr.close()


def finished_files(out: Path, suffix: str) -> list[Path]:
    return sorted(out.glob(f"*{suffix}"))  # glob's "*" skips the hidden .<name>.tmp files


def mtimes(paths: list[Path]) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in paths}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# -- per-image stages: kill -9 halfway, run again --------------------------------------------------


@dataclass(frozen=True)
class Stage:
    suffix: str
    args: Callable[[World, Path], list[str]]
    check: Callable[[World, Path], None]  # raises if an output file is not complete and valid


def _check_cam(world: World, path: Path) -> None:
    record = load_cam_file(path, len(CLASSES), (SIZE, SIZE))
    expected = [0, *(c + 1 for c in world.voc.image_classes(path.stem))]
    assert record.keys.tolist() == expected


def _check_label(world: World, path: Path) -> None:
    label = read_label_png(path)
    assert label.shape == (SIZE, SIZE)
    assert set(np.unique(label).tolist()) <= {*range(len(CLASSES) + 1), IGNORE}


def _make_cam_args(world: World, out: Path) -> list[str]:
    return ["make-cam", "--checkpoint", str(world.classifier), "--data", str(world.voc.root),
            "--split", "train", "--out", str(out), "--scales", "1.0,1.5", "--device", "cpu",
            "--workers", "0"]  # fmt: skip


def _make_pseudo_args(world: World, out: Path) -> list[str]:
    return ["make-pseudo", "--cams", str(world.cams), "--data", str(world.voc.root),
            "--split", "train", "--out", str(out), "--threshold", "0.3", "--crf-iters", "40",
            "--workers", "2"]  # fmt: skip


def _predict_args(world: World, out: Path) -> list[str]:
    return ["predict", "--checkpoint", str(world.segmenter), "--data", str(world.voc.root),
            "--split", "train", "--out", str(out), "--scales", "1.0", "--device", "cpu",
            "--workers", "0"]  # fmt: skip


STAGES = {
    "make-cam": Stage(".npy", _make_cam_args, _check_cam),
    "make-pseudo": Stage(".png", _make_pseudo_args, _check_label),
    "predict": Stage(".png", _predict_args, _check_label),
}


@pytest.mark.parametrize("name", list(STAGES))
def test_kill_9_halfway_then_rerun_finishes_without_redoing_work(
    world: World, tmp_path: Path, processes: list, name: str
) -> None:
    stage, out = STAGES[name], tmp_path / "out"
    if name == "make-pseudo":
        pytest.importorskip("pydensecrf")
    process = start(stage.args(world, out))
    processes.append(process)
    kill_when(process, lambda: len(finished_files(out, stage.suffix)) >= KILL_AFTER)
    # Only the parent was killed: make-pseudo's CRF pool workers must notice and exit.
    assert group_exits(process), "processes of the killed run kept running"

    before = finished_files(out, stage.suffix)
    assert KILL_AFTER <= len(before) < N, "the kill did not land mid-run"
    for path in before:  # atomic writes: whatever exists is complete
        stage.check(world, path)
    assert manifest(out)["complete"] is False
    stamps = mtimes(before)

    assert main(stage.args(world, out)) == 0
    after = finished_files(out, stage.suffix)
    assert [p.stem for p in after] == world.voc.split_ids("train")
    for path in after:
        stage.check(world, path)
    assert mtimes(before) == stamps, "files finished before the kill were written again"
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert manifest(out)["complete"] is True and manifest(out)["files"] == N


# -- trainers: kill -9 mid-epoch, --resume ---------------------------------------------------------

TRAIN_N, EPOCHS = 8, 3
TRAIN_COMMON = ["--split", "train", "--backbone", "resnet18", "--pretrained", "none",
                "--crop", "32", "--batch-size", "2", "--device", "cpu", "--workers", "0",
                "--epochs", str(EPOCHS), "--seed", "3"]  # fmt: skip
TRAINERS = {
    "train-cam": ["--scale-range", "32,40", "--optimizer", "adamw", "--lr", "1e-3",
                  "--schedule", "cosine", "--alpha", "1"],
    "train-seg": ["--scale-range", "32,48", "--lr", "0.01"],
}  # fmt: skip
KINDS = {"train-cam": "cam_classifier", "train-seg": "deeplab"}


@pytest.fixture(scope="module")
def train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_voc(tmp_path_factory.mktemp("train"), n=TRAIN_N, size=40)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_trainer_killed_mid_epoch_resumes_to_the_uninterrupted_weights(
    train_root: Path, tmp_path: Path, processes: list, trainer: str
) -> None:
    def args(out: Path) -> list[str]:
        return [trainer, "--data", str(train_root), "--out", str(out), *TRAIN_COMMON,
                *TRAINERS[trainer]]  # fmt: skip

    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = start(args(straight_dir))
    killed = start(args(killed_dir))
    processes += [straight, killed]

    # Killed on an event, not after a sleep: the first checkpoint appears at the end of epoch
    # 1 of 3, so however fast the machine the kill lands in epoch 2 with two epochs to go.
    kill_when(killed, lambda: (killed_dir / "last.pt").is_file())
    saved = load_checkpoint(killed_dir / "last.pt", KINDS[trainer])
    assert saved["epoch"] < EPOCHS and not (killed_dir / "final.pt").exists()
    # What a kill during a checkpoint write leaves: a hidden temporary, never a torn last.pt.
    (killed_dir / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")

    assert main([*args(killed_dir), "--resume"]) == 0
    assert straight.wait(timeout=TIMEOUT) == 0, straight.stderr.read().decode()[-2000:]
    a = load_checkpoint(straight_dir / "final.pt", KINDS[trainer])["model"]
    b = load_checkpoint(killed_dir / "final.pt", KINDS[trainer])["model"]
    assert a.keys() == b.keys()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    assert losses(killed_dir) == losses(straight_dir) and len(losses(straight_dir)) == EPOCHS
    assert not list(killed_dir.glob(".*.tmp"))


# -- a disk that fills up -----------------------------------------------------------------------


def test_full_disk_is_one_line_and_the_rerun_resumes(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(world.segmenter), "--data", str(world.voc.root),
            "--split", "val", "--out", str(out), "--device", "cpu", "--workers", "0",
            "--no-flip"]  # fmt: skip
    real_fsync, calls = os.fsync, []

    def fsync_until_full(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 4:  # the manifest and three label files fit, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {out}") and "No space left on device" in error
    assert len(error.splitlines()) == 1
    written = finished_files(out, ".png")
    assert len(written) == 3 and not list(out.glob(".*.tmp"))
    for path in written:
        _check_label(world, path)
    stamps = mtimes(written)

    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed
    assert main(args) == 0
    assert len(finished_files(out, ".png")) == len(world.voc.split_ids("val"))
    assert mtimes(written) == stamps


# -- truncated files ------------------------------------------------------------------------------


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def one_line_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_truncated_checkpoint(world: World, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "cls.pt"
    broken.write_bytes(world.classifier.read_bytes())
    truncate(broken)
    args = ["make-cam", "--checkpoint", str(broken), "--data", str(world.voc.root),
            "--split", "val", "--out", str(tmp_path / "cams"), "--device", "cpu"]  # fmt: skip
    error = one_line_error(capsys, args)
    assert f"{broken}: not a readable checkpoint (truncated" in error


def test_truncated_last_checkpoint_on_resume(train_root: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train-cam", "--data", str(train_root), "--out", str(run), *TRAIN_COMMON,
            *TRAINERS["train-cam"]]  # fmt: skip
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    truncate(run / "last.pt", 0.3)
    error = one_line_error(capsys, [*args, "--resume"])
    assert f"{run / 'last.pt'}: not a readable checkpoint (truncated" in error


def test_truncated_manifest_of_a_stage_output(world: World, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(world.segmenter), "--data", str(world.voc.root),
            "--split", "val", "--out", str(out), "--device", "cpu", "--workers", "0",
            "--no-flip"]  # fmt: skip
    assert main(args) == 0
    truncate(out / "manifest.json")
    error = one_line_error(capsys, args)
    assert f"{out / 'manifest.json'}: not valid JSON (truncated or corrupt?)" in error
    # `wsss eval` reads the same manifest to find the split
    error = one_line_error(capsys, ["eval", "--pred", str(out), "--gt", str(world.voc.root)])
    assert f"{out / 'manifest.json'}: not valid JSON" in error


@pytest.mark.parametrize("fmt", ["npy", "npz"])
@pytest.mark.parametrize("command", ["make-pseudo", "eval-cam"])
def test_truncated_cam_file(world: World, tmp_path: Path, capsys, fmt: str, command: str) -> None:
    cams = tmp_path / "cams"
    ids = world.voc.split_ids("val")
    for image_id in ids:
        save_cam_file(cams / f"{image_id}.{fmt}", load_cam_file(world.cams / f"{image_id}.npy"))
    broken = truncate(cams / f"{ids[1]}.{fmt}")
    common = ["--cams", str(cams), "--split", "val"]
    if command == "make-pseudo":  # default --workers: the error comes from a pool worker
        args = [command, *common, "--data", str(world.voc.root), "--out", str(tmp_path / "o")]
        args += ["--threshold", "0.3", "--no-crf"]
    else:
        args = [command, *common, "--gt", str(world.voc.root), "--no-plot"]
    error = one_line_error(capsys, args)
    assert f"{broken}: unreadable CAM file (truncated or corrupt?)" in error

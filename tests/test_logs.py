"""A batch job's log: with its output in a file, every stage writes whole lines as it goes
(a trainer one per epoch, a per-image stage one per tenth of its images), never a live bar
cut to a width."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wsss.ui import LineProgress

ROOT = Path(__file__).resolve().parents[1]


def test_line_progress_prints_each_step_and_the_end(capsys, monkeypatch) -> None:
    monkeypatch.delenv("WSSS_QUIET", raising=False)
    with LineProgress("img") as progress:
        task = progress.add_task("make-cam", total=25, status="")
        for _ in range(25):
            progress.advance(task)
    lines = capsys.readouterr().err.strip().splitlines()
    # a line at each tenth of 25 (a step of 3 images: 9 steps, 3 .. 24), then at 25 (done)
    assert len(lines) == math.ceil(25 / 3)
    assert lines[-1].startswith("make-cam: 25/25 img (100%)") and "eta 0:00:00" in lines[-1]
    with LineProgress("img", every=4) as progress:  # a trainer: one line an epoch
        task = progress.add_task("train-cam", total=12, status="")
        for epoch in range(3):
            progress.update(task, advance=4, status=f"epoch {epoch + 1}/3  loss 0.5")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split("  ")[-2] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


@pytest.mark.slow
def test_a_piped_pipeline_logs_every_epoch_and_tenth(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = ["demo.train=12", "demo.val=6", "demo.size=64", "train_cam.epochs=2",
            "train_cam.batch_size=4", "train_cam.crop=64", "train_cam.warmup_epochs=0",
            "train_seg.epochs=2", "train_seg.batch_size=4", "train_seg.crop=64",
            "train_seg.warmup_epochs=0", "train_seg.scale_range=48,80",
            "make_cam.scales=1"]  # fmt: skip
    command = [sys.executable, "-m", "cli.main", "pipeline", "demo", "--out", str(out),
               "--device", "cpu", "--loader-workers", "0", "--crf-workers", "1"]  # fmt: skip
    for item in sets:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "40"}
    env.pop("WSSS_QUIET", None)
    log = tmp_path / "job.log"
    with log.open("w") as sink:  # what `make demo > demo.log 2>&1` gives a batch job
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                              timeout=900)  # fmt: skip
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    assert not re.search(r"^[\w-]+ ━", text, re.M) and "…" not in text  # lines, no cut bar
    for stage in ("train-cam", "train-seg"):
        epochs = re.findall(rf"^{stage}: .*\bepoch (\d)/2\b.*$", text, re.M)
        assert epochs == ["1", "2"], (stage, text[-2000:])
        line = next(li for li in text.splitlines() if li.startswith(f"{stage}: ") and "2/2" in li)
        assert all(word in line for word in ("img/s", "elapsed", "eta", "loss", "lr"))
    # per-image stages: a line whenever a batch passes a tenth of the images (a step of 2 of
    # 12; a batch of 4 passes two at once), the last at 100%
    for stage, images in (("make-cam", 12), ("make-pseudo", 12), ("predict", 6)):
        lines = [li for li in text.splitlines() if li.startswith(f"{stage}: ")]
        counts = [int(re.match(rf"{stage}: (\d+)/", li).group(1)) for li in lines]
        assert 2 <= len(lines) <= math.ceil(images / math.ceil(images / 10)), (stage, lines)
        assert counts == sorted(set(counts)) and counts[-1] == images, (stage, lines)
        assert f"{images}/{images} img (100%)" in lines[-1]

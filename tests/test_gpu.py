"""The paths only a GPU takes, against the CPU's results: skipped without CUDA.

On a GPU the per-image stages read their results back one batch late from page-locked
memory, upload CAMs the same way, train-aff gathers its path maxima, and the walk runs on
cuSPARSE with int32 indices. bf16 autocast makes the networks' outputs differ from the
CPU's fp32 ones by rounding, so the stages are compared loosely: a result read before its
copy finished, or handed to the wrong images, would differ by far more. Run on a GPU
machine with `pytest -q -m gpu` (docs/gpu.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RW_SIZE
from helpers_tinyvoc import stage_config

from wsss.affinity import pair_affinities, pair_offsets, random_walk, transition_matrix
from wsss.camfile import CamRecord, load_cam_file
from wsss.data.palette import read_label_png
from wsss.stages import make_cam, make_rw, predict

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU"),
]
CUDA = torch.device("cuda")


def test_gathered_training_path_on_the_gpu_matches_the_cpu() -> None:
    torch.manual_seed(0)
    offsets = pair_offsets(5)
    boundary = torch.rand(4, 32, 40)
    weights = torch.randn(4, len(offsets), 32, 40)
    results = []
    for device in (torch.device("cpu"), CUDA):
        leaf = boundary.to(device).requires_grad_()
        affinities = pair_affinities(leaf, offsets)  # per offset on the CPU, gathered on CUDA
        (affinities * weights.to(device)).sum().backward()
        results.append((affinities.detach().cpu(), leaf.grad.cpu()))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-4)


def test_the_batched_walk_on_the_gpu_matches_the_cpu() -> None:
    torch.manual_seed(0)
    offsets = pair_offsets(5)
    affinities, maps = torch.rand(3, len(offsets), 24, 30), torch.rand(3, 2, 24, 30)
    walked = [
        random_walk(maps.to(d), transition_matrix(affinities.to(d), offsets, 10.0), 64).cpu()
        for d in (torch.device("cpu"), CUDA)
    ]
    torch.testing.assert_close(walked[1], walked[0], rtol=1e-4, atol=1e-5)


def test_walk_batch_on_the_gpu_matches_one_image_at_a_time() -> None:
    rng = np.random.default_rng(0)
    records = [
        CamRecord(np.arange(c + 1), rng.random((c, 6, 9), dtype=np.float32),
                  rng.random((c, 24, 36), dtype=np.float32))
        for c in (2, 0, 3)
    ]  # fmt: skip
    boundary = torch.rand(3, 6, 9, generator=torch.Generator().manual_seed(0))
    params = make_rw.RwParams(radius=3, exp_times=4)
    maps = [m.cpu().numpy() for m in make_rw.walk_batch(records, boundary.to(CUDA), params)]
    for i, record in enumerate(make_rw.refined_records(records, *maps)):
        alone = make_rw.refine_record(records[i], boundary[i], params)
        np.testing.assert_allclose(record.cam, alone.cam, atol=1e-4)
        np.testing.assert_allclose(record.hr_cam, alone.hr_cam, atol=1e-4)


def _both(run, config) -> tuple[Path, Path]:
    cpu = run(config).out
    gpu = run(type(config)(**{**vars(config), "device": "cuda", "out": Path(f"{cpu}_cuda")})).out
    return Path(cpu), Path(gpu)


def test_make_cam_on_the_gpu(cam_setup, tmp_path: Path) -> None:
    cpu, gpu = _both(make_cam.run, stage_config(make_cam.MakeCamConfig, cam_setup, tmp_path / "c"))
    files = sorted(cpu.glob("*.npy"))
    assert files and [p.name for p in files] == sorted(p.name for p in gpu.glob("*.npy"))
    for path in files:
        a, b = load_cam_file(path), load_cam_file(gpu / path.name)
        np.testing.assert_array_equal(a.keys, b.keys)
        assert np.abs(a.hr_cam - b.hr_cam).mean() < 0.05  # bf16 rounding, not another image


def test_predict_on_the_gpu(seg_setup, tmp_path: Path) -> None:
    config = stage_config(predict.PredictConfig, seg_setup, tmp_path / "p", batch_size=4)
    cpu, gpu = _both(predict.run, config)
    files = sorted(cpu.glob("*.png"))
    assert len(files) == 6
    for path in files:
        a, b = read_label_png(path), read_label_png(gpu / path.name)
        assert a.shape == b.shape and (a == b).mean() > 0.9


def test_make_rw_on_the_gpu(rw_setup: dict[str, Path], tmp_path: Path) -> None:
    config = make_rw.MakeRwConfig(
        checkpoint=rw_setup["checkpoint"], cams=rw_setup["cams"], data=rw_setup["root"],
        split="train", out=tmp_path / "rw", exp_times=4, device="cpu",
        loader_workers=0,
    )  # fmt: skip
    cpu, gpu = _both(make_rw.run, config)
    files = sorted(cpu.glob("*.npy"))
    assert len(files) == 6
    for path in files:
        a, b = load_cam_file(path), load_cam_file(gpu / path.name)
        assert a.hr_cam.shape == b.hr_cam.shape == (len(a.keys) - 1, RW_SIZE, RW_SIZE)
        assert np.abs(a.hr_cam - b.hr_cam).mean() < 0.05

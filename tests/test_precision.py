"""--amp: which precision and layout each setting gives on the CPU, and bf16 runs that stay
close to fp32 (losses, CAMs) while keeping fp32 where the maths needs it."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from helpers_tinyvoc import stage_config
from torch import nn

from cli.main import main
from wsss.amp import AMP_CHOICES, AMP_DEFAULT, Amp
from wsss.camfile import load_cam_file
from wsss.checkpoints import open_model
from wsss.configs.trainers import TrainCamConfig
from wsss.engine import device as device_module
from wsss.engine.device import amp_policy, cpu_has_native_bf16
from wsss.engine.trainer import LoopConfig
from wsss.errors import WsssError
from wsss.stages.make_cam import MakeCamConfig
from wsss.stages.make_cam import run as make_cam
from wsss.stages.pipeline import PipelineConfig

CPU = torch.device("cpu")
EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE = "flags\t: avx512f amx_tile amx_bf16 amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


def test_the_option_and_the_engine_name_the_same_choices() -> None:
    assert AMP_CHOICES == get_args(Amp) == ("gpu", "auto", "bf16", "off")
    assert AMP_DEFAULT == "auto"


def test_every_declaration_of_amp_takes_the_one_default() -> None:
    """The stages' options, the pipeline's, the trainer's loop, the checkpoint opener and the
    process setting all read wsss.amp.AMP_DEFAULT (issue #26: one place to flip it)."""
    defaults = {
        "make-cam option": MakeCamConfig.__dataclass_fields__["amp"].default,
        "train-cam option": TrainCamConfig.__dataclass_fields__["amp"].default,
        "pipeline": PipelineConfig.__dataclass_fields__["amp"].default,
        "loop": LoopConfig.__dataclass_fields__["amp"].default,
        "resolve_device": inspect.signature(device_module.resolve_device).parameters["amp"].default,
        "open_model": inspect.signature(open_model).parameters["amp"].default,
    }
    assert defaults == dict.fromkeys(defaults, AMP_DEFAULT)


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(EPYC, True), (SAPPHIRE, True), (GRAVITON3, True), (SKYLAKE, False), (GRAVITON2, False),
     ("", False), ("flags: avx512_bf16x\n", False)],
)  # fmt: skip
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo: str, native: bool) -> None:
    assert cpu_has_native_bf16(cpuinfo) is native


@pytest.mark.parametrize("native", [True, False])
def test_each_setting_on_the_cpu(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    monkeypatch.delenv(device_module.CHANNELS_LAST_ENV, raising=False)
    fp32 = (None, torch.contiguous_format)
    bf16 = (torch.bfloat16, torch.channels_last)
    expected = {"gpu": fp32, "off": fp32, "bf16": bf16, "auto": bf16 if native else fp32}
    for setting, (dtype, layout) in expected.items():
        policy = amp_policy(CPU, setting)
        assert (policy.dtype, policy.memory_format) == (dtype, layout), setting
        assert not policy.needs_scaler  # bf16 keeps fp32's range: no grad scaler
    with pytest.raises(WsssError, match="--amp must be one of"):
        amp_policy(CPU, "fp8")


@pytest.mark.parametrize("native", [True, False])
def test_the_process_setting_is_what_resolve_device_was_given(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(device_module, "_amp_setting", "gpu")
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    device = device_module.resolve_device("cpu", amp="bf16")
    assert amp_policy(device).dtype == torch.bfloat16
    assert device_module.runtime_info(device)["amp"] == "bfloat16"
    device_module.resolve_device("cpu", amp="off")
    assert amp_policy(device).dtype is None
    device_module.resolve_device("cpu")  # the default, auto: bf16 only where the CPU has it
    assert amp_policy(device).dtype == (torch.bfloat16 if native else None)


def test_the_layout_can_be_forced_for_the_benchmark(monkeypatch) -> None:
    monkeypatch.setenv(device_module.CHANNELS_LAST_ENV, "0")
    assert amp_policy(CPU, "bf16").memory_format == torch.contiguous_format
    monkeypatch.setenv(device_module.CHANNELS_LAST_ENV, "1")
    assert amp_policy(CPU, "off").memory_format == torch.channels_last


def test_a_model_returns_fp32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 12, 12)
    policy = amp_policy(CPU, "bf16")
    with policy.autocast():
        assert model(x).dtype == torch.bfloat16  # autocast's own output
    policy.keep_outputs_fp32(model)
    policy.keep_outputs_fp32(model)  # once only
    assert len(model._forward_hooks) == 1
    with policy.autocast():
        y = model(x)
    assert y.dtype == torch.float32
    # bf16 keeps about 3 significant digits: close to the fp32 result, not equal to it
    reference = model(x)
    assert 0 < (y - reference).abs().max() < 0.05 * reference.abs().max()


def test_make_cam_in_bf16_is_close_to_fp32_and_records_it(cam_setup, tmp_path: Path) -> None:
    tta = {"scales": (0.5, 1.0), "batch_size": 2}
    fp32 = make_cam(stage_config(MakeCamConfig, cam_setup, tmp_path / "a", amp="off", **tta))
    bf16 = make_cam(stage_config(MakeCamConfig, cam_setup, tmp_path / "b", amp="bf16", **tta))
    manifest = json.loads((bf16.out / "manifest.json").read_text())
    assert manifest["runtime"]["amp"] == "bfloat16"
    assert json.loads((fp32.out / "manifest.json").read_text())["runtime"]["amp"] == "off"
    worst = 0.0
    for path in sorted(fp32.out.glob("*.npy")):
        a, b = load_cam_file(path), load_cam_file(bf16.out / path.name)
        assert a.hr_cam.dtype == b.hr_cam.dtype == np.float32
        np.testing.assert_array_equal(a.keys, b.keys)
        worst = max(worst, float(np.abs(a.hr_cam - b.hr_cam).max()))
    # The CAMs (peak 1) move by bf16's rounding, not by a broken path (a wrong layout or
    # dtype would move them by O(1)).
    assert 0 < worst < 0.05


@pytest.mark.parametrize("command", ["make-cam", "predict", "make-rw"])
def test_bad_amp_is_a_one_line_error(cam_setup, tmp_path: Path, capsys, command: str) -> None:
    root, checkpoint = cam_setup
    args = [command, "--checkpoint", str(checkpoint), "--data", str(root), "--split", "train"]
    if command == "make-rw":
        args += ["--cams", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path / "o"), "--amp", "fp8"]) == 2
    err = capsys.readouterr().err
    assert "--amp" in err and "fp8" in err and "Traceback" not in err

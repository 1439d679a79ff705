"""Where training runs and in which precision: the device, the AMP policy and the seed.

CUDA code paths are chosen automatically when a GPU is there, so the same command runs on a
laptop CPU and on a GPU node; nothing calls `.cuda()` unconditionally.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from wsss.amp import AMP_CHOICES, AMP_DEFAULT
from wsss.errors import WsssError, check_choice
from wsss.io import note_runtime

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto", local_rank: int = 0, amp: str = AMP_DEFAULT) -> torch.device:
    """`auto` means CUDA when available; a process under torchrun takes GPU `local_rank`.
    `amp` is the precision of what runs on it from now on (`amp_policy`)."""
    set_amp(amp)
    if name not in DEVICE_CHOICES:
        raise WsssError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got '{name}'")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return _noted(torch.device("cpu"))
    if not torch.cuda.is_available():
        raise WsssError("--device cuda: no CUDA GPU is available (use --device cpu or auto)")
    if local_rank >= torch.cuda.device_count():
        raise WsssError(
            f"process with LOCAL_RANK {local_rank} has no GPU: only "
            f"{torch.cuda.device_count()} visible (lower torchrun --nproc_per_node)"
        )
    torch.cuda.set_device(local_rank)
    return _noted(torch.device("cuda", local_rank))


def runtime_info(device: torch.device) -> dict[str, Any]:
    """What decides a result's bits besides the seed, the options and the versions: the
    thread count (CPU kernels split sums by thread), the device and the AMP dtype."""
    dtype = amp_policy(device).dtype
    runtime: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "device": device.type,
        "amp": str(dtype).removeprefix("torch.") if dtype is not None else "off",
    }
    if device.type == "cuda":
        runtime["gpu"] = torch.cuda.get_device_name(device)
    return runtime


def runtime_differences(saved: object, now: dict[str, Any]) -> list[str]:
    """`key saved -> now` for each runtime setting that differs (all of them if unrecorded)."""
    saved = saved if isinstance(saved, dict) else {}
    return [
        f"{key} {saved.get(key, 'unrecorded')} -> {value}"
        for key, value in now.items()
        if saved.get(key) != value
    ]


def _noted(device: torch.device) -> torch.device:
    """Every manifest written from now on records this device with the thread count."""
    note_runtime(runtime_info(device))
    return device


# The --amp of the stage running in this process: set by `resolve_device`, read by every
# `amp_policy` after it (the trainer, its evaluation and the inference stages alike).
_amp_setting = AMP_DEFAULT
# Where the CPU's flag list names native bf16 arithmetic: x86's AVX512-BF16 or AMX, Arm's BF16.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (/proc/cpuinfo's flags; False where unknown).

    Without it torch emulates bf16 in fp32 and autocast only adds conversions, so `auto`
    keeps fp32 there.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and NATIVE_BF16_FLAGS & set(value.split()):
            return True
    return False


def set_amp(setting: str) -> None:
    """Select the precision of what runs next in this process (--amp)."""
    global _amp_setting
    check_choice("--amp", setting, AMP_CHOICES)
    _amp_setting = setting


@dataclass(frozen=True)
class AmpPolicy:
    """Mixed precision: on CUDA bf16 where supported, else fp16 with a grad scaler; on a CPU
    bf16 where asked for (`--amp bf16`, or `auto` on a CPU with native bf16)."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        # bf16 has fp32's exponent range: gradients do not underflow, no scaling needed.
        return self.dtype == torch.float16

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last on CUDA (tensor cores) and with the CPU's bf16 convolutions (oneDNN's
        blocked kernels). CPU fp32 stays NCHW although channels_last measured 0.99-1.46x
        there (BENCHMARKS.md, fp32_cl): it moves fp32's bits, in which every README and docs
        figure was measured; WSSS_CHANNELS_LAST=1 opts in."""
        forced = os.environ.get(CHANNELS_LAST_ENV)
        if forced in ("0", "1"):
            return torch.channels_last if forced == "1" else torch.contiguous_format
        if self.device_type == "cuda" or self.enabled:
            return torch.channels_last
        return torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def cast_convolutions(self, model: nn.Module) -> None:
        """Inference only: every Conv2d's weight and bias in the autocast dtype. Autocast
        casts them on every call otherwise (it caches casts only of tensors that require
        grad); the convolutions give the same bits either way. A model cast so runs only
        under `autocast()`."""
        if self.enabled:
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.to(self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is a no-op (and saves an empty state) unless fp16 is used."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)

    def keep_outputs_fp32(self, model: nn.Module) -> None:
        """Make `model` return fp32 under autocast, so that what follows its forward (the
        losses, the CAM normaliser, the merges, the metric, the walk's sums) runs in fp32."""
        if self.enabled and not getattr(model, _FP32_HOOKED, False):
            model.register_forward_hook(_outputs_to_fp32)
            setattr(model, _FP32_HOOKED, True)


CHANNELS_LAST_ENV = "WSSS_CHANNELS_LAST"  # 1 / 0 forces the layout (the benchmark's columns)
_FP32_HOOKED = "_wsss_fp32_outputs"


def _outputs_to_fp32(module: nn.Module, args: Any, output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, dict):
        return {key: _outputs_to_fp32(module, args, value) for key, value in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(_outputs_to_fp32(module, args, value) for value in output)
    return output


def amp_policy(device: torch.device, setting: str | None = None) -> AmpPolicy:
    """The precision `setting` (default: the process's --amp) gives on `device`.

    auto (the default): CUDA's mixed precision, bf16 on a CPU with native bf16, else fp32;
    gpu: CUDA's mixed precision, fp32 on any CPU; bf16: bf16 on any device; off: fp32.
    """
    setting = _amp_setting if setting is None else setting
    check_choice("--amp", setting, AMP_CHOICES)
    if setting == "off":
        return AmpPolicy(device.type, None)
    if device.type == "cuda":
        if setting == "bf16" and not torch.cuda.is_bf16_supported():
            raise WsssError("--amp bf16: this GPU has no bf16 (use --amp auto or off)")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return AmpPolicy("cuda", dtype)
    if setting == "bf16" or (setting == "auto" and cpu_has_native_bf16()):
        return AmpPolicy(device.type, torch.bfloat16)
    return AmpPolicy(device.type, None)


def memory_format(device: torch.device) -> torch.memory_format:
    """The tensor layout the process's precision runs fastest in on `device`."""
    return amp_policy(device).memory_format


def set_seed(seed: int) -> None:
    """Seed every generator a training run touches (python, numpy, torch CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All global generator states as tensors and lists, loadable with `weights_only=True`."""
    version, mt_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

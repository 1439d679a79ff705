"""Where training runs and in which precision: the device, the AMP policy and the seed.

CUDA code paths are chosen automatically when a GPU is there, so the same command runs on a
laptop CPU and on a GPU node; nothing calls `.cuda()` unconditionally.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wsss.errors import WsssError
from wsss.io import note_runtime

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` means CUDA when available; a process under torchrun takes GPU `local_rank`."""
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


@dataclass(frozen=True)
class AmpPolicy:
    """Mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler); none on CPU."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        # bf16 has fp32's exponent range: gradients do not underflow, no scaling needed.
        return self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is a no-op (and saves an empty state) unless fp16 is used."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def amp_policy(device: torch.device) -> AmpPolicy:
    if device.type != "cuda":
        return AmpPolicy(device.type, None)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AmpPolicy("cuda", dtype)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last speeds up convolutions with tensor cores; on CPU it brings nothing."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


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

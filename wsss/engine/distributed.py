"""torchrun / DistributedDataParallel in one place, so trainers never branch on it.

Run directly, everything here degrades to a single process (rank 0 of 1). Under `torchrun`
(RANK, WORLD_SIZE, LOCAL_RANK in the environment) the process group is created with NCCL on
GPUs and gloo on CPU; only rank 0 logs and writes files.
"""

from __future__ import annotations

import atexit
import contextlib
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from wsss.torchrun import env_info

# Rank 0 may evaluate alone while the others wait at a barrier: allow a long wait.
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; True if this call created it.

    The group lives until the process exits: several stages run in one process (a pipeline
    under torchrun) share it, since re-creating a gloo group in the same process is flaky.
    """
    info = env_info()
    if not info.distributed or is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    atexit.register(cleanup)
    return True


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


# How long a process at exit waits for the others before leaving the group anyway.
EXIT_BARRIER_TIMEOUT = timedelta(seconds=60)


def cleanup() -> None:
    """Leave the group at exit, after the others reach their exit too: a gloo process that
    tears its group down while another still holds a connection can abort that one (seen
    under load as `terminate called without an active exception` in a rank that had
    finished). A rank that died makes the barrier time out, and the group is left anyway."""
    if not is_initialized():
        return
    if dist.get_backend() == "gloo":
        # RuntimeError: another process is gone, nothing left to wait for.
        with contextlib.suppress(RuntimeError):
            dist.monitored_barrier(timeout=EXIT_BARRIER_TIMEOUT)
    dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (epoch loss sums, counts)."""
    return all_reduce_array(np.asarray(values, dtype=np.float64), device).tolist()


def all_reduce_array(array: np.ndarray, device: torch.device | None = None) -> np.ndarray:
    """Sum an array over ranks; it travels on `device` (default: this process's GPU under NCCL,
    which only reduces GPU tensors, else the CPU)."""
    if not is_initialized():
        return array
    if device is None:
        nccl = dist.get_backend() == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank.

    DDP syncs buffers at the start of each forward, so after the last step of an epoch each
    rank holds its own statistics; evaluating or saving needs the one model of rank 0.
    """
    if is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel when running under torchrun, the module itself otherwise."""
    if not is_initialized():
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of `module` (in place) normalising over all processes' images.

    On GPUs torch's SyncBatchNorm. It refuses CPU tensors (and DDP refuses it on CPU), so CPU
    processes (gloo) get `GlooSyncBatchNorm`, the same statistics from all-reduced sums.
    """
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return GlooSyncBatchNorm.of(module)
    for name, child in module.named_children():
        module.add_module(name, sync_batchnorm(child, device))
    return module


class _SumOverProcesses(torch.autograd.Function):
    """An all-reduce (sum) whose gradient is the all-reduced gradient: every process's loss
    depends on every process's inputs through the shared statistics."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        tensor = tensor.clone()
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _SumOverProcesses.apply(grad.contiguous(), ctx.group), None


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """SyncBatchNorm for CPU processes: the batch mean and variance over all processes'
    images (two all-reduces, the variance around the global mean), the running statistics
    updated as torch's BatchNorm does (unbiased variance)."""

    @classmethod
    def of(cls, layer: nn.modules.batchnorm._BatchNorm) -> GlooSyncBatchNorm:
        """A layer sharing `layer`'s parameters and buffers (the optimiser's objects)."""
        synced = cls(layer.num_features, layer.eps, layer.momentum, layer.affine,
                     layer.track_running_stats)  # fmt: skip
        synced.weight, synced.bias = layer.weight, layer.bias
        synced.running_mean, synced.running_var = layer.running_mean, layer.running_var
        synced.num_batches_tracked = layer.num_batches_tracked
        synced.train(layer.training)
        return synced

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_initialized() and world_size() > 1):
            return super().forward(input)
        group = dist.group.WORLD
        x = input.float()
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.size(1)])])
        total = _SumOverProcesses.apply(local, group)
        count = total[-1].detach()
        mean = total[:-1] / count
        centred = x - mean.view(shape)
        var = _SumOverProcesses.apply((centred * centred).sum(dims), group) / count
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            factor = self.momentum
            if factor is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                unbiased = var * (count / (count - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var), alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def make_sampler(dataset: Dataset, seed: int, shuffle: bool = True) -> EpochSampler:
    """Each rank's share of a shuffle that depends on (seed, epoch) only.

    A `DistributedSampler` is used even with one process: its order is a pure function of
    seed and epoch, so a resumed run shuffles exactly like the uninterrupted one.
    """
    inner = DistributedSampler(
        dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=seed
    )
    return EpochSampler(inner)


class EpochSampler(Sampler):
    """Yields (epoch, index) keys, so persistent loader workers see the current epoch.

    With `persistent_workers` each worker keeps its own copy of the dataset, and calling
    `set_epoch` on the main process copy would not reach them; passing the epoch with every
    index does. Use with `EpochDataset`.
    """

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner = inner
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class EpochDataset(Dataset):
    """Reads (epoch, index) keys and sets the wrapped dataset's epoch before loading."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None and getattr(self.dataset, "epoch", None) != epoch:
            set_epoch(epoch)
        return self.dataset[index]


def seed_worker(worker_id: int) -> None:
    """Give each loader worker distinct python/numpy seeds derived from torch's worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)

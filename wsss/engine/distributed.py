"""torchrun / DistributedDataParallel in one place, so trainers never branch on it.

Run directly, everything here degrades to a single process (rank 0 of 1). Under `torchrun`
(RANK, WORLD_SIZE, LOCAL_RANK in the environment) the process group is created with NCCL on
GPUs and gloo on CPU; only rank 0 logs and writes files.
"""

from __future__ import annotations

import atexit
import random
from collections.abc import Iterator
from datetime import timedelta

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


def cleanup() -> None:
    if is_initialized():
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

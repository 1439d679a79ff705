"""The torchrun environment, read in one place: rank, world size, local rank and processes per
machine (0, 1, 0 and 1 when run directly)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from wsss.errors import WsssError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """This process's place among the torchrun processes; a malformed variable is an error."""
    try:
        return DistInfo(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        )
    except ValueError as exc:
        raise WsssError(
            f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}"
        ) from None


def per_process_batch(batch_size: int, processes: int, accumulate: int = 1) -> int:
    """Images each process computes at a time: `--batch-size` is the total of one optimiser
    step, split over the processes and the `--accumulate` micro-batches. A batch that does not
    split evenly is one line naming the options that would fit."""
    parts = processes * accumulate
    if batch_size % parts == 0:
        return batch_size // parts
    fixes = []
    if batch_size % processes == 0 and accumulate > 1:
        share = batch_size // processes
        divisors = [d for d in range(1, share + 1) if share % d == 0]
        near = [max(d for d in divisors if d < accumulate)]
        near += [d for d in divisors if d > accumulate][:1]
        fixes.append("--accumulate " + " or ".join(map(str, near)))
    low, high = batch_size // parts * parts, (batch_size // parts + 1) * parts
    fixes.append("--batch-size " + " or ".join(str(v) for v in (low, high) if v > 0))
    raise WsssError(
        f"--batch-size {batch_size} does not split into {processes} process(es) x "
        f"--accumulate {accumulate} equal micro-batches: use {', or '.join(fixes)} "
        "(--batch-size is the total of one optimiser step)"
    )

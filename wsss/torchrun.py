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

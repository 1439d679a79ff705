"""Per-image stages (make-cam, make-pseudo, predict): which ids are left, and which are ours.

A stage writes one file per image atomically, so "finished" simply means "the output file
exists": a resumed run skips those. Under torchrun (RANK / WORLD_SIZE set) each process
takes every WORLD_SIZE-th id, so the same command spreads over several processes or machines
with no coordination.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsss.io import safe_child


@dataclass(frozen=True)
class ShardInfo:
    rank: int
    world_size: int


def shard_info() -> ShardInfo:
    """Rank and world size from the torchrun environment (0 / 1 when run directly)."""
    return ShardInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def shard(ids: Sequence[str], info: ShardInfo | None = None) -> list[str]:
    info = info or shard_info()
    return list(ids[info.rank :: info.world_size])


def output_path(out_dir: str | Path, image_id: str, suffix: str) -> Path:
    return safe_child(out_dir, image_id, suffix)


def pending_ids(ids: Sequence[str], out_dir: str | Path, suffix: str) -> list[str]:
    """Ids whose output file does not exist yet (finished files are never recomputed)."""
    return [i for i in ids if not output_path(out_dir, i, suffix).is_file()]


def clean_stale_temporaries(out_dir: str | Path) -> int:
    """Remove temp files left by a killed run (atomic writes never leave partial outputs)."""
    removed = 0
    directory = Path(out_dir)
    if directory.is_dir():
        for tmp in directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed

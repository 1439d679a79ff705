"""Per-image stages (make-cam, make-rw, make-pseudo, predict): which ids are left, which are ours.

A stage writes one file per image atomically, so "finished" simply means "the output file
exists": a resumed run skips those. Under torchrun (RANK / WORLD_SIZE set) each process
takes every WORLD_SIZE-th id, so the same command spreads over several processes or machines
with no coordination.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsss.errors import file_error
from wsss.io import ensure_dir, jsonable, read_manifest, safe_child, write_manifest
from wsss.torchrun import DistInfo, env_info

ShardInfo = DistInfo
shard_info = env_info


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


@dataclass
class SplitPlan:
    """A per-image stage's share of a split: this process's unfinished ids."""

    out: Path
    todo: list[str]
    skipped: int
    total: int


def plan_outputs(
    out: str | Path,
    ids: Sequence[str],
    suffix: str,
    stage: str,
    params: dict[str, Any],
    signature: Sequence[str],
) -> SplitPlan:
    """Prepare `out` for a (possibly resumed, possibly sharded) run and list what is left.

    Finished files are skipped; resuming with different `signature` parameters (another
    checkpoint, other scales...) is refused, since the folder would mix two kinds of output.
    """
    out = ensure_dir(out)
    previous = read_manifest(out, stage)
    if previous is not None:
        for key in signature:
            old, new = previous.get("params", {}).get(key), jsonable(params.get(key))
            if old != new:
                raise file_error(
                    out,
                    f"holds {stage} outputs made with {key}={old} (now {new}); "
                    "use another --out or delete it",
                )
    info = shard_info()
    if info.world_size == 1:
        clean_stale_temporaries(out)
    if info.rank == 0:
        write_manifest(out, stage, params, complete=False)
    mine = shard(ids, info)
    todo = pending_ids(mine, out, suffix)
    return SplitPlan(out=out, todo=todo, skipped=len(mine) - len(todo), total=len(ids))


def finish_outputs(plan: SplitPlan, ids: Sequence[str], suffix: str, stage: str) -> int:
    """Mark the manifest complete once every file of the split exists; returns that count."""
    done = len(ids) - len(pending_ids(ids, plan.out, suffix))
    if shard_info().rank == 0:
        manifest = read_manifest(plan.out, stage) or {}
        write_manifest(
            plan.out, stage, manifest.get("params", {}), complete=done == len(ids), files=done
        )
    return done


def file_sha256(path: str | Path) -> str:
    """Fingerprint of an input (a checkpoint) for the manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

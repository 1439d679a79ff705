"""Per-image stages (make-cam, make-rw, make-pseudo, predict): which ids are left, which are ours.

A stage writes one file per image atomically, so "finished" simply means "the output file
exists": a resumed run skips those. Under torchrun (RANK / WORLD_SIZE set) each process
takes every WORLD_SIZE-th id, so the same command spreads over several processes or machines
with no coordination.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsss import lock
from wsss.errors import file_error
from wsss.io import (
    MANIFEST_NAME,
    ensure_dir,
    guard_output_dir,
    json_field,
    jsonable,
    read_manifest,
    safe_child,
    unguard_output_dir,
    write_manifest,
)
from wsss.torchrun import DistInfo, env_info

# When this process started; torchrun starts the processes of a run within LAUNCH_SKEW_S.
_LAUNCHED = time.time()
LAUNCH_SKEW_S = 60.0

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


def claim_output_dir(out: str | Path, stage: str) -> tuple[Path, dict[str, Any] | None]:
    """Make `out` this run's: create it, refuse a folder holding files of something else (no
    manifest of `stage`), take its lock (rank 0 under torchrun) and clear the temporary files
    a killed run left. Returns the folder and its previous manifest, if any."""
    out = ensure_dir(out)
    info = shard_info()
    guard_output_dir(out)  # no write below it through a link planted inside it
    try:
        if info.rank == 0:
            lock.acquire(out, stage)  # first: it also proves the folder takes files
        previous = read_manifest(out, stage)
        # Under torchrun rank 0 checks alone, and the other ranks' first files, newer than
        # this launch, may already be there: only older files count as someone else's.
        if previous is None and info.rank == 0:
            newer = _LAUNCHED - LAUNCH_SKEW_S if info.world_size > 1 else math.inf
            foreign = sorted(
                p.name
                for p in out.iterdir()
                if not p.name.startswith(".") and p.lstat().st_mtime < newer
            )
            if foreign:
                raise file_error(
                    out,
                    f"is not empty ({len(foreign)} entries, e.g. {foreign[0]}) and holds no "
                    f"{stage} {MANIFEST_NAME}: not this stage's output folder; use an empty or "
                    "new --out",
                )
    except BaseException:
        release_output_dir(out)
        raise
    if info.world_size == 1:
        clean_stale_temporaries(out)  # only now: the lock says no other run writes here
    return out, previous


def check_made_for(
    manifest: Path, params: dict[str, Any], classes: Sequence[str] | None, what: str
) -> None:
    """A stage's outputs (CAMs, labels) made for another class list than `classes` would be
    scored or used under the wrong names: one line naming the manifest."""
    made_for = json_field(params, "classes", list, manifest, required=False)
    if made_for is None:
        return
    if not all(isinstance(name, str) for name in made_for):
        raise file_error(manifest, "field 'classes' must be a list of class names")
    if classes is not None and tuple(made_for) != tuple(classes):
        raise file_error(
            manifest,
            f"{what} made for the classes ({_names(made_for)}) but the dataset has "
            f"({_names(classes)}); make them with this dataset's class list",
        )


def _names(classes: Sequence[str]) -> str:
    return ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")


def moved_with_run(old: Any, new: Any, old_out: Any, new_out: Any) -> bool:
    """Whether path option `old` (recorded by a run whose folder was `old_out`) and `new` (this
    run's, its folder `new_out`) name the same place relative to their run folders: a run
    folder moved or copied with the inputs it holds (the demo's data, the CAM model a
    segmenter starts from) resumes. What they hold is checked where the stages check it
    (a training set's fingerprint, a model's sha256); a CAM folder is known by its place
    only, as it was by its spelling before."""
    if old == new:
        return True
    values = (old, new, old_out, new_out)
    if not all(isinstance(value, str) and value for value in values):
        return False
    return os.path.relpath(old, old_out) == os.path.relpath(new, new_out)


def release_output_dir(out: str | Path) -> None:
    """Give the folder's lock back (a no-op where this process holds none)."""
    unguard_output_dir(out)
    lock.release(Path(out) / lock.LOCK_NAME)


@dataclass
class SplitPlan:
    """A per-image stage's share of a split: this process's unfinished ids."""

    out: Path
    todo: list[str]
    skipped: int
    total: int


# Signature keys added after folders were first written: the value a manifest without the
# key was made with, so that upgrading wsss does not refuse to resume an unchanged run.
ADDED_KEYS: dict[str, Any] = {"resize": "bilinear", "merge": "probs", "rw_normalise": "class"}
# Signature keys that name a folder: the same where it moved with this one (`moved_with_run`).
PATH_PARAMS = frozenset({"cams"})


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
    out, previous = claim_output_dir(out, stage)
    if previous is not None:
        for key in signature:
            made = previous.get("params", {})
            old = made[key] if key in made else ADDED_KEYS.get(key)
            new = jsonable(params[key]) if key in params else ADDED_KEYS.get(key)
            if not (
                old == new
                or key in PATH_PARAMS
                and moved_with_run(old, new, previous.get("out"), str(out.resolve()))
            ):
                raise file_error(
                    out,
                    f"holds {stage} outputs made with {key}={old} (now {new}); "
                    "use another --out or delete it",
                )
    info = shard_info()
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
    release_output_dir(plan.out)
    return done


def file_sha256(path: str | Path) -> str:
    """Fingerprint of an input (a checkpoint) for the manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

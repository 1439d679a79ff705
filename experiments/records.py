"""The experiments' JSON records (arms.json, pseudo.json, walk.json, rules.json), updated so
that invocations running at once all keep their rows.

Each used to read its record once at start and rewrite it from that copy as its runs ended,
so of two invocations on one folder (`--only` a, `--only` b, started side by side) only the
last writer's rows stayed. `update_record` takes an exclusive lock on RECORD.lock, reads the
record as it is now, applies the change and writes it atomically.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from wsss.io import write_json


def update_record(path: Path, change: Callable[[Any], Any],
                  empty: Callable[[], Any] = dict) -> Any:  # fmt: skip
    """`change(record)` on the record as it is on disk now (`empty()` where there is none
    yet), under the record's lock; writes and returns what `change` returns."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        record = change(json.loads(path.read_text()) if path.is_file() else empty())
        write_json(path, record)
        return record


def read_record(path: Path) -> dict[str, Any]:
    """The record as it is now ({} where there is none yet); every write replaces the file
    whole, so a read needs no lock."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _put(key: str, row: dict[str, Any], merge: bool, record: dict[str, Any]) -> dict[str, Any]:
    record[key] = {**record.get(key, {}), **row} if merge else row
    return record


def put_row(path: Path, key: str, row: dict[str, Any], merge: bool = False) -> dict[str, Any]:
    """record[key] = row (`merge`: row's items added to what record[key] holds); the record
    as it is now, every invocation's rows in it."""
    return update_record(path, partial(_put, key, row, merge))

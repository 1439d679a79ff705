"""experiments/records.py: invocations that update one record at once all keep their rows
(each used to rewrite the record from the copy it read at start: the last writer won)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from experiments.records import put_row, read_record, update_record


def _slow_writer(path: str, key: str, rows: int) -> None:
    for k in range(rows):
        put_row(Path(path), key, {f"arm{k}": k}, merge=True)


def test_concurrent_invocations_keep_every_row(tmp_path: Path) -> None:
    path = tmp_path / "arms.json"
    put_row(path, "earlier-1", {"cams": 1.0})
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_slow_writer, args=(str(path), f"run-{w}", 40))
               for w in range(3)]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    record = json.loads(path.read_text())
    assert set(record) == {"earlier-1", "run-0", "run-1", "run-2"}
    assert all(record[f"run-{w}"] == {f"arm{k}": k for k in range(40)} for w in range(3))
    assert read_record(path) == record


def test_a_row_merges_or_replaces_and_a_list_record_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "walk.json"
    assert read_record(path) == {} and not path.exists()
    put_row(path, "a-1", {"x": 1, "y": 2})
    put_row(path, "a-1", {"y": 3}, merge=True)
    assert read_record(path) == {"a-1": {"x": 1, "y": 3}}
    put_row(path, "a-1", {"z": 4})
    assert read_record(path) == {"a-1": {"z": 4}}
    rules = tmp_path / "rules.json"
    assert update_record(rules, lambda rows: [*rows, {"seed": "1"}], list) == [{"seed": "1"}]
    assert json.loads(rules.read_text()) == [{"seed": "1"}]

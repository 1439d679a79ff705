"""Atomic writes, manifests and safe ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsss.errors import WsssError
from wsss.io import (
    atomic_open,
    read_json,
    read_manifest,
    safe_child,
    write_json,
    write_manifest,
)


def test_atomic_open_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_truncated_json_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_json(path, {"a": [1, 2, 3]})
    assert read_json(path) == {"a": [1, 2, 3]}
    path.write_text(path.read_text()[:8])
    with pytest.raises(WsssError, match="m.json: not valid JSON"):
        read_json(path)


def test_manifest_records_versions_and_checks_stage(tmp_path: Path) -> None:
    write_manifest(tmp_path, "make-cam", {"scales": [1.0, 0.5], "seed": 3})
    manifest = read_manifest(tmp_path, "make-cam")
    assert manifest["params"] == {"scales": [1.0, 0.5], "seed": 3}
    assert {"wsss", "torch", "python"} <= set(manifest["versions"])
    with pytest.raises(WsssError, match="expected 'predict'"):
        read_manifest(tmp_path, "predict")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/abs/path", "a/../../b", ""])
def test_safe_child_refuses_escaping_ids(tmp_path: Path, bad: str) -> None:
    with pytest.raises(WsssError):
        safe_child(tmp_path, bad, ".jpg")


def test_safe_child_accepts_plain_ids(tmp_path: Path) -> None:
    assert safe_child(tmp_path, "2007_000032", ".jpg") == tmp_path / "2007_000032.jpg"

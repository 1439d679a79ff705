"""The CAM file: round trips, the reference tools' files, and untrusted input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.cam_math import strided_size
from wsss.camfile import CamRecord, load_cam_file, save_cam_file
from wsss.errors import WsssError


def _record(labels=(2, 5), size=(13, 18), seed=0) -> CamRecord:
    rng = np.random.default_rng(seed)
    k = len(labels)
    return CamRecord(
        keys=np.array([0, *labels], dtype=np.int64),
        cam=rng.random((k, *strided_size(*size)), dtype=np.float32),
        hr_cam=rng.random((k, *size), dtype=np.float32),
    )


@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    record = _record()
    path = save_cam_file(tmp_path / f"a.{fmt}", record)
    loaded = load_cam_file(path, num_classes=5, image_size=(13, 18))
    np.testing.assert_array_equal(loaded.keys, [0, 2, 5])
    np.testing.assert_array_equal(loaded.labels, [2, 5])
    np.testing.assert_array_equal(loaded.cam, record.cam)
    np.testing.assert_array_equal(loaded.hr_cam, record.hr_cam)
    assert loaded.hr_cam.dtype == np.float32 and loaded.image_size == (13, 18)


def test_npy_is_the_reference_dict(tmp_path: Path) -> None:
    """The reference tools read our files with np.load(...).item()."""
    record = _record()
    path = save_cam_file(tmp_path / "a.npy", record)
    content = np.load(path, allow_pickle=True).item()
    assert set(content) == {"keys", "cam", "hr_cam"}
    np.testing.assert_array_equal(content["keys"], [0, 2, 5])
    assert content["hr_cam"].shape == (2, 13, 18) and content["cam"].shape == (2, 4, 5)


def test_npz_needs_no_pickle(tmp_path: Path) -> None:
    path = save_cam_file(tmp_path / "a.npz", _record())
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["cam", "hr_cam", "keys"]


def test_reads_puzzlecam_file(tmp_path: Path) -> None:
    """Puzzle-CAM: keys with background first, `cam` a pickled torch tensor."""
    record = _record(labels=(1, 4))
    path = tmp_path / "p.npy"
    keys = torch.tensor([0, 3])  # 0-based class indices, as the reference computes them
    np.save(
        path,
        {
            "keys": np.pad(keys + 1, (1, 0), mode="constant"),
            "cam": torch.from_numpy(record.cam)[:, :, :],
            "hr_cam": record.hr_cam,
        },
    )
    loaded = load_cam_file(path, num_classes=20)
    np.testing.assert_array_equal(loaded.keys, [0, 1, 4])
    np.testing.assert_array_equal(loaded.cam, record.cam)
    np.testing.assert_array_equal(loaded.hr_cam, record.hr_cam)


def test_reads_irn_file(tmp_path: Path) -> None:
    """IRN: 0-based keys without background (torch tensor), `high_res` for the full size."""
    record = _record(labels=(1, 4))
    path = tmp_path / "i.npy"
    np.save(
        path,
        {
            "keys": torch.tensor([0, 3]),
            "cam": torch.from_numpy(record.cam),
            "high_res": record.hr_cam,
        },
    )
    loaded = load_cam_file(path, num_classes=20)
    np.testing.assert_array_equal(loaded.keys, [0, 1, 4])
    np.testing.assert_array_equal(loaded.hr_cam, record.hr_cam)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    record = _record()
    np.save(
        path,
        {"keys": record.keys, "cam": record.cam, "hr_cam": record.hr_cam, "x": _Exploit(marker)},
    )
    assert not marker.exists()
    with pytest.raises(WsssError) as error:
        load_cam_file(path)
    assert not marker.exists()
    message = str(error.value)
    assert str(path) in message and "system" in message and "\n" not in message


def test_truncated_file(tmp_path: Path) -> None:
    path = save_cam_file(tmp_path / "a.npy", _record())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WsssError, match="truncated"):
        load_cam_file(path)
    with pytest.raises(WsssError, match="truncated"):
        path.write_bytes(b"")
        load_cam_file(path)


def test_keys_outside_the_dataset(tmp_path: Path) -> None:
    path = save_cam_file(tmp_path / "a.npy", _record(labels=(2, 7)))
    with pytest.raises(WsssError, match="different model/dataset") as error:
        load_cam_file(path, num_classes=5)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"keys": np.array([0, 1]), "cam": np.zeros((1, 4, 5), np.float32)}, "missing hr_cam"),
        (
            {
                "keys": np.array([0, 1]),
                "cam": np.zeros((1, 4, 5), np.float32),
                "hr_cam": np.full((1, 13, 18), np.nan, np.float32),
            },
            "NaN",
        ),
        (
            {
                "keys": np.array([0, 1]),
                "cam": np.zeros((1, 3, 3), np.float32),
                "hr_cam": np.zeros((1, 13, 18), np.float32),
            },
            "ceil",
        ),
        (
            {
                "keys": np.array([0, 1, 2]),
                "cam": np.zeros((1, 4, 5), np.float32),
                "hr_cam": np.zeros((1, 13, 18), np.float32),
            },
            "entries",
        ),
        (
            {
                "keys": np.array([0.5]),
                "cam": np.zeros((1, 4, 5), np.float32),
                "hr_cam": np.zeros((1, 13, 18), np.float32),
            },
            "integer",
        ),
    ],
)
def test_invalid_content(tmp_path: Path, content: dict, problem: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(WsssError, match=problem):
        load_cam_file(path)


def test_plain_array_and_wrong_image_size(tmp_path: Path) -> None:
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((2, 3)))
    with pytest.raises(WsssError, match="not a dict"):
        load_cam_file(plain)
    path = save_cam_file(tmp_path / "a.npy", _record())
    with pytest.raises(WsssError, match="differs from its image"):
        load_cam_file(path, image_size=(18, 13))


def test_killed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(handle, *args, **kwargs):
        handle.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_cam_file(tmp_path / "a.npy", _record())
    assert list(tmp_path.iterdir()) == []

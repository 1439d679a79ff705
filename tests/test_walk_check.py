"""The label-free walk check: walked labels that redraw the CRF labels are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsss.data.palette import IGNORE, save_label_png
from wsss.walk_check import check_walk


def _folders(tmp_path: Path, walk_of) -> tuple[Path, Path, list[str]]:
    """Two images: a class-1 square on background (the CRF labels), and the walk's labels."""
    crf, walk = tmp_path / "crf", tmp_path / "walk"
    ids = ["a", "b"]
    for image_id in ids:
        labels = np.zeros((32, 32), np.uint8)
        labels[8:24, 8:24] = 1
        save_label_png(crf / f"{image_id}.png", labels)
        save_label_png(walk / f"{image_id}.png", walk_of(labels))
    return crf, walk, ids


def test_a_walk_that_moves_the_borders_a_little_is_kept(tmp_path: Path) -> None:
    def grown(labels: np.ndarray) -> np.ndarray:  # one pixel wider on each side
        out = labels.copy()
        out[7:25, 7:25] = 1
        return out

    check = check_walk(*_folders(tmp_path, grown), num_classes=2)
    # square 256 px, grown 324: IoU 256/324 for the class, 700/768 for the background
    assert check.agreement == pytest.approx(50 * (256 / 324 + 700 / 768))
    assert check.keep_walk and check.to_json()["keep_walk"] is True


def test_a_walk_that_redraws_the_image_is_dropped(tmp_path: Path) -> None:
    def moved(labels: np.ndarray) -> np.ndarray:  # the object elsewhere, a band ignored
        out = np.zeros_like(labels)
        out[0:12, 20:32] = 1
        out[30:] = IGNORE
        return out

    crf, walk, ids = _folders(tmp_path, moved)
    check = check_walk(crf, walk, ids, num_classes=2)
    assert check.agreement < 50 and not check.keep_walk
    # the threshold is the caller's to set
    assert check_walk(crf, walk, ids, 2, min_agreement=check.agreement).keep_walk


@pytest.mark.parametrize("shift, kept", [(1, True), (3, False)])
def test_the_default_threshold_is_85(tmp_path: Path, shift: int, kept: bool) -> None:
    """The CRF's 16 x 16 square moved `shift` columns: class IoU and background IoU by hand
    put the agreement at 92.1 (kept) and 78.3 (dropped, though above 70, the old threshold)."""

    def moved(labels: np.ndarray) -> np.ndarray:
        out = np.zeros_like(labels)
        out[8:24, 8 + shift : 24 + shift] = 1
        return out

    overlap = 16 * (16 - shift)
    union = 2 * 256 - overlap
    background = (32 * 32 - union) / (32 * 32 - overlap)
    expected = 50 * (overlap / union + background)
    check = check_walk(*_folders(tmp_path, moved), num_classes=2)
    assert check.agreement == pytest.approx(expected)
    assert expected == pytest.approx(92.1 if kept else 78.3, abs=0.1)
    assert check.keep_walk is kept

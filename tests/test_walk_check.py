"""The label-free walk check: walked labels that drop the confident evidence are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsss.data.palette import IGNORE, save_label_png
from wsss.walk_check import MARGIN, check_walk


def _folders(tmp_path: Path, walk_of) -> tuple[Path, Path, Path, list[str]]:
    """Two images: a class-1 square on background; the confident labels are the square's
    core (1), the far background (0) and an ignored band between."""
    crf, walk, confident = (tmp_path / n for n in ("crf", "walk", "confident"))
    ids = ["a", "b"]
    for image_id in ids:
        labels = np.zeros((32, 32), np.uint8)
        labels[8:24, 8:24] = 1
        reference = np.full((32, 32), IGNORE, np.uint8)
        reference[:4] = 0
        reference[12:20, 12:20] = 1
        save_label_png(crf / f"{image_id}.png", labels)
        save_label_png(walk / f"{image_id}.png", walk_of(labels))
        save_label_png(confident / f"{image_id}.png", reference)
    # an image without a confident pixel is left out, not scored as a miss
    save_label_png(confident / "c.png", np.full((32, 32), IGNORE, np.uint8))
    save_label_png(crf / "c.png", np.zeros((32, 32), np.uint8))
    save_label_png(walk / "c.png", np.ones((32, 32), np.uint8))
    return crf, walk, confident, [*ids, "c"]


def test_a_walk_that_keeps_the_confident_labels_is_kept(tmp_path: Path) -> None:
    def grown(labels: np.ndarray) -> np.ndarray:  # grows into the ignored band only
        out = labels.copy()
        out[6:26, 6:26] = 1
        return out

    check = check_walk(*_folders(tmp_path, grown), num_classes=2)
    assert check.crf.kept == check.walk.kept == 1.0
    assert check.keep_walk and 0 < check.agreement < 100
    assert check.to_json()["keep_walk"] is True


def test_a_walk_that_floods_the_background_is_dropped(tmp_path: Path) -> None:
    def flooded(labels: np.ndarray) -> np.ndarray:  # class 1 over half the background rows
        out = labels.copy()
        out[:2] = 1
        return out

    check = check_walk(*_folders(tmp_path, flooded), num_classes=2)
    assert check.walk.confident_bg == pytest.approx(0.5) and check.walk.confident_fg == 1.0
    assert check.walk.kept == pytest.approx(0.75) and check.walk.kept < check.crf.kept - MARGIN
    assert not check.keep_walk
    # a wide enough margin lets the same walk through
    crf, walk, confident, ids = _folders(tmp_path, flooded)
    assert check_walk(crf, walk, confident, ids, 2, margin=0.3).keep_walk

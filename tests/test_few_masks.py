"""experiments/few_masks.py: the vectorised mIoU is the project's metric, and a draw of all
the images picks the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import few_masks
from wsss.metrics import ConfusionMatrix


def test_miou_curves_is_the_project_metric() -> None:
    rng = np.random.default_rng(0)
    matrices = rng.integers(0, 50, (4, 3, 3))
    matrices[1, 2, :] = matrices[1, :, 2] = 0  # class 2 absent from GT and prediction: left out
    matrices[2, 0, 1] = 0
    for matrix, value in zip(matrices, few_masks.miou_curves(matrices), strict=True):
        confusion = ConfusionMatrix(3)
        confusion.matrix = matrix.astype(np.int64)
        assert value == pytest.approx(confusion.compute().miou)
    # by hand: classes 0 and 1 of [[3, 1], [2, 4]] (class 2 absent): IoU 3/6 and 4/7
    hand = np.zeros((3, 3), int)
    hand[:2, :2] = [[3, 1], [2, 4]]
    assert few_masks.miou_curves(hand[None])[0] == pytest.approx(100 * (3 / 6 + 4 / 7) / 2)


def test_a_draw_of_every_image_picks_the_oracle_and_one_image_its_own() -> None:
    # three images, two thresholds: image 0 is best at the second t, images 1 and 2 at the first
    good, bad = np.array([[5, 0], [0, 5]]), np.array([[3, 2], [2, 3]])
    matrices = np.array([[bad, good], [good, bad], [good, bad]])
    everything = few_masks.draw(3, 3, 5, np.random.default_rng(0))
    assert (few_masks.best_of_draws(matrices, everything) == 0).all()  # pooled: the first t
    alone = np.array([[0], [1]])
    assert few_masks.best_of_draws(matrices, alone).tolist() == [1, 0]
    picks = few_masks.draw(3, 2, 200, np.random.default_rng(1))
    assert all(len(set(row)) == 2 for row in picks.tolist())  # without replacement

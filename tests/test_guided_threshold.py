"""experiments/guided_threshold.py: the rules read from the classifier's and the CRF's
curves, on hand-made curves whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import guided_threshold as guided

GRID = guided.CLASSIFIER_GRID  # 0.05 ... 0.95


def _classifier_file(tmp_path: Path, inside: list[float], outside: list[float]) -> Path:
    """One (image, class) pair's curves: probabilities rising t, full image 1.0."""
    path = tmp_path / "curves.npz"
    np.savez(path, full=np.array([1.0], np.float32), inside=np.array([inside], np.float32),
             outside=np.array([outside], np.float32))  # fmt: skip
    return path


def test_classifier_rules_read_where_the_class_leaves(tmp_path: Path) -> None:
    # kept region: the class holds (0.95) up to t = 0.40, then falls to 0.2;
    # removed region: the class is gone (0.1) up to t = 0.60, back (0.9) above
    inside = [0.95 if t <= 0.40 else 0.2 for t in GRID]
    outside = [0.1 if t <= 0.60 else 0.9 for t in GRID]
    rules = guided.classifier_rules(_classifier_file(tmp_path, inside, outside))
    for rho in (0.5, 0.7, 0.9):
        assert rules[f"in{rho}-median"] == pytest.approx(0.40)  # the last t before it falls
        assert rules[f"out{rho}-median"] == pytest.approx(0.60)  # the last t it stays gone
    assert rules["in-abs0.5-median"] == pytest.approx(0.40)


def test_classifier_rules_at_the_grid_ends(tmp_path: Path) -> None:
    # never falls when kept: the top of the grid; never gone when removed: the bottom
    rules = guided.classifier_rules(_classifier_file(tmp_path, [0.99] * len(GRID),
                                                     [0.99] * len(GRID)))  # fmt: skip
    assert rules["in0.9-median"] == pytest.approx(0.95)
    assert rules["out0.5-median"] == pytest.approx(0.05)


def test_crf_agreement_by_hand(tmp_path: Path) -> None:
    # one image of 100 px, two thresholds: [fg before, fg after, fg in both, bg in both, all]
    counts = np.array([[[40, 30, 30, 60, 100], [20, 20, 10, 70, 100]]])
    curves = guided.agreement(counts)
    # t1: fg IoU 30/40, bg IoU 60/70; t2: fg 10/30, bg 70/90
    assert curves["pooled"][0] == pytest.approx((30 / 40 + 60 / 70) / 2)
    assert curves["pooled"][1] == pytest.approx((10 / 30 + 70 / 90) / 2)
    assert curves["changed"].tolist() == pytest.approx([0.10, 0.20])
    padded = np.zeros((1, len(guided.CRF_GRID), 5), np.int64)
    padded[:, :] = counts[:, 1]
    padded[:, 3] = counts[:, 0]  # the best agreement at the fourth t, 0.20
    path = tmp_path / "crf.npz"
    np.savez(path, counts=padded)
    assert guided.crf_rules(path)["crf-pooled-max"] == pytest.approx(0.20)

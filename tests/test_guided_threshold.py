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


def _disk_scene(radius: float, spread: float) -> tuple[np.ndarray, np.ndarray, float]:
    """A flat disk of one colour on a flat background of another, and one class's CAM: a
    Gaussian bump on the disk's centre. Returns image, cams (1 x H x W) and the CAM's level on
    the disk's outline, the t at which the thresholded CAM traces the disk."""
    yy, xx = np.mgrid[:96, :96]
    r2 = (yy - 48.0) ** 2 + (xx - 48.0) ** 2
    image = np.where(r2[..., None] <= radius**2, [200, 40, 40], [40, 90, 160]).astype(np.uint8)
    cams = np.exp(-r2 / (2 * spread**2))[None].astype(np.float32)
    return image, cams, float(np.exp(-(radius**2) / (2 * spread**2)))


@pytest.mark.parametrize(("radius", "spread"), [(28.0, 16.0), (12.0, 16.0)])
def test_edge_curve_peaks_where_the_contour_traces_the_object(radius: float, spread: float) -> None:
    # a large disk under a narrow bump (outline low on it: 0.22) and a small one under a wide
    # bump (outline high: 0.76): the contour's mean gradient is largest at that level
    image, cams, level = _disk_scene(radius, spread)
    counts = guided.edge_counts(image, cams)
    curve = counts[:, 0] / np.maximum(counts[:, 1], 1)
    assert guided.EDGE_GRID[int(np.argmax(curve))] == pytest.approx(level, abs=0.04)
    assert guided.EDGE_GRID[guided.first_peak(curve)] == pytest.approx(level, abs=0.04)


def test_edge_rules_read_the_pooled_curve(tmp_path: Path) -> None:
    grid = guided.EDGE_GRID
    # the mean gradient per t: a bump at 0.30, then a rise to the grid's end (the parts)
    mean = np.exp(-((grid - 0.30) ** 2) / 0.002) + np.clip(grid - 0.6, 0, None) * 8
    counts = np.stack([mean * 50, np.full_like(grid, 50.0)], axis=-1)[None]
    path = tmp_path / "edge.npz"
    np.savez(path, grid=grid, values=counts)
    scores = {"blend (chosen)": (0.30, 0.0), "Otsu, pooled": (0.50, 0.0)}
    rules = guided.edge_rules(path, scores)
    assert rules["edge-max"] == pytest.approx(0.90)
    assert rules["edge-first-peak"] == pytest.approx(0.30)
    assert rules["edge-per-image-median"] == pytest.approx(0.90)
    assert rules["edge-picks-blend-or-otsu"] == pytest.approx(0.30)  # 0.30's contour is stronger


@pytest.mark.parametrize(("radius", "spread"), [(28.0, 16.0), (12.0, 16.0)])
def test_colour_information_peaks_where_the_mask_is_the_disk(radius: float, spread: float) -> None:
    # the same scenes: the foreground's colours explain it best where it is the disk
    image, cams, level = _disk_scene(radius, spread)
    info = guided.colour_information(image, cams)
    for q in range(len(guided.COLOUR_LEVELS)):
        assert guided.EDGE_GRID[int(np.argmax(info[q]))] == pytest.approx(level, abs=0.04)


def test_mutual_information_by_hand() -> None:
    # a mask that is exactly one of two equally common colours: I = H(mask) = ln 2
    bins = np.array([[0, 0, 1, 1]])
    assert guided.mutual_information(np.array([[0, 0, 1, 1]]), bins, 2) == pytest.approx(np.log(2))
    # a mask independent of the colour: 0
    assert guided.mutual_information(np.array([[0, 1, 0, 1]]), bins, 2) == pytest.approx(0.0)

"""The label-free background threshold: the rule on CAMs with a known answer, its record,
and `wsss pick-threshold`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc

from cli.main import main
from wsss.cam_threshold import (
    RECORD,
    TopStats,
    confident_thresholds,
    label_free_threshold,
    pick_threshold,
)
from wsss.camfile import CamRecord, save_cam_file, strided_size
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import read_json


def record(maps: list[np.ndarray], labels: list[int]) -> CamRecord:
    hr = np.stack(maps).astype(np.float32) if maps else np.zeros((0, 8, 8), np.float32)
    cam = np.zeros((len(maps), *strided_size(*hr.shape[1:])), np.float32)
    return CamRecord(keys=np.array([0, *labels]), cam=cam, hr_cam=hr)


def test_the_rule_is_the_mean_of_the_strongest_cam_over_labelled_images() -> None:
    mean = TopStats()
    half = np.zeros((8, 8), np.float32)
    half[:, :4] = 1.0  # an object over half the image, nothing elsewhere: mean 0.5
    mean.update(half[None])
    # two classes: the strongest per pixel counts, 0.8 over a quarter, 0.2 elsewhere -> 0.35
    a = np.full((8, 8), 0.2, np.float32)
    b = np.zeros((8, 8), np.float32)
    b[:4, :4] = 0.8
    mean.update(np.stack([a, b]))
    mean.update(np.zeros((0, 8, 8), np.float32))  # no labelled class: left out
    choice = mean.result("mean-cam")
    assert choice.threshold == pytest.approx((0.5 + 0.35) / 2)
    assert (choice.images, choice.pixels, choice.rule) == (2, 128, "mean-cam")
    with pytest.raises(WsssError, match="no image with a labelled class"):
        TopStats().result()


def test_the_lifted_median_is_the_quantile_half_plus_the_floor() -> None:
    # 100 pixels at 0.005, 0.015, ..., 0.995: the 10th percentile is 0.1, so the rule takes
    # the 60th percentile, 0.6 (to the histogram's 0.001)
    values = (np.arange(100, dtype=np.float32) + 0.5) / 100
    stats = TopStats()
    stats.update(values.reshape(1, 10, 10))
    assert stats.quantile(0.1) == pytest.approx(0.096, abs=1e-3)
    assert stats.result("lifted-median").threshold == pytest.approx(0.596, abs=1e-3)
    # no floor (most pixels at 0): the median of the strongest CAM
    low = np.zeros((1, 10, 10), np.float32)
    low[0, 6:] = 0.8  # 60 % of the pixels at 0
    stats = TopStats()
    stats.update(low)
    assert stats.result("lifted-median").threshold == pytest.approx(0.001)
    assert stats.result("mean-cam").threshold == pytest.approx(0.32)
    assert stats.result("blend").threshold == pytest.approx((0.001 + 0.32) / 2, abs=1e-4)


def test_images_of_other_sizes_weigh_by_their_pixels() -> None:
    mean = TopStats()
    mean.update(np.ones((1, 4, 4), np.float32))  # 16 pixels at 1
    mean.update(np.zeros((1, 8, 6), np.float32))  # 48 pixels at 0
    assert mean.result("mean-cam").threshold == pytest.approx(0.25)


def test_confident_thresholds_bracket_the_threshold() -> None:
    assert confident_thresholds(0.2) == pytest.approx((0.4, 0.1))
    assert confident_thresholds(0.7) == pytest.approx((1.0, 0.35))


@pytest.fixture
def cam_folder(tmp_path: Path) -> tuple[VocDataset, Path]:
    voc = VocDataset.open(make_tiny_voc(tmp_path / "voc", n=4, size=16))
    cams = tmp_path / "cams"
    rng = np.random.default_rng(0)
    for image_id in voc.split_ids("train"):
        labels = [c + 1 for c in voc.image_classes(image_id)]
        maps = [rng.random((16, 16)).astype(np.float32) for _ in labels]
        save_cam_file(cams / f"{image_id}.npy", record(maps, labels))
    return voc, cams


def test_the_choice_is_recorded_and_reused_for_the_same_images(cam_folder) -> None:
    voc, cams = cam_folder
    ids = voc.split_ids("train")
    first = pick_threshold(cams, ids, voc.num_classes)
    assert first == label_free_threshold(cams, ids, voc.num_classes)
    saved = read_json(cams / RECORD)
    assert saved["threshold"] == first.threshold and saved["rule"] == "blend"
    # the record stands for these images only: a different list is picked afresh
    saved_time = (cams / RECORD).stat().st_mtime_ns
    assert pick_threshold(cams, ids, voc.num_classes) == first
    assert (cams / RECORD).stat().st_mtime_ns == saved_time
    fewer = pick_threshold(cams, ids[:2], voc.num_classes)
    assert fewer == label_free_threshold(cams, ids[:2], voc.num_classes)
    assert read_json(cams / RECORD)["ids"] == 2


def test_pick_threshold_command_needs_no_masks(cam_folder, capsys) -> None:
    voc, cams = cam_folder
    for mask in (voc.root / "SegmentationClass").glob("*.png"):
        mask.unlink()
    args = ["pick-threshold", "--cams", str(cams), "--data", str(voc.root), "--split", "train"]
    assert main(args) == 0
    expected = label_free_threshold(cams, voc.split_ids("train"), voc.num_classes)
    assert read_json(cams / RECORD)["threshold"] == expected.threshold
    assert f"{expected.threshold:.4f}" in capsys.readouterr().out


def test_the_option_names_the_rules_and_their_default() -> None:
    from typing import get_args

    from wsss.cam_threshold import RULE, RULES
    from wsss.configs import common
    from wsss.configs.labels import MakePseudoConfig, PickThresholdConfig

    assert get_args(common.ThresholdRule) == tuple(RULES)
    assert get_args(common.ThresholdRule)[0] == RULE
    for config in (MakePseudoConfig, PickThresholdConfig):
        field = config.__dataclass_fields__["threshold_rule"]
        assert field.default == RULE
    # the command's own help names the default too (it once named the rule before blend)
    described = (PickThresholdConfig.__doc__ or "").split("(default:")[1].split(")")[0]
    assert described.strip() == RULE


def test_the_histogram_quantile_is_the_bin_edge_below_which_the_share_lies() -> None:
    stats = TopStats()
    values = np.array([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75], np.float32)
    stats.update(values.reshape(1, 2, 4))
    # four of eight pixels lie at or below 0.351 (the upper edge of 0.35's bin of width 0.001)
    assert stats.quantile(0.5) == pytest.approx(0.351)
    assert stats.quantile(0.125) == pytest.approx(0.051)
    assert stats.quantile(1.0) == pytest.approx(0.751)
    assert stats.mean == pytest.approx(values.mean())


# -- the rule where the best threshold is high and where it is low ---------------------------


def _scene(rng: np.random.Generator, kind: str, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """One image's strongest CAM and its object mask, in the two regimes the tuning set
    showed (docs/label_free_threshold.md): 'blurred', a small object under a CAM blurred
    far over the background (a lifted floor: the best threshold is high, as on tiny
    objects), and 'large', a large object whose class evidence fades to its edges and no
    activation outside it (the best threshold is low, as on strong bodies of large objects)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    if kind == "blurred":
        r = size * 0.25
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        d = np.hypot(yy - cy, xx - cx) / r
        cam = 0.3 + 0.7 * np.exp(-0.5 * (d / 1.1) ** 2)
    else:
        r = size * 0.4
        cy, cx = rng.uniform(size / 2 - 3, size / 2 + 3, 2)
        d = np.hypot(yy - cy, xx - cx) / r
        cam = np.exp(-0.5 * (d / 0.55) ** 2)
    cam = np.clip(cam + rng.normal(0, 0.05, cam.shape), 0, 1).astype(np.float32)
    return cam / cam.max(), d <= 1


def _best_threshold(cams: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """The sweep's best t (0.01 steps) by foreground/background mIoU, computed by hand."""
    best, best_miou = 0.0, -1.0
    for t in np.round(np.arange(0.01, 0.96, 0.01), 2):
        fg = [cam > t for cam in cams]
        inter = sum((f & m).sum() for f, m in zip(fg, masks, strict=True))
        union = sum((f | m).sum() for f, m in zip(fg, masks, strict=True))
        bg_inter = sum((~f & ~m).sum() for f, m in zip(fg, masks, strict=True))
        bg_union = sum((~f | ~m).sum() for f, m in zip(fg, masks, strict=True))
        miou = (inter / union + bg_inter / bg_union) / 2
        if miou > best_miou:
            best, best_miou = float(t), miou
    return best


@pytest.mark.parametrize(("kind", "high"), [("blurred", True), ("large", False)])
def test_the_default_rule_lands_near_the_best_threshold(kind: str, high: bool) -> None:
    rng = np.random.default_rng(0)
    scenes = [_scene(rng, kind) for _ in range(6)]
    stats = TopStats()
    for cam, _ in scenes:
        stats.update(cam[None])
    best = _best_threshold([cam for cam, _ in scenes], [mask for _, mask in scenes])
    assert (best > 0.5) is high  # the scenes are the regimes they are meant to be
    assert stats.result().rule == "blend"
    assert abs(stats.result().threshold - best) <= 0.1


def test_the_steepest_contour_of_a_blurred_step_and_of_a_blob() -> None:
    """The candidate rule of benchmarks/label_free_threshold.py (measured, not adopted): a
    straight blurred step is steepest at half its height; a blob smaller than its blur (a
    Gaussian) at exp(-1/2) = 0.61 of its peak."""
    from scipy.ndimage import gaussian_filter

    from benchmarks.label_free_threshold import steepest_contour

    step = gaussian_filter(np.repeat((np.arange(80) >= 40)[None].astype(float), 80, 0), 4.0)
    assert steepest_contour([step / step.max()]) == pytest.approx(0.5, abs=0.03)
    yy, xx = np.mgrid[:80, :80]
    blob = np.exp(-0.5 * (np.hypot(yy - 40, xx - 40) / 12.0) ** 2)
    assert steepest_contour([blob]) == pytest.approx(np.exp(-0.5), abs=0.03)


def test_the_laplacian_zero_crossing_of_a_blurred_disk_and_of_a_blob() -> None:
    """The candidate rule of benchmarks/label_free_threshold.py (measured, not adopted): a disk
    much larger than its blur has its Laplacian's zero crossing near half its height; a blob
    smaller than its blur (a Gaussian of sigma 12 px, seen through the rule's own 1 px
    smoothing) at exp(-(144 + 1) / 144) = 0.365 of its peak."""
    from scipy.ndimage import gaussian_filter

    from benchmarks.label_free_threshold import laplacian_zero_crossing

    yy, xx = np.mgrid[:120, :120]
    disk = gaussian_filter((np.hypot(yy - 60, xx - 60) < 40).astype(float), 3.0)
    assert laplacian_zero_crossing([disk / disk.max()]) == pytest.approx(0.5, abs=0.04)
    blob = np.exp(-0.5 * (np.hypot(yy - 60, xx - 60) / 12.0) ** 2)
    assert laplacian_zero_crossing([blob]) == pytest.approx(np.exp(-145 / 144), abs=0.012)

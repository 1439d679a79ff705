"""Labels from CAMs: thresholding, the two unary modes, confident regions on hand-made CAMs."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.cam_math import strided_size
from wsss.camfile import CamRecord
from wsss.crf import CrfParams
from wsss.errors import WsssError
from wsss.pseudo import (
    PseudoParams,
    confident_labels,
    power_for_threshold,
    pseudo_label,
    score_probabilities,
    threshold_indices,
    threshold_labels,
)


def record(keys: list[int], hr_cam: np.ndarray) -> CamRecord:
    hr_cam = np.asarray(hr_cam, dtype=np.float32)
    low = np.zeros((len(hr_cam), *strided_size(*hr_cam.shape[1:])), np.float32)
    return CamRecord(keys=np.array(keys), cam=low, hr_cam=hr_cam)


def test_threshold_labels_map_the_strongest_cam_through_the_keys():
    cams = np.array(
        [
            [[0.9, 0.1, 0.3, 0.25]],  # class map of label 2
            [[0.2, 0.6, 0.1, 0.25]],  # class map of label 5
        ]
    )
    labels = threshold_labels(record([0, 2, 5], cams), threshold=0.25)
    # a tie with the threshold goes to the background, like the reference's padded argmax
    assert labels.tolist() == [[2, 5, 2, 0]]
    assert labels.dtype == np.uint8


def test_image_without_classes_is_all_background():
    cam = record([0], np.zeros((0, 3, 5)))
    assert threshold_labels(cam, 0.3).tolist() == [[0] * 5] * 3
    assert not pseudo_label(np.zeros((3, 5, 3), np.uint8), cam, PseudoParams()).any()


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.25, 0.4, 0.7])
def test_score_unary_starts_from_the_thresholded_labels(threshold):
    rng = np.random.default_rng(0)
    cams = rng.random((3, 20, 20)).astype(np.float32) ** 3
    power = power_for_threshold(threshold)
    assert (1 - threshold) ** power == pytest.approx(threshold)
    probs = score_probabilities(cams, power)
    assert np.allclose(probs.sum(axis=0), 1.0)
    # away from exact ties, background wins exactly where every CAM is below the threshold
    clear = np.abs(cams.max(axis=0) - threshold) > 1e-3
    assert (probs.argmax(0) == threshold_indices(cams, threshold))[clear].all()


def three_stripes() -> tuple[np.ndarray, np.ndarray]:
    """An image of three colour stripes and a CAM of 0.05 | 0.25 | 0.8 over them, its edges
    3 px to the right of the colour edges (CAMs are coarse)."""
    image = np.zeros((24, 48, 3), np.uint8)
    image[:, :16] = (20, 120, 20)
    image[:, 16:32] = (120, 120, 220)
    image[:, 32:] = (230, 30, 30)
    cam = np.full((1, 24, 48), 0.05, np.float32)
    cam[:, :, 19:35] = 0.25
    cam[:, :, 35:] = 0.8
    return image, cam


def test_confident_regions_without_crf_follow_irn():
    image, cam = three_stripes()
    labels = confident_labels(image, record([0, 7], cam), 0.40, 0.10, crf=None)
    # above 0.40: the class; below 0.10: background; in between: ignore
    row = [0] * 19 + [255] * 16 + [7] * 13
    assert labels.tolist() == [row] * 24


def test_confident_regions_with_crf_snap_to_the_colour_edges():
    image, cam = three_stripes()
    labels = confident_labels(image, record([0, 7], cam), 0.40, 0.10, crf=CrfParams())
    row = [0] * 16 + [255] * 16 + [7] * 16
    assert (labels == np.array([row] * 24)).mean() > 0.98


def test_confident_mode_keeps_each_class_and_ignores_only_the_uncertain_band():
    cams = np.zeros((2, 4, 4), np.float32)
    cams[0, :2, :2] = 0.9  # label 3: confident
    cams[1, 2:, 2:] = 0.2  # label 9: only above the low threshold -> ignored
    cams[1, 2:, :2] = 0.5  # label 9: confident
    image = np.zeros((4, 4, 3), np.uint8)
    params = PseudoParams(crf=None, confident=(0.4, 0.1))
    labels = pseudo_label(image, record([0, 3, 9], cams), params)
    assert labels.tolist() == [
        [3, 3, 0, 0],
        [3, 3, 0, 0],
        [9, 9, 255, 255],
        [9, 9, 255, 255],
    ]


def striped_object_under_a_small_seed() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey image with a 32 x 32 object of two alternating stripe colours and a yellow 6 x 6
    part symbol in its middle; the CAM is 1 on the part and 0.6 on the 20 x 20 around it (39 %
    of the object), 0 elsewhere: a Puzzle-CAM-like map shrunk onto the part."""
    image = np.full((48, 48, 3), 90, np.uint8)
    image[8:40, 8:40] = (40, 60, 200)
    for x in range(8, 40, 4):
        image[8:40, x : x + 2] = (200, 60, 160)
    image[21:27, 21:27] = (250, 230, 0)
    cam = np.zeros((1, 48, 48), np.float32)
    cam[0, 14:34, 14:34] = 0.6
    cam[0, 21:27, 21:27] = 1.0
    return image, cam, cam[0] > 0.1


def test_default_score_unary_keeps_a_confident_seed_the_label_unary_erases():
    # Under the labels unary every seed pixel is held with the same gt_prob, so the colour
    # kernel makes the striped object a majority vote that the 61 % background side wins,
    # down to the part symbol. Soft scores keep pixels the CAM is sure of.
    image, cam, seed = striped_object_under_a_small_seed()
    assert CrfParams().unary == "scores"
    kept = {}
    for name, crf in (("scores", CrfParams()), ("labels", CrfParams(unary="labels"))):
        labels = pseudo_label(image, record([0, 4], cam), PseudoParams(threshold=0.1, crf=crf))
        assert (labels[:8] == 0).all() and (labels[21:27, 21:27] == 4).all(), name
        kept[name] = (labels[seed] == 4).mean()
    assert kept["scores"] > 0.95
    assert kept["labels"] < 0.2


def test_plain_mode_with_crf_follows_colour_edges_in_both_unary_modes():
    image, cam = three_stripes()
    expected = np.array([[0] * 32 + [7] * 16] * 24)
    for unary in ("labels", "scores"):
        params = PseudoParams(threshold=0.5, crf=CrfParams(unary=unary))
        labels = pseudo_label(image, record([0, 7], cam), params)
        assert (labels == expected).mean() > 0.98, unary


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "--threshold"),
        ({"threshold": -0.1}, "--threshold"),
        ({"confident": (0.1, 0.4)}, "--bg-threshold"),
        ({"confident": (1.4, 0.1)}, "--fg-threshold"),
        ({"confident": (0.4, 0.1), "bg_power": 4.0}, "--bg-power"),
        ({"bg_power": 0.0}, "--bg-power"),
    ],
)
def test_bad_parameters_are_one_line_errors(kwargs, message):
    with pytest.raises(WsssError, match=message) as info:
        PseudoParams(**kwargs)
    assert "\n" not in str(info.value)

"""Dense CRF wrapper: snapping labels to colour edges, unknown pixels, the missing-library error."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from wsss.crf import (
    CRF_PRESETS,
    MISSING_CRF,
    CrfParams,
    crf_preset,
    crf_refine_labels,
    crf_refine_probs,
)
from wsss.errors import WsssError

SIZE = 48
EDGE = 24  # the colour edge: columns < EDGE are red, the rest blue


@pytest.fixture
def two_halves() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.empty((SIZE, SIZE, 3), dtype=np.float64)
    image[:, :EDGE] = (200, 40, 40)
    image[:, EDGE:] = (40, 40, 200)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def truth() -> np.ndarray:
    labels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    labels[:, EDGE:] = 1
    return labels


def boundary_columns(labels: np.ndarray) -> np.ndarray:
    """Per row, the first column labelled 1."""
    return (labels == 1).argmax(axis=1)


def test_crf_snaps_noisy_shifted_labels_to_the_colour_edge(two_halves):
    rng = np.random.default_rng(1)
    labels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    labels[:, EDGE - 6 :] = 1  # boundary 6 px off the edge
    flips = rng.random(labels.shape) < 0.2  # and 20 % salt-and-pepper noise
    labels[flips] = 1 - labels[flips]
    before = (labels == truth()).mean()

    refined = crf_refine_labels(two_halves, labels, 2, CrfParams())

    assert before < 0.75
    assert (refined == truth()).mean() > 0.98
    assert np.abs(boundary_columns(refined) - EDGE).max() <= 1


def test_crf_on_soft_scores_puts_the_boundary_on_the_edge(two_halves):
    columns = np.arange(SIZE, dtype=np.float32)
    p1 = 1.0 / (1.0 + np.exp(-(columns - (EDGE - 5)) / 4.0))  # soft, centred 5 px left
    probs = np.stack([1 - p1, p1])[:, None, :].repeat(SIZE, axis=1).astype(np.float32)
    assert np.abs(boundary_columns(probs.argmax(0)) - EDGE).min() >= 4

    refined = crf_refine_probs(two_halves, probs, CrfParams())

    assert np.abs(boundary_columns(refined) - EDGE).max() <= 1


def test_unknown_pixels_take_the_label_of_their_colour(two_halves):
    labels = truth()
    labels[:, EDGE - 8 : EDGE + 8] = 255  # a band the unary knows nothing about

    refined = crf_refine_labels(two_halves, labels, 2, CrfParams())

    assert (refined == truth()).mean() > 0.98


def test_read_only_image_is_accepted(two_halves):
    two_halves.flags.writeable = False  # like np.asarray(PIL image)
    refined = crf_refine_labels(two_halves, truth(), 2, CrfParams())
    assert (refined == truth()).mean() > 0.98


def test_single_label_is_all_background(two_halves):
    assert not crf_refine_labels(two_halves, np.zeros((SIZE, SIZE), np.uint8), 1, CrfParams()).any()


def test_label_values_beyond_n_labels_are_rejected(two_halves):
    with pytest.raises(ValueError, match="n_labels"):
        crf_refine_labels(two_halves, np.full((SIZE, SIZE), 3, np.uint8), 2, CrfParams())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("unary", "softmax", "--unary"),
        ("gt_prob", 1.0, "--gt-prob"),
        ("iterations", 0, "--crf-iters"),
    ],
)
def test_bad_parameters_are_one_line_errors(field, value, message):
    with pytest.raises(WsssError, match=message) as info:
        CrfParams(**{field: value})
    assert "\n" not in str(info.value)


def test_missing_pydensecrf_gives_the_install_hint(monkeypatch, two_halves):
    for name in ("pydensecrf", "pydensecrf.densecrf", "pydensecrf.utils"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` raise ImportError
    with pytest.raises(WsssError) as info:
        crf_refine_labels(two_halves, truth(), 2, CrfParams())
    assert str(info.value) == MISSING_CRF
    assert "pip install pydensecrf2" in MISSING_CRF and "--no-crf" in MISSING_CRF


def test_presets_hold_each_code_bases_parameters():
    """wsss's preset is the CrfParams defaults; the others the values docs/parity.md cites."""
    assert CRF_PRESETS["wsss"] == CrfParams()
    kernels = lambda p: (  # noqa: E731
        p.gaussian_sxy, p.gaussian_compat, p.bilateral_sxy, p.bilateral_srgb,
        p.bilateral_compat, p.iterations, p.unary,
    )  # fmt: skip
    assert kernels(CRF_PRESETS["wsss"]) == (3, 3, 50, 13, 10, 10, "scores")
    assert kernels(CRF_PRESETS["reference"]) == (3, 3, 50, 5, 10, 10, "labels")
    assert kernels(CRF_PRESETS["psa"]) == (3, 3, 80, 13, 10, 10, "scores")
    assert kernels(CRF_PRESETS["deeplab"]) == (1, 3, 67, 3, 4, 10, "scores")
    assert kernels(CRF_PRESETS["afa"]) == (3, 3, 64, 5, 4, 10, "scores")
    assert {p.gt_prob for p in CRF_PRESETS.values()} == {0.7}


def test_a_given_parameter_replaces_the_presets_and_none_keeps_it():
    params = crf_preset("reference", bilateral_srgb=13.0, iterations=None, unary=None)
    assert params == CrfParams(unary="labels", bilateral_srgb=13.0)
    # a segmenter's probabilities: the official code refines them with psa's CRF
    assert crf_preset("reference", segmenter=True) == CRF_PRESETS["psa"]
    assert crf_preset("afa", segmenter=True) == CRF_PRESETS["afa"]
    with pytest.raises(WsssError, match="--crf-preset must be one of wsss"):
        crf_preset("irn")

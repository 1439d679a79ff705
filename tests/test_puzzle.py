"""Puzzle module: tile/merge, the alpha schedule and each loss term against hand numbers."""

from __future__ import annotations

import math

import pytest
import torch

from wsss.cam_math import normalize_cams
from wsss.errors import WsssError
from wsss.models.classifier import CamClassifier
from wsss.puzzle import PuzzleConfig, alpha_at, merge, puzzle_losses, tile


class ScriptedModel:
    """Returns prepared class maps in call order and records the input shapes it saw."""

    def __init__(self, *outputs: torch.Tensor) -> None:
        self.outputs = list(outputs)
        self.inputs: list[tuple[int, ...]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.inputs.append(tuple(images.shape))
        return self.outputs[len(self.inputs) - 1]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# One image, two classes, 2 x 2 maps; the tiles give 1 x 1 maps in the order TL, TR, BL, BR.
FULL = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]]])
TILES = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [6.0, 5.0]]).reshape(4, 2, 1, 1)
IMAGES = torch.zeros(1, 3, 32, 32)
ONLY_CLASS_0 = torch.tensor([[1.0, 0.0]])
# By hand: GAP(A_s) = (2.5, 0), GAP(A_re) = (3, 5); class 0 differs only at the last pixel
# (4 vs 6); class 1 differs by 5 everywhere; the means run over 1 x 2 x 2 x 2 = 8 elements.
CLS = (softplus(-2.5) + softplus(0.0)) / 2
P_CLS = (softplus(-3.0) + softplus(5.0)) / 2


def run(config: PuzzleConfig, alpha: float = 2.0, labels=ONLY_CLASS_0, tiles=TILES):
    model = ScriptedModel(FULL, tiles)
    return puzzle_losses(model, IMAGES, labels, config, alpha), model


@pytest.mark.parametrize(("kind", "re"), [("l1", 2 / 8), ("l2", 4 / 8)])
def test_loss_terms_match_hand_computation(kind, re) -> None:
    losses, model = run(PuzzleConfig(re_loss=kind), alpha=2.0)
    assert model.inputs == [(1, 3, 32, 32), (4, 3, 16, 16)]
    assert losses["cls"].item() == pytest.approx(CLS, rel=1e-6)
    assert losses["p_cls"].item() == pytest.approx(P_CLS, rel=1e-6)
    assert losses["re"].item() == pytest.approx(re, rel=1e-6)
    assert losses["loss"].item() == pytest.approx(CLS + P_CLS + 2.0 * re, rel=1e-6)
    assert losses["alpha"].item() == 2.0


def test_absent_classes_do_not_count_but_stay_in_the_mean() -> None:
    other_class_1 = TILES.clone()
    other_class_1[:, 1] = -7.0
    absent = run(PuzzleConfig(), tiles=other_class_1)[0]["re"].item()
    assert absent == pytest.approx(2 / 8)
    present = run(PuzzleConfig(), labels=torch.tensor([[1.0, 1.0]]))[0]["re"].item()
    assert present == pytest.approx((2 + 4 * 5) / 8)


def test_cam_level_compares_normalised_maps() -> None:
    # Class 0: A_s / 4 = (.25, .5, .75, 1) vs A_re / 6 = (1/6, 2/6, 3/6, 1): |diff| sums to .5.
    losses = run(PuzzleConfig(re_level="cam"))[0]
    assert losses["re"].item() == pytest.approx(0.5 / 8, rel=1e-4)
    scaled = run(PuzzleConfig(re_level="cam"), tiles=TILES * 10)[0]["re"].item()
    assert scaled == pytest.approx(losses["re"].item(), rel=1e-4)  # shrinking is not free
    feature = run(PuzzleConfig(), tiles=TILES * 10)[0]["re"].item()
    assert feature != pytest.approx(2 / 8)
    assert losses["p_cls"].item() == pytest.approx(P_CLS, rel=1e-6)  # p_cls pools raw maps


@pytest.mark.parametrize(
    ("config", "alpha", "calls", "expected"),
    [
        (PuzzleConfig(pieces=1), 4.0, 1, {"cls": CLS, "p_cls": 0.0, "re": 0.0}),
        (PuzzleConfig(alpha=0.0, use_pcl=False), 0.0, 1, {"p_cls": 0.0, "re": 0.0}),
        (PuzzleConfig(use_pcl=False), 0.0, 1, {"p_cls": 0.0, "re": 0.0}),  # ramp not begun
        (PuzzleConfig(use_pcl=False), 1.0, 2, {"p_cls": 0.0, "re": 2 / 8}),
        (PuzzleConfig(alpha=0.0), 0.0, 2, {"p_cls": P_CLS, "re": 0.0}),
        (PuzzleConfig(use_cls=False), 1.0, 2, {"cls": 0.0, "p_cls": P_CLS}),
    ],
)
def test_terms_switch_off_and_tiles_run_only_when_needed(config, alpha, calls, expected) -> None:
    losses, model = run(config, alpha=alpha)
    assert len(model.inputs) == calls
    for term, value in expected.items():
        assert losses[term].item() == pytest.approx(value, rel=1e-6), term
    total = losses["cls"] + losses["p_cls"] + alpha * losses["re"]
    assert losses["loss"].item() == pytest.approx(total.item())


def test_real_classifier_at_a_size_not_divisible_by_the_grid_stride() -> None:
    torch.manual_seed(0)
    model = CamClassifier("resnet18", 3)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # 50 x 70: A_s is 4 x 5 but the 25 x 35 tiles give 2 x 3 maps each, merged 4 x 6.
    losses = puzzle_losses(model, torch.randn(2, 3, 50, 70), labels, PuzzleConfig(), 4.0)
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["re"] > 0
    losses["loss"].backward()
    assert model.classifier.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- tile and merge


@pytest.mark.parametrize(
    ("pieces", "shape"), [(1, (2, 3, 8, 12)), (4, (2, 3, 8, 12)), (9, (2, 1, 9, 12))]
)
def test_merge_inverts_tile_exactly(pieces, shape) -> None:
    x = torch.randn(shape)
    side = math.isqrt(pieces)
    tiles = tile(x, pieces)
    assert tiles.shape == (pieces * shape[0], shape[1], shape[2] // side, shape[3] // side)
    assert torch.equal(merge(tiles, pieces), x)


def test_tiles_are_piece_major_in_row_major_grid_order() -> None:
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    tiles = tile(x, 4)
    quarters = [x[..., :2, :3], x[..., :2, 3:], x[..., 2:, :3], x[..., 2:, 3:]]
    for index, quarter in enumerate(quarters):
        assert torch.equal(tiles[2 * index : 2 * index + 2], quarter)


def test_odd_sizes_crop_the_remainder() -> None:
    x = torch.randn(2, 3, 9, 13)
    tiles = tile(x, 4)
    assert tiles.shape == (8, 3, 4, 6)
    assert torch.equal(merge(tiles, 4), x[..., :8, :12])


@pytest.mark.parametrize("pieces", [3, 0, -4, 8])
def test_non_square_pieces_are_refused(pieces) -> None:
    with pytest.raises(WsssError, match="square number"):
        tile(torch.zeros(1, 3, 8, 8), pieces)
    with pytest.raises(WsssError, match="square number"):
        PuzzleConfig(pieces=pieces)


def test_input_smaller_than_the_grid_is_refused() -> None:
    with pytest.raises(WsssError, match="too small"):
        tile(torch.zeros(1, 3, 2, 8), 9)


# ---------------------------------------------------------------- schedule and options


@pytest.mark.parametrize(
    ("progress", "warmup", "start", "expected"),
    [
        (0.0, 0.5, 0.0, 0.0),
        (0.25, 0.5, 0.0, 2.0),
        (0.5, 0.5, 0.0, 4.0),
        (0.9, 0.5, 0.0, 4.0),
        (0.1, 0.5, 0.2, 0.0),
        (0.2, 0.5, 0.2, 0.0),
        (0.45, 0.5, 0.2, 2.0),
        (0.8, 0.5, 0.2, 4.0),
        (0.0, 0.0, 0.0, 4.0),
    ],
)
def test_alpha_schedule(progress, warmup, start, expected) -> None:
    assert alpha_at(progress, 4.0, warmup, start) == pytest.approx(expected)
    config = PuzzleConfig(alpha=4.0, alpha_warmup=warmup, puzzle_start=start)
    assert config.alpha_at(progress) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"re_loss": "l3"}, "l1 or l2"),
        ({"re_level": "pixel"}, "feature or cam"),
        ({"alpha_warmup": 1.5}, "alpha warmup"),
        ({"alpha": -1.0}, "puzzle alpha"),
        ({"use_cls": False, "pieces": 1}, "every loss term"),
        ({"use_cls": False, "use_pcl": False, "alpha": 0.0}, "every loss term"),
    ],
)
def test_bad_options_are_refused(options, message) -> None:
    with pytest.raises(WsssError, match=message):
        PuzzleConfig(**options)


def test_normalize_cams() -> None:
    maps = torch.tensor([[[[-1.0, 2.0], [4.0, 1.0]], [[-3.0, -1.0], [-2.0, -5.0]]]])
    cams = normalize_cams(maps)
    expected = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.0], [0.0, 0.0]]]])
    assert torch.allclose(cams, expected, atol=1e-5)
    assert torch.equal(normalize_cams(maps[0]), cams[0])  # C x H x W works too

"""Pair sampling, the affinity loss, the transition matrix, the walk and the affinity net."""

from __future__ import annotations

import math

import pytest
import torch

from wsss.affinity import (
    LOSS_WEIGHTS,
    PairLabels,
    affinity_loss,
    background_map,
    labels_at_stride,
    offset_path,
    pair_affinities,
    pair_labels,
    pair_offsets,
    random_walk,
    shifted,
    shifted_stack,
    transition_matrix,
)
from wsss.data.palette import IGNORE
from wsss.errors import WsssError
from wsss.models.affinity import AffinityNet

Pair = tuple[tuple[int, int], tuple[int, int]]


pytestmark = pytest.mark.usefixtures("one_thread")


def pairs_of(mask: torch.Tensor, offsets: list[tuple[int, int]]) -> set[Pair]:
    """The pixel pairs a K x h x w mask marks, as ((y, x), (y + dy, x + dx))."""
    found = set()
    for k, y, x in mask.nonzero().tolist():
        dy, dx = offsets[k]
        found.add(((y, x), (y + dy, x + dx)))
    return found


# -- pairs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("radius", "count"), [(2, 4), (5, 34), (10, 152)])
def test_offsets_cover_the_half_disc_once(radius: int, count: int) -> None:
    offsets = pair_offsets(radius)
    assert len(offsets) == len(set(offsets)) == count
    both = set(offsets) | {(-dy, -dx) for dy, dx in offsets}
    disc = {
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if 0 < dy * dy + dx * dx < radius * radius
    }
    assert both == disc and len(both) == 2 * count  # no offset is the negation of another


def test_radius_below_two_is_refused() -> None:
    with pytest.raises(WsssError, match="--radius"):
        pair_offsets(1)


def test_shifted_reads_the_neighbour_and_fills_outside() -> None:
    x = torch.arange(12).view(3, 4)
    assert shifted(x, (1, -1), -1).tolist() == [[-1, 4, 5, 6], [-1, 8, 9, 10], [-1, -1, -1, -1]]
    assert shifted(x, (0, 2), 0).tolist() == [[2, 3, 0, 0], [6, 7, 0, 0], [10, 11, 0, 0]]


def test_pair_labels_on_a_hand_made_map() -> None:
    labels = torch.tensor(
        [
            [0, 0, 1],
            [0, IGNORE, 1],
            [2, 2, 1],
        ]
    )
    offsets = pair_offsets(2)  # right, down-left, down, down-right
    assert offsets == [(0, 1), (1, -1), (1, 0), (1, 1)]
    targets = pair_labels(labels[None], offsets)
    assert pairs_of(targets.bg[0], offsets) == {
        ((0, 0), (0, 1)),
        ((0, 0), (1, 0)),
        ((0, 1), (1, 0)),
    }
    assert pairs_of(targets.fg[0], offsets) == {
        ((2, 0), (2, 1)),
        ((0, 2), (1, 2)),
        ((1, 2), (2, 2)),
    }
    assert pairs_of(targets.neg[0], offsets) == {
        ((0, 1), (0, 2)),  # bg - class 1
        ((2, 1), (2, 2)),  # class 2 - class 1
        ((1, 0), (2, 0)),  # bg - class 2
        ((0, 1), (1, 2)),
        ((1, 0), (2, 1)),
        ((1, 2), (2, 1)),
    }
    # the other 8 in-map pairs touch the 255 pixel; pairs leaving the map are never labelled
    assert targets.counts() == {"bg": 3, "fg": 3, "neg": 6}


def test_labels_at_stride_take_cell_centres() -> None:
    labels = torch.arange(7 * 5).view(1, 7, 5)
    small = labels_at_stride(labels, (2, 2), 4)  # ceil(7/4) x ceil(5/4)
    # rows 2 and 6; columns 2 and 6 -> clamped to the last column, 4
    assert small.tolist() == [[[12, 14], [32, 34]]]


def test_loss_balances_the_three_groups() -> None:
    affinities = torch.tensor([0.5, 0.25, 0.8, 0.1]).view(1, 4, 1, 1)
    mask = lambda *on: torch.tensor(on, dtype=torch.bool).view(1, 4, 1, 1)  # noqa: E731
    targets = PairLabels(bg=mask(1, 1, 0, 0), fg=mask(0, 0, 1, 0), neg=mask(0, 0, 0, 1))
    terms = affinity_loss(affinities, targets)
    log = lambda x: math.log(x + 1e-5)  # noqa: E731
    bg, fg, neg = -(log(0.5) + log(0.25)) / 2, -log(0.8), -log(1 - 0.1)
    assert (terms["bg"].item(), terms["fg"].item()) == (pytest.approx(bg), pytest.approx(fg))
    assert terms["neg"].item() == pytest.approx(neg)
    assert terms["loss"].item() == pytest.approx(0.25 * bg + 0.25 * fg + 0.5 * neg)
    assert sum(LOSS_WEIGHTS.values()) == 1.0


def test_loss_with_empty_groups_is_finite_and_has_gradients() -> None:
    affinities = torch.full((2, 4, 3, 3), 0.5, requires_grad=True)
    empty = torch.zeros(2, 4, 3, 3, dtype=torch.bool)
    some = empty.clone()
    some[0, 1, 2, 2] = True
    terms = affinity_loss(affinities, PairLabels(bg=some, fg=empty, neg=empty))
    assert terms["fg"].item() == terms["neg"].item() == 0.0
    terms["loss"].backward()
    expected = -0.25 / (0.5 + 1e-5)  # d(-log a)/da, weighted 1/4
    assert affinities.grad[0, 1, 2, 2].item() == pytest.approx(expected)
    assert affinities.grad.abs().sum().item() == pytest.approx(-expected)


@pytest.mark.parametrize(
    ("offset", "path"),
    [
        ((0, 3), [(0, 0), (0, 1), (0, 2), (0, 3)]),
        ((1, 1), [(0, 0), (0, 1), (1, 0), (1, 1)]),
        ((2, -1), [(0, -1), (0, 0), (1, -1), (1, 0), (2, -1), (2, 0)]),
        ((2, 3), [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3)]),
    ],
)
def test_path_points_hug_the_segment(offset: tuple[int, int], path: list) -> None:
    assert sorted(offset_path(offset)) == sorted(path)


def test_affinity_is_one_minus_the_strongest_boundary_on_the_path() -> None:
    boundary = torch.zeros(1, 4, 6)
    boundary[0, :, 3] = 0.9  # a wall at column 3
    boundary[0, 0, 0] = 0.3
    offsets = [(0, 1), (0, 2), (1, 1)]
    affinities = pair_affinities(boundary, offsets)[0]
    assert affinities[0, 1, 1].item() == pytest.approx(1.0)  # (1,1)-(1,2): no boundary
    assert affinities[1, 1, 1].item() == pytest.approx(0.1)  # (1,1)-(1,3): ends on the wall
    assert affinities[1, 1, 2].item() == pytest.approx(0.1)  # (1,2)-(1,4): crosses it
    assert affinities[2, 0, 0].item() == pytest.approx(0.7)  # starts on the 0.3 pixel
    assert affinities[0, 2, 5].item() == 0.0  # (2,5)-(2,6) leaves the map: no relation
    # symmetric by construction: the path from q back to p holds the same points
    reverse = pair_affinities(boundary.flip(-1), [(0, 2)])[0, 0]
    assert reverse[1, 4 - 2].item() == pytest.approx(affinities[1, 1, 2].item())


# -- the walk ------------------------------------------------------------------------------------


def test_transition_matrix_is_row_stochastic_and_local() -> None:
    torch.manual_seed(0)
    offsets = pair_offsets(3)
    h, w = 5, 7
    matrix = transition_matrix(torch.rand(len(offsets), h, w), offsets, beta=2.0)
    # int32 indices: with int64 ones the CPU converted them at every step of the walk
    assert matrix.crow_indices().dtype == matrix.col_indices().dtype == torch.int32
    dense = matrix.to_dense()
    assert dense.shape == (h * w, h * w)
    torch.testing.assert_close(dense.sum(dim=1), torch.ones(h * w))
    assert (dense >= 0).all() and (dense.diagonal() > 0).all()
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    squared = (ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2
    assert (dense[squared >= 9] == 0).all()  # nothing beyond the radius
    assert ((dense > 0) == (dense.T > 0)).all()  # A is symmetric, so is the support of P


def test_beta_sharpens_affinities() -> None:
    offsets = pair_offsets(2)
    affinities = torch.full((len(offsets), 1, 2), 0.5)  # one pair: (0, 0) - (0, 1)
    for beta, weight in ((1.0, 0.5), (3.0, 0.125)):
        dense = transition_matrix(affinities, offsets, beta).to_dense()
        expected = torch.tensor([[1.0, weight], [weight, 1.0]]) / (1.0 + weight)
        torch.testing.assert_close(dense, expected)


def test_identity_affinity_leaves_the_cams_unchanged() -> None:
    offsets = pair_offsets(5)
    cams = torch.rand(3, 6, 9)
    transition = transition_matrix(torch.zeros(len(offsets), 6, 9), offsets, beta=10.0)
    torch.testing.assert_close(random_walk(cams, transition, 256), cams)


def test_perfect_affinity_spreads_a_seed_over_its_region_only() -> None:
    offsets = pair_offsets(5)
    h, w = 8, 12
    region = torch.zeros(h, w, dtype=torch.long)
    region[:, 5:] = 1  # left: columns 0-4, right: columns 5-11
    same = torch.stack([shifted(region, o, -1) == region for o in offsets]).float()
    seed = torch.zeros(1, h, w)
    seed[0, 3, 1] = 1.0
    walked = random_walk(seed, transition_matrix(same, offsets, beta=10.0), 256)[0]
    left, right = walked[region == 0], walked[region == 1]
    assert (right == 0).all()
    assert left.min() > 0.99 * left.max() > 0  # uniform over the whole region
    # with a weak but non-zero affinity across the edge the seed does leak
    leaky = transition_matrix(same.clamp_min(0.9), offsets, beta=10.0)
    assert random_walk(seed, leaky, 256)[0][region == 1].max() > 0


def test_a_batch_walks_like_its_images_one_by_one() -> None:
    """The block-diagonal matrix of B maps: each block the matrix of its map, entry for entry,
    and the batched walk the per-image walks (the same sums in the same order)."""
    torch.manual_seed(0)
    offsets = pair_offsets(4)
    affinities = torch.rand(3, len(offsets), 5, 7)
    maps = torch.rand(3, 2, 5, 7)
    maps[2] = 0.0  # an image whose maps are padding
    batched = transition_matrix(affinities, offsets, beta=3.0)
    dense = batched.to_dense()
    n = 5 * 7
    walked = random_walk(maps, batched, 16)
    for i in range(3):
        single = transition_matrix(affinities[i], offsets, beta=3.0)
        block = dense[i * n : (i + 1) * n]
        assert torch.equal(block[:, i * n : (i + 1) * n], single.to_dense())
        outside = torch.cat([block[:, : i * n], block[:, (i + 1) * n :]], dim=1)
        assert (outside == 0).all()  # no pair across images
        assert torch.equal(walked[i], random_walk(maps[i], single, 16))
    assert (walked[2] == 0).all()


def test_background_map_follows_the_strongest_class() -> None:
    cams = torch.tensor([[[0.0, 0.5]], [[0.2, 0.9]]])
    torch.testing.assert_close(background_map(cams, 2.0), torch.tensor([[[0.64, 0.01]]]))
    assert background_map(torch.zeros(0, 1, 2), 2.0).tolist() == [[[1.0, 1.0]]]


# -- the network ---------------------------------------------------------------------------------


@pytest.mark.parametrize("freeze", [True, False])
def test_affinity_net_stride_freezing_and_config(freeze: bool) -> None:
    model = AffinityNet("resnet18", freeze_backbone=freeze)
    logits = model(torch.randn(2, 3, 37, 45))
    assert logits.shape == (2, 1, 10, 12)  # one boundary logit per cell: ceil(H/4) x ceil(W/4)
    logits.mean().backward()
    backbone_grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is None for g in backbone_grads) == freeze
    assert all(p.grad is not None for p in model.boundary.parameters())
    model.train()
    assert model.backbone.bn1.training != freeze  # frozen: BatchNorm statistics stay fixed
    names = {group["name"] for group in model.param_groups() if group["params"]}
    assert ("pretrained_weights" in names) != freeze
    rebuilt = AffinityNet.from_config(model.config())
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config() == model.config()


@pytest.mark.parametrize("shape", [(2, 9, 13), (1, 3, 2)])  # (1, 3, 2): shifts beyond the map
def test_gathered_shifts_equal_the_shift_per_offset_bit_for_bit(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    offsets = pair_offsets(5)
    boundary = torch.rand(shape)
    boundary[boundary > 0.8] = 1.0  # ties between path points
    per_offset = [
        torch.stack([shifted(boundary, point, 1.0) for point in offset_path(o)]).amax(dim=0)
        for o in offsets
    ]
    expected = 1.0 - torch.stack(per_offset, 1)
    with torch.no_grad():  # inference gathers by default
        assert torch.equal(pair_affinities(boundary, offsets), expected)
        assert torch.equal(pair_affinities(boundary, offsets, gathered=False), expected)
    for gathered in (None, True):  # training on the CPU: per offset by default; a GPU gathers
        grad = boundary.clone().requires_grad_()
        assert torch.equal(pair_affinities(grad, offsets, gathered=gathered), expected)
    labels = torch.randint(0, 4, shape)
    labels[labels == 3] = 255
    expected_labels = torch.stack([shifted(labels, o, 255) for o in offsets], dim=1)
    assert torch.equal(shifted_stack(labels, offsets, 255), expected_labels)


def test_gathered_training_path_has_the_per_offset_gradients() -> None:
    """A GPU trains the affinity net through the gathered maxima: the same gradients up to
    float rounding (the backward sums them in another order), ties between path points
    shared alike, so the weights stay where the per-offset way takes them."""
    torch.manual_seed(0)
    offsets = pair_offsets(5)
    boundary = torch.rand(2, 11, 14)
    boundary[boundary > 0.9] = 1.0  # ties
    weights = torch.randn(2, len(offsets), 11, 14)
    grads = []
    for gathered in (False, True):
        leaf = boundary.clone().requires_grad_()
        (pair_affinities(leaf, offsets, gathered=gathered) * weights).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)
    assert grads[0].abs().max() > 1.0  # not vacuous


def test_indices_cached_at_inference_serve_training_too() -> None:
    """make-rw (inference mode) and train-aff in one process: the cached gather indices must
    not be inference tensors, which autograd refuses to save."""
    offsets = pair_offsets(7)  # a radius no other test caches
    with torch.inference_mode():
        pair_affinities(torch.rand(1, 6, 6), offsets)
        pair_labels(torch.zeros(1, 6, 6, dtype=torch.long), offsets)
    leaf = torch.rand(1, 6, 6, requires_grad=True)
    pair_affinities(leaf, offsets, gathered=True).sum().backward()
    assert leaf.grad is not None

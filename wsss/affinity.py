"""Pixel affinities and the random walk (AffinityNet, Ahn & Kwak 2018; IRN 2019).

Pairs: every pixel p of the stride-4 grid is paired with the pixels p + o for the offsets
`o` of `pair_offsets(radius)`: the half disc |o| < radius, so each unordered pair appears
once. The network predicts a boundary map b in [0, 1] (IRN's inter-pixel relation, which
Puzzle-CAM calls its AffinityNet), and the affinity of a pair is 1 - max b on the straight
path between the two pixels: two pixels are related unless a boundary separates them.

Training (`pair_labels`, `affinity_loss`): on confident-region labels (255 = unsure), a pair
of two background pixels or two pixels of the same class is positive, a pair of different
labels is negative and a pair touching 255 (or the padding outside the image) is ignored.
The loss averages the three groups separately, fg-fg and bg-bg positives with weight 1/4
each and negatives with 1/2, so the many easy background pairs do not drown the rest.

Inference (`transition_matrix`, `random_walk`): A holds a^beta for the pairs within the
radius (both directions) and 1 on the diagonal; P = D^-1 A is row-stochastic, and the CAMs
are propagated by x <- P x, 2^exp_times times. Applying P 2^n times equals the reference's
x T^(2^n) with T squared n times, but P stays sparse: N x K nonzeros (N grid pixels, K =
2 x len(offsets) + 1, 69 for radius 5), where the reference squares a dense N x N matrix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from wsss.data.palette import IGNORE
from wsss.errors import WsssError

Offset = tuple[int, int]
# Reference weights of the loss groups (AffinityNet: bg/4 + fg/4 + neg/2).
LOSS_WEIGHTS = {"bg": 0.25, "fg": 0.25, "neg": 0.5}
_EPS = 1e-5


def pair_offsets(radius: int) -> list[Offset]:
    """(dy, dx) with 0 < dy^2 + dx^2 < radius^2, one of each +-pair: (0, dx > 0) and dy > 0."""
    if radius < 2:
        raise WsssError(f"--radius must be at least 2, got {radius}")
    reach = radius - 1
    offsets = [(0, dx) for dx in range(1, radius)]
    offsets += [
        (dy, dx)
        for dy in range(1, radius)
        for dx in range(-reach, radius)
        if dy * dy + dx * dx < radius * radius
    ]
    return offsets


def shifted(x: Tensor, offset: Offset, fill: float) -> Tensor:
    """y[..., i, j] = x[..., i + dy, j + dx], `fill` where that falls outside the map."""
    dy, dx = offset
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    rows_out, rows_in = _overlap(dy, h)
    cols_out, cols_in = _overlap(dx, w)
    out[..., rows_out, cols_out] = x[..., rows_in, cols_in]
    return out


def _overlap(delta: int, size: int) -> tuple[slice, slice]:
    """Output and input ranges of a shift by `delta` along an axis of `size`."""
    if delta >= 0:
        return slice(0, max(0, size - delta)), slice(delta, size)
    return slice(-delta, size), slice(0, max(0, size + delta))


def offset_path(offset: Offset) -> list[Offset]:
    """Grid points within distance 1 of the segment from (0, 0) to `offset`, ends included.

    IRN's path: a pair is as strongly connected as the weakest point between its ends.
    """
    dy, dx = offset
    length_sq = dy * dy + dx * dx
    return [
        (y, x)
        for y in range(min(0, dy), max(0, dy) + 1)
        for x in range(min(0, dx), max(0, dx) + 1)
        if (dy * x - dx * y) ** 2 < length_sq
    ]


def pair_affinities(boundary: Tensor, offsets: list[Offset]) -> Tensor:
    """B x K x h x w affinities 1 - max(boundary on the path from p to p + o_k), float32.

    `boundary` is B x h x w in [0, 1]. Outside the map counts as boundary, so pairs leaving
    it get 0 (they are also masked: `pair_labels` ignores them, `transition_matrix` drops
    them). Memory: one B x h x w map per path point, about 5 per offset.
    """
    boundary = boundary.float()
    maps = [
        torch.stack([shifted(boundary, point, 1.0) for point in offset_path(o)]).amax(dim=0)
        for o in offsets
    ]
    return 1.0 - torch.stack(maps, dim=1)


@dataclass
class PairLabels:
    """Boolean masks B x K x h x w over the pairs of `pair_offsets`."""

    bg: Tensor  # both background: positive
    fg: Tensor  # both the same foreground class: positive
    neg: Tensor  # two different labels: negative

    def counts(self) -> dict[str, int]:
        return {name: int(mask.sum()) for name, mask in vars(self).items()}


def pair_labels(labels: Tensor, offsets: list[Offset]) -> PairLabels:
    """Pair targets from B x h x w labels (0 = background, 1..C, 255 = ignore)."""
    labels = labels.long()
    known = labels != IGNORE
    pairs = torch.stack([shifted(labels, o, IGNORE) for o in offsets], dim=1)
    source = labels.unsqueeze(1)
    valid = known.unsqueeze(1) & (pairs != IGNORE)
    same = valid & (pairs == source)
    return PairLabels(bg=same & (source == 0), fg=same & (source > 0), neg=valid & ~same)


def labels_at_stride(labels: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """B x H x W labels -> B x h x w: the label at the centre of each stride x stride cell."""
    rows, cols = (
        (torch.arange(count, device=labels.device) * stride + stride // 2).clamp_max(limit - 1)
        for count, limit in zip(size, labels.shape[-2:], strict=True)
    )
    return labels[..., rows, :][..., cols]


def affinity_loss(affinities: Tensor, targets: PairLabels) -> dict[str, Tensor]:
    """Balanced cross-entropy: -log a on positive pairs, -log(1 - a) on negative ones.

    Each group is averaged over its own pairs (an empty group contributes 0).
    """
    positive = -torch.log(affinities + _EPS)
    negative = -torch.log(1.0 + _EPS - affinities)
    terms = {
        "bg": _masked_mean(positive, targets.bg),
        "fg": _masked_mean(positive, targets.fg),
        "neg": _masked_mean(negative, targets.neg),
    }
    terms["loss"] = sum(LOSS_WEIGHTS[name] * value for name, value in terms.items())
    return terms


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1)


# -- the random walk ----------------------------------------------------------------------------


def transition_matrix(affinities: Tensor, offsets: list[Offset], beta: float) -> Tensor:
    """Sparse CSR N x N (N = h x w), row-stochastic: P = D^-1 A, A = a^beta both ways + I.

    `affinities` is K x h x w, entry k at p the affinity of (p, p + o_k); pairs leaving the
    map are dropped. Memory: N x (2K + 1) values and column indices.
    """
    if affinities.dim() != 3 or affinities.shape[0] != len(offsets):
        raise ValueError(f"affinities must be {len(offsets)} x h x w, got {affinities.shape}")
    h, w = affinities.shape[-2:]
    n = h * w
    device = affinities.device
    index = torch.arange(n, device=device).view(h, w)
    rows, cols, values = [index.reshape(-1)], [index.reshape(-1)], [torch.ones(n, device=device)]
    for k, offset in enumerate(offsets):
        inside = shifted(torch.ones(h, w, dtype=torch.bool, device=device), offset, False)
        source = index[inside]
        target = shifted(index, offset, -1)[inside]
        weight = affinities[k].float()[inside].clamp(0.0, 1.0).pow(beta)
        rows += [source, target]
        cols += [target, source]
        values += [weight, weight]
    row, col, value = torch.cat(rows), torch.cat(cols), torch.cat(values)
    degree = torch.zeros(n, device=device).index_add_(0, row, value)
    matrix = torch.sparse_coo_tensor(
        torch.stack([row, col]), value / degree[row], (n, n), check_invariants=False
    ).coalesce()
    # CSR: the walk's sparse x dense product is ~15x faster than with COO on the CPU.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.to_sparse_csr()


def random_walk(maps: Tensor, transition: Tensor, steps: int) -> Tensor:
    """C x h x w maps after `steps` applications of the transition matrix (x <- P x)."""
    channels, h, w = maps.shape
    x = maps.float().reshape(channels, h * w).T.contiguous()
    for _ in range(steps):
        x = transition @ x
    return x.T.reshape(channels, h, w)


def background_map(cams: Tensor, power: float) -> Tensor:
    """AffinityNet's background score (1 - max_c cam_c)^power, 1 x h x w (1 without classes)."""
    if cams.shape[0] == 0:
        return torch.ones(1, *cams.shape[1:], dtype=cams.dtype, device=cams.device)
    return (1.0 - cams.amax(dim=0, keepdim=True)).clamp_min(0.0).pow(power)

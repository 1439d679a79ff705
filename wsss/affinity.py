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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss.data.palette import IGNORE
from wsss.errors import WsssError

Offset = tuple[int, int]
# Reference weights of the loss groups (AffinityNet: bg/4 + fg/4 + neg/2).
LOSS_WEIGHTS = {"bg": 0.25, "fg": 0.25, "neg": 0.5}
_EPS = 1e-5
_CHUNK = 4  # offsets gathered at once by pair_affinities


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


def shifted_stack(x: Tensor, offsets: list[Offset], fill: float) -> Tensor:
    """torch.stack([shifted(x, o, fill) for o in offsets], dim=-3), the offsets any shape
    (dims in place of -3), in one pad and one gather instead of two kernels per offset: the
    small steps of the affinity loss and the walk's set-up were bound by kernel launches."""
    h, w = x.shape[-2:]
    reach = max(max(abs(dy), abs(dx)) for dy, dx in _flat(offsets))
    padded = F.pad(x, (reach, reach, reach, reach), value=fill)
    # windows[..., i, j, :, :] = padded shifted by (i - reach, j - reach): a view, no copy.
    windows = padded.unfold(-2, h, 1).unfold(-2, w, 1)
    shifts = _shift_index(offsets, reach, x.device)
    return windows[..., shifts[..., 0], shifts[..., 1], :, :]


_SHIFT_INDEX: dict[tuple[str, int, torch.device], Tensor] = {}


def _shift_index(offsets: list[Any], reach: int, device: torch.device) -> Tensor:
    """The offsets as an index tensor on `device`, made once: a copy from host memory to a GPU
    waits for every kernel queued before it, once per training step if made there."""
    key = (repr(offsets), reach, device)
    if key not in _SHIFT_INDEX:
        with torch.inference_mode(False):  # cached: also for training, which saves it
            _SHIFT_INDEX[key] = torch.tensor(offsets, device=device) + reach
    return _SHIFT_INDEX[key]


def _flat(offsets: list[Any]) -> list[Offset]:
    if offsets and isinstance(offsets[0], tuple):
        return offsets
    return [offset for group in offsets for offset in _flat(group)]


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


def pair_affinities(
    boundary: Tensor, offsets: list[Offset], gathered: bool | None = None
) -> Tensor:
    """B x K x h x w affinities 1 - max(boundary on the path from p to p + o_k), float32.

    `boundary` is B x h x w in [0, 1]. Outside the map counts as boundary, so pairs leaving
    it get 0 (they are also masked: `pair_labels` ignores them, `transition_matrix` drops
    them). Memory: one B x h x w map per path point, about 7 per offset.

    Two ways to the same maxima (bit for bit; gradients within float rounding): per offset,
    two kernels per path point (some 550 for radius 5, as many again backward), or
    `gathered`, the paths of equal length a few offsets at a time (some 40). A GPU step is
    bound by launching kernels, so by default the GPU gathers; so does inference, while
    training on the CPU takes the per-offset way, twice as fast there on maps of training
    size as the gather, whose backward scatters (docs/gpu.md).
    """
    boundary = boundary.float()
    if gathered is None:
        gathered = boundary.is_cuda or not boundary.requires_grad
    if gathered:
        groups, inverse = _path_groups(offsets, boundary.device)
        maxima = [shifted_stack(boundary, group, 1.0).amax(dim=-3) for group in groups]
        return 1.0 - torch.cat(maxima, dim=-3).index_select(-3, inverse)
    maps = [
        torch.stack([shifted(boundary, point, 1.0) for point in offset_path(o)]).amax(dim=0)
        for o in offsets
    ]
    return 1.0 - torch.stack(maps, dim=1)


_PATH_GROUPS: dict[tuple[str, torch.device], tuple[list[list[list[Offset]]], Tensor]] = {}


def _path_groups(
    offsets: list[Offset], device: torch.device
) -> tuple[list[list[list[Offset]]], Tensor]:
    """The offsets' paths in groups of equal length (no padding point: a repeated point would
    split the maximum's gradient between its copies), at most _CHUNK to a group so that the
    gathered maps stay few; and the index on `device` that puts the groups' maps back in the
    offsets' order (made once: a copy to a GPU waits for the kernels queued before it)."""
    key = (repr(offsets), device)
    if key not in _PATH_GROUPS:
        paths = [offset_path(o) for o in offsets]
        order = sorted(range(len(paths)), key=lambda k: (len(paths[k]), k))
        groups: list[list[list[Offset]]] = []
        for k in order:
            if groups and len(groups[-1]) < _CHUNK and len(groups[-1][0]) == len(paths[k]):
                groups[-1].append(paths[k])
            else:
                groups.append([paths[k]])
        with torch.inference_mode(False):  # cached: also for training, which saves it
            inverse = torch.empty(len(order), dtype=torch.long)
            inverse[order] = torch.arange(len(order))
            _PATH_GROUPS[key] = groups, inverse.to(device)
    return _PATH_GROUPS[key]


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
    pairs = shifted_stack(labels, offsets, IGNORE)
    source = labels.unsqueeze(1)
    valid = known.unsqueeze(1) & (pairs != IGNORE)
    same = valid & (pairs == source)
    return PairLabels(bg=same & (source == 0), fg=same & (source > 0), neg=valid & ~same)


def cropped_sources(targets: PairLabels, radius: int) -> PairLabels:
    """The pairs whose source lies inside IRN's / Puzzle-CAM's crop of the grid: no source in
    the last radius - 1 rows nor in the first and last radius - 1 columns (their PathIndex
    keeps every destination of a source inside the map)."""
    height, width = targets.bg.shape[-2:]
    margin = radius - 1
    keep = torch.zeros((height, width), dtype=torch.bool, device=targets.bg.device)
    keep[: max(0, height - margin), margin : max(margin, width - margin)] = True
    return PairLabels(*(getattr(targets, group) & keep for group in ("bg", "fg", "neg")))


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
    map are dropped. Memory: N x (2K + 1) values and column indices. B x K x h x w gives
    the block-diagonal matrix of the B maps (BN x BN), each block the matrix of its map
    with the same entries in the same order, so that `random_walk` walks B images with one
    sparse product per step (on a GPU, one launch instead of B).
    """
    batched = affinities.dim() == 4
    if not batched:
        affinities = affinities.unsqueeze(0)
    if affinities.dim() != 4 or affinities.shape[1] != len(offsets):
        raise ValueError(f"affinities must be {len(offsets)} x h x w, got {affinities.shape}")
    batch, (h, w) = affinities.shape[0], affinities.shape[-2:]
    n = batch * h * w
    device = affinities.device
    index = torch.arange(n, device=device).view(batch, h, w)
    rows, cols, values = [index.reshape(-1)], [index.reshape(-1)], [torch.ones(n, device=device)]
    for k, (dy, dx) in enumerate(offsets):
        # The pairs inside the map: a rectangle, sliced (a boolean mask would wait for the GPU).
        (rows_out, rows_in), (cols_out, cols_in) = _overlap(dy, h), _overlap(dx, w)
        source = index[:, rows_out, cols_out].reshape(-1)
        target = index[:, rows_in, cols_in].reshape(-1)
        weight = affinities[:, k, rows_out, cols_out].float().reshape(-1).clamp(0.0, 1.0)
        weight = weight.pow(beta)
        rows += [source, target]
        cols += [target, source]
        values += [weight, weight]
    row, col, value = torch.cat(rows), torch.cat(cols), torch.cat(values)
    degree = torch.zeros(n, device=device).index_add_(0, row, value)
    matrix = torch.sparse_coo_tensor(
        torch.stack([row, col]), value / degree[row], (n, n), check_invariants=False
    ).coalesce()
    # CSR: the walk's sparse x dense product is ~15x faster than with COO on the CPU. Its
    # indices as int32: the CPU's sparse library takes no other, so int64 ones were converted
    # at every step of the walk (and a GPU reads 8 bytes a nonzero instead of 12).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = matrix.to_sparse_csr()
        if n >= 2**31:
            return csr
        indices = csr.crow_indices().int(), csr.col_indices().int()
        return torch.sparse_csr_tensor(*indices, csr.values(), csr.shape, check_invariants=False)


def random_walk(maps: Tensor, transition: Tensor, steps: int) -> Tensor:
    """Maps after `steps` applications of the transition matrix (x <- P x).

    C x h x w maps with the matrix of one image, or B x C x h x w with the block-diagonal
    matrix of B (`transition_matrix` of B x K x h x w affinities).
    """
    batched = maps.dim() == 4
    if not batched:
        maps = maps.unsqueeze(0)
    batch, channels, h, w = maps.shape
    # One row per grid cell, image after image (the matrix's order), one column per map.
    x = maps.float().reshape(batch, channels, h * w).transpose(1, 2).reshape(-1, channels)
    x = x.contiguous()
    for _ in range(steps):
        x = transition @ x
    walked = x.reshape(batch, h * w, channels).transpose(1, 2).reshape(batch, channels, h, w)
    return walked if batched else walked[0]


def background_map(cams: Tensor, power: float) -> Tensor:
    """AffinityNet's background score (1 - max_c cam_c)^power, 1 x h x w (1 without classes)."""
    if cams.shape[0] == 0:
        return torch.ones(1, *cams.shape[1:], dtype=cams.dtype, device=cams.device)
    return (1.0 - cams.amax(dim=0, keepdim=True)).clamp_min(0.0).pow(power)

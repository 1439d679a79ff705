"""The CPU figures behind two defaults of the random-walk code (docs/gpu.md):

- make-rw's CPU batch: the walk of B same-size images at once (one block-diagonal matrix)
  against one at a time, images/s of `walk_batch` alone;
- the transition matrix's index type: the walk with int32 against int64 CSR indices;
- `pair_affinities`: the per-offset path against the gathered one, forward + backward
  (training) and forward alone (inference).

    .venv/bin/python benchmarks/walk_paths.py

Side by side in one process, best of a few repetitions; ratios, not absolute times, are
what carries over between runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from wsss.affinity import pair_affinities, pair_offsets, random_walk, transition_matrix
from wsss.camfile import CamRecord
from wsss.stages.make_rw import RwParams, walk_batch

IMAGES = 8
REPEATS = 5


def best_of(run: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats + 1):  # the first warms the allocator up
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def walk_rates(height: int, width: int) -> dict[int, float]:
    """images/s of the walk alone (radius 5, beta 10, auto steps, 2 classes) per batch size."""
    h, w = -(-height // 4), -(-width // 4)
    rng = np.random.default_rng(0)
    records = [
        CamRecord(
            np.arange(3),
            rng.random((2, h, w), dtype=np.float32),
            rng.random((2, height, width), dtype=np.float32),
        )
        for _ in range(IMAGES)
    ]
    boundary = torch.rand(IMAGES, h, w, generator=torch.Generator().manual_seed(0))
    rates = {}
    for batch in (1, 4, 8):

        def walk(batch: int = batch) -> None:
            with torch.inference_mode():
                for i in range(0, IMAGES, batch):
                    walk_batch(records[i : i + batch], boundary[i : i + batch], RwParams())

        rates[batch] = IMAGES / best_of(walk)
    return rates


def index_type_times(batch: int, height: int, width: int, steps: int) -> dict[str, float]:
    """Seconds of `steps` walk steps with the matrix's indices as int32 and as int64."""
    offsets = pair_offsets(5)
    h, w = -(-height // 4), -(-width // 4)
    generator = torch.Generator().manual_seed(0)
    affinities = torch.rand(batch, len(offsets), h, w, generator=generator)
    matrix = transition_matrix(affinities, offsets, beta=10.0)
    wide = torch.sparse_csr_tensor(
        matrix.crow_indices().long(),
        matrix.col_indices().long(),
        matrix.values(),
        matrix.shape,
        check_invariants=False,
    )
    maps = torch.rand(batch, 2, h, w, generator=generator)
    return {
        name: best_of(lambda m=m: random_walk(maps, m, steps))
        for name, m in (("int32", matrix), ("int64", wide))
    }


def affinity_times(batch: int, grid: int) -> dict[str, float]:
    """Seconds of pair_affinities (radius 5) per way, training and inference."""
    offsets = pair_offsets(5)
    boundary = torch.rand(batch, grid, grid, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(batch, len(offsets), grid, grid)
    times = {}
    for gathered in (False, True):
        name = "gathered" if gathered else "per offset"

        def train(gathered: bool = gathered) -> None:
            leaf = boundary.clone().requires_grad_()
            (pair_affinities(leaf, offsets, gathered=gathered) * weights).sum().backward()

        def infer(gathered: bool = gathered) -> None:
            with torch.no_grad():
                pair_affinities(boundary, offsets, gathered=gathered)

        times[f"train, {name}"] = best_of(train)
        times[f"inference, {name}"] = best_of(infer)
    return times


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for size in ((128, 128), (375, 500)):
        rates = walk_rates(*size)
        cells = " | ".join(f"batch {b}: {r:.1f} img/s" for b, r in rates.items())
        print(f"walk alone, {size[0]} x {size[1]} px: {cells}")
    for batch in (1, 4):
        times = index_type_times(batch, 375, 500, 64)
        cells = " | ".join(f"{k} indices: {v * 1000:.1f} ms" for k, v in times.items())
        print(f"64 walk steps, batch {batch} of 375 x 500 px: {cells}")
    for batch, grid in ((8, 32), (16, 64), (4, 128)):
        times = affinity_times(batch, grid)
        cells = " | ".join(f"{k}: {v * 1000:.1f} ms" for k, v in times.items())
        print(f"pair_affinities, batch {batch}, {grid} x {grid} grid: {cells}")


if __name__ == "__main__":
    main()

"""Label-free background-threshold rules against the ground-truth best (the oracle).

For each CAM folder, every rule picks a threshold from the CAMs alone; one pass of eval-cam's
sweep (0.01 steps plus the rules' own thresholds) then scores each choice and finds the
oracle. Prints a markdown table (docs/label_free_threshold.md).

    python benchmarks/label_free_threshold.py --split train CAMS:DATA [CAMS:DATA ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from wsss.cam_eval import ThresholdSweep
from wsss.cam_threshold import TopStats, parse_thresholds
from wsss.camfile import find_cam_file, load_cam_file
from wsss.data.voc import VocDataset


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the cut maximising the between-class variance."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist / max(hist.sum(), 1)
    mids = (edges[:-1] + edges[1:]) / 2
    w0, m0 = np.cumsum(p), np.cumsum(p * mids)
    between = (m0[-1] * w0 - m0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(edges[1:][np.argmax(between)])


def mass_balance(values: np.ndarray) -> float:
    """The t whose foreground share (values > t) equals the CAMs' mean value (their mass)."""
    ordered = np.sort(values)[::-1]
    count = int(round(values.mean() * len(ordered)))
    return float(ordered[min(max(count, 1), len(ordered)) - 1])


def otsu_effectiveness(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """Otsu's threshold and its effectiveness eta = between-class / total variance (1: two
    separated modes, near 0: one mode)."""
    t = otsu(values, bins)
    low, high = values[values <= t], values[values > t]
    total = float(values.var())
    if total == 0 or not len(low) or not len(high):
        return t, 0.0
    w = len(low) / len(values)
    between = w * (1 - w) * float(high.mean() - low.mean()) ** 2
    return t, between / total


def triangle(values: np.ndarray, bins: int = 256) -> float:
    """The triangle method: the bin farthest below the line from the histogram's peak to
    its far end (made for one mode with a long tail)."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    peak = int(np.argmax(hist))
    end = int(np.nonzero(hist)[0][-1])
    if end <= peak + 1:
        return float(edges[peak + 1])
    x = np.arange(peak, end + 1)
    h = hist[peak : end + 1].astype(np.float64)
    # distance (up to a constant) of each point below the chord from (peak, h0) to (end, h1)
    chord = h[0] + (h[-1] - h[0]) * (x - peak) / (end - peak)
    return float(edges[x[int(np.argmax(chord - h))] + 1])


def isodata(values: np.ndarray, start: float) -> float:
    """Ridler-Calvard: t = the midpoint of the two sides' means, iterated from `start`."""
    t = start
    for _ in range(100):
        low, high = values[values <= t], values[values > t]
        if not len(low) or not len(high):
            return t
        new = (float(low.mean()) + float(high.mean())) / 2
        if abs(new - t) < 1e-4:
            return new
        t = new
    return t


def blended(values: np.ndarray) -> float:
    """Otsu where the strongest-CAM histogram has two modes, mean-cam where it has one,
    weighted by Otsu's effectiveness."""
    t, eta = otsu_effectiveness(values)
    return eta * t + (1 - eta) * float(values.mean())


def steepest_contour(tops: list[np.ndarray], bins: int = 100) -> float:
    """The level whose iso-contour is steepest: the mean gradient magnitude of the maps per
    value bin (sums and counts over 5 bins, levels 0.05-0.95), its argmax. A blurred step's edge is
    its steepest level (0.5 of the step; about 0.6 for a blob smaller than the blur)."""
    grad_sum, count = np.zeros(bins), np.zeros(bins)
    for top in tops:
        gy, gx = np.gradient(top.astype(np.float64))
        index = np.minimum((top * bins).astype(int), bins - 1).ravel()
        grad_sum += np.bincount(index, np.hypot(gx, gy).ravel(), bins)
        count += np.bincount(index, None, bins)
    window = np.ones(5)
    counts = np.maximum(np.convolve(count, window, "same"), 1)
    smooth = np.convolve(grad_sum, window, "same") / counts
    low, high = bins // 20, bins - bins // 20
    return float((np.argmax(smooth[low:high]) + low + 0.5) / bins)


def laplacian_zero_crossing(
    tops: list[np.ndarray], sigma: float = 1.0, floor: float = 0.05
) -> float:
    """The median level of the maps' edges in Marr-Hildreth's sense: the pixels where the
    Laplacian of Gaussian (sigma px) changes sign, kept where the gradient passes `floor` x
    the map's largest (flat background crosses zero on noise) and the map 0.02. A blurred
    step's crossing sits at half its height; a blob smaller than its blur crosses at
    r = sigma_blob sqrt(2), e^-1 = 0.37 of its peak, higher than blend lands on such blobs."""
    from scipy import ndimage

    levels = []
    for top in tops:
        c = top.astype(np.float64)
        inside = ndimage.gaussian_laplace(c, sigma) < 0
        gy, gx = np.gradient(ndimage.gaussian_filter(c, sigma))
        grad = np.hypot(gx, gy)
        crossing = np.zeros_like(inside)
        crossing[:-1] |= inside[:-1] & ~inside[1:]
        crossing[1:] |= inside[1:] & ~inside[:-1]
        crossing[:, :-1] |= inside[:, :-1] & ~inside[:, 1:]
        crossing[:, 1:] |= inside[:, 1:] & ~inside[:, :-1]
        levels.append(c[crossing & (grad > floor * grad.max()) & (c > 0.02)])
    pooled = np.concatenate(levels)
    return float(np.median(pooled)) if pooled.size else 0.5


def wsss_rule(rule: str) -> Callable[[list[np.ndarray]], float]:
    """A rule of `wsss.cam_threshold` as the stages run it (its histogram included)."""

    def pick(tops: list[np.ndarray]) -> float:
        stats = TopStats()
        for top in tops:
            stats.update(top[None])
        return stats.result(rule).threshold

    return pick


RULES: dict[str, Callable[[list[np.ndarray]], float]] = {
    "blend (chosen)": wsss_rule("blend"),
    "lifted-median": wsss_rule("lifted-median"),
    "mean-cam (before)": wsss_rule("mean-cam"),
    "median": lambda tops: float(np.median(np.concatenate([t.ravel() for t in tops]))),
    "Otsu, pooled": lambda tops: otsu(np.concatenate([t.ravel() for t in tops])),
    "Otsu, median per image": lambda tops: float(np.median([otsu(t.ravel()) for t in tops])),
    "mass balance": lambda tops: mass_balance(np.concatenate([t.ravel() for t in tops])),
    "triangle": lambda tops: triangle(np.concatenate([t.ravel() for t in tops])),
    "ISODATA from mean": lambda tops: isodata(
        pooled := np.concatenate([t.ravel() for t in tops]), float(pooled.mean())
    ),
    "Otsu-mean blend": lambda tops: blended(np.concatenate([t.ravel() for t in tops])),
    "min(mean, median)": lambda tops: min(
        float((pooled := np.concatenate([t.ravel() for t in tops])).mean()),
        float(np.median(pooled)),
    ),
    "median of per-image means": lambda tops: float(np.median([t.mean() for t in tops])),
    "mean of mean and median": lambda tops: (
        float((pooled := np.concatenate([t.ravel() for t in tops])).mean() + np.median(pooled)) / 2
    ),
    "steepest contour": steepest_contour,
    "Laplacian zero crossing": laplacian_zero_crossing,
    "Laplacian zero crossing, sigma 2": partial(laplacian_zero_crossing, sigma=2.0),
    "Laplacian zero crossing, sigma 3": partial(laplacian_zero_crossing, sigma=3.0),
}


def measure(
    cams: Path, data: Path, split: str, keep: dict[str, object] | None = None
) -> dict[str, tuple[float, float]]:
    """Each rule's (t, mIoU) and the oracle's; `keep` receives the 0.01-step curve and the
    strongest-CAM maps, for trying more rules without another sweep."""
    voc = VocDataset.open(data)
    ids = voc.split_ids(split)
    records = [load_cam_file(find_cam_file(cams, i), voc.num_classes) for i in ids]
    tops = [r.hr_cam.max(axis=0) for r in records if len(r.hr_cam)]
    chosen = {name: round(rule(tops), 4) for name, rule in RULES.items()}
    grid = parse_thresholds("0.01:0.95:0.01")
    sweep = ThresholdSweep(voc.classes, sorted({*grid, *chosen.values()}))
    for image_id, record in zip(ids, records, strict=True):
        sweep.update(record.hr_cam, record.labels, voc.load_mask(image_id), name=image_id)
    result = sweep.result()
    miou = dict(result.curve)
    if keep is not None:
        keep["curve"] = [[t, miou[t]] for t in grid]
        keep["tops"] = tops
    scores = {name: (t, miou[float(t)]) for name, t in chosen.items()}
    return {"oracle": (result.best_threshold, result.best_miou), **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="CAMS:DATA, a CAM folder and its dataset root")
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    names = ["oracle", *RULES]
    print("| CAMs | " + " | ".join(f"{n}: t / mIoU" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    gaps: dict[str, list[float]] = {name: [] for name in RULES}
    for pair in args.pairs:
        cams, data = (Path(p) for p in pair.split(":"))
        scores = measure(cams, data, args.split)
        oracle = scores["oracle"][1]
        for name in RULES:
            gaps[name].append(oracle - scores[name][1])
        cells = [f"{t:.2f} / {m:.2f}" for t, m in (scores[n] for n in names)]
        print(f"| {cams} | " + " | ".join(cells) + " |")
    print("| mean gap to the oracle (points) | - | "
          + " | ".join(f"{np.mean(gaps[n]):.2f}" for n in RULES) + " |")  # fmt: skip
    print("| largest gap (points) | - | "
          + " | ".join(f"{np.max(gaps[n]):.2f}" for n in RULES) + " |")  # fmt: skip


if __name__ == "__main__":
    main()

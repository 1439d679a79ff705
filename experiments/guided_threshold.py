"""Threshold rules that look beyond the CAM histogram (issue #27): the classifier, the CRF,
the image's own edges and colours.

Each reads a saved `threshold_sets.py run` folder (its CAMs, data, CAM classifier), on the
split's first 100 labelled images, and writes per-run curves beside the CAMs; `table` turns
them into one threshold per run for each candidate rule and scores it on the run's saved
CAM sweep, as `threshold_sets.py table` does for the histogram rules.

- classifier: per labelled (image, class) pair, the run's own CAM classifier scores the
  image with the class's CAM region kept (masked in: pixels below t set to the dataset mean,
  0 after normalisation) and removed (masked out), t = 0.05 ... 0.95 (classifier_curves.npz);
- crf: per image and t = 0.05 ... 0.85, the CAMs thresholded at t against the same labels
  after the pipeline's dense CRF (crf_curves.npz): where t sits on the objects' edges the
  CRF, which follows colour edges, should change little;
- edge: per image and t = 0.04 ... 0.90, the image's colour gradient (Gaussian sigma 2, then
  Sobel) summed over the pixels where the thresholded CAMs' labels change, and their count
  (edge_curves.npz): where t sits on the objects' outlines the contour runs along the
  objects' colour edges;
- colour: per image and t = 0.04 ... 0.90, the mutual information between the thresholded
  CAMs' foreground and the image's quantised colour (4 and 8 levels a channel;
  colour_curves.npz): where the foreground is the objects, their colours should explain it.

Measured on the tuning runs (docs/label_free_threshold.md): none is near the oracle; the
classifier needs only the objects' parts, the CRF shrinks the foreground at every t, the
strongest edges the contours meet are the parts' own, at high t, and the colour information
favours the larger foreground of a low t (with look-alike distractors in the background).

    python experiments/guided_threshold.py classifier-curves runs/thresholds/tuning --jobs 2
    python experiments/guided_threshold.py crf-curves runs/thresholds/tuning \\
        --only sparse-small-191,strong-body-big-131,weak-body-clutter-101
    python experiments/guided_threshold.py edge-curves runs/thresholds/tuning --jobs 2
    python experiments/guided_threshold.py colour-curves runs/thresholds/tuning --jobs 2
    python experiments/guided_threshold.py table classifier runs/thresholds/tuning [--json F]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import typer

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

app = typer.Typer(add_completion=False)
CLASSIFIER_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
CRF_GRID = np.round(np.arange(0.05, 0.851, 0.05), 2)
EDGE_GRID = np.round(np.arange(0.04, 0.901, 0.02), 2)
CLASSIFIER_CURVES, CRF_CURVES = "classifier_curves.npz", "crf_curves.npz"
EDGE_CURVES, COLOUR_CURVES = "edge_curves.npz", "colour_curves.npz"
# The colour gradient's smoothing: the generator's stripes (period about 6 px) average out,
# object outlines stay steps.
EDGE_SIGMA = 2.0


def classifier_curves_of(run: dict[str, Any], threads: int, max_images: int = 100) -> str:
    """RUN/classifier_curves.npz for one saved run (kept when there), from the split's first
    `max_images` labelled images (the rules read medians over pairs: a hundred images hold
    enough, at a fraction of the forwards)."""
    import torch

    from wsss.camfile import find_cam_file, load_cam_file
    from wsss.checkpoints import load_model
    from wsss.data.transforms import normalize
    from wsss.data.voc import VocDataset
    from wsss.models.classifier import CamClassifier

    torch.set_num_threads(threads)
    cams = Path(run["cams"])
    target = cams.parent / CLASSIFIER_CURVES
    if target.is_file():
        return str(target)
    voc = VocDataset.open(Path(run["data"]), None)
    model, _ = load_model(cams.parent / "cam_model" / "final.pt", CamClassifier.KIND, voc.classes)
    model.eval()
    grid = torch.tensor(CLASSIFIER_GRID, dtype=torch.float32)
    rows: dict[str, list[Any]] = {"full": [], "inside": [], "outside": [], "area": [],
                                  "cls": [], "image": []}  # fmt: skip
    ids = [i for i in voc.split_ids(run["split"]) if voc.image_classes(i)][:max_images]
    with torch.inference_mode():
        for index, image_id in enumerate(ids):
            classes = voc.image_classes(image_id)  # sorted, as the CAM file's maps
            record = load_cam_file(find_cam_file(cams, image_id), len(voc.classes))
            x = normalize(voc.load_image(image_id))  # 3 x H x W
            for k, c in enumerate(classes):
                cam = torch.from_numpy(record.hr_cam[k])
                keep = (cam[None] >= grid[:, None, None]).float()[:, None]  # T x 1 x H x W
                batch = torch.cat([x[None], x[None] * keep, x[None] * (1 - keep)])
                probs = torch.sigmoid(CamClassifier.logits(model(batch)))[:, c]
                rows["full"].append(float(probs[0]))
                rows["inside"].append(probs[1 : 1 + len(CLASSIFIER_GRID)].numpy())
                rows["outside"].append(probs[1 + len(CLASSIFIER_GRID) :].numpy())
                rows["area"].append(keep.mean(dim=(1, 2, 3)).numpy())
                rows["cls"].append(c)
                rows["image"].append(index)
    arrays = {k: np.asarray(v, dtype=np.float32 if k not in ("cls", "image") else np.int32)
              for k, v in rows.items()}  # fmt: skip
    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, grid=CLASSIFIER_GRID, **arrays)
    tmp.replace(target)
    return str(target)


def crf_curves_of(run: dict[str, Any], max_images: int = 100, unary: str = "scores") -> str:
    """RUN/crf_curves.npz (crf_curves_labels.npz with the labels unary): per image and t, the
    foreground pixels before and after the CRF, those in both, the background in both, all."""
    from wsss.camfile import find_cam_file, load_cam_file
    from wsss.crf import CrfParams
    from wsss.data.voc import VocDataset
    from wsss.pseudo import refined_indices, threshold_indices

    cams_dir = Path(run["cams"])
    target = cams_dir.parent / (CRF_CURVES if unary == "scores" else f"crf_curves_{unary}.npz")
    if target.is_file():
        return str(target)
    voc = VocDataset.open(Path(run["data"]), None)
    ids = [i for i in voc.split_ids(run["split"]) if voc.image_classes(i)][:max_images]
    counts = np.zeros((len(ids), len(CRF_GRID), 5), np.int64)
    for n, image_id in enumerate(ids):
        cams = np.asarray(
            load_cam_file(find_cam_file(cams_dir, image_id), len(voc.classes)).hr_cam, np.float32
        )
        image = np.asarray(voc.load_image(image_id).convert("RGB"), np.uint8)
        for k, t in enumerate(CRF_GRID):
            before = threshold_indices(cams, float(t)) > 0
            after = refined_indices(image, cams, float(t), CrfParams(unary=unary)) > 0
            counts[n, k] = (before.sum(), after.sum(), (before & after).sum(),
                            (~before & ~after).sum(), before.size)  # fmt: skip
    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, grid=CRF_GRID, counts=counts)
    tmp.replace(target)
    return str(target)


def colour_gradient(image: np.ndarray, sigma: float = EDGE_SIGMA) -> np.ndarray:
    """|grad| of an H x W x 3 image after Gaussian smoothing, over the three channels."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0))
    gx, gy = ndimage.sobel(smooth, axis=1), ndimage.sobel(smooth, axis=0)
    return np.sqrt((gx**2 + gy**2).sum(axis=-1))


def contour(labels: np.ndarray) -> np.ndarray:
    """The pixels whose label differs from their right or lower neighbour's, both sides."""
    edge = np.zeros(labels.shape, bool)
    right, down = labels[:, 1:] != labels[:, :-1], labels[1:] != labels[:-1]
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    edge[1:] |= down
    edge[:-1] |= down
    return edge


def edge_counts(image: np.ndarray, cams: np.ndarray, grid: np.ndarray = EDGE_GRID) -> np.ndarray:
    """Per t of the grid: [the colour gradient summed over the thresholded CAMs' contour,
    the contour's pixels]."""
    from wsss.pseudo import threshold_indices

    gradient = colour_gradient(image)
    counts = np.zeros((len(grid), 2))
    for k, t in enumerate(grid):
        edge = contour(threshold_indices(cams, float(t)))
        counts[k] = gradient[edge].sum(), edge.sum()
    return counts


def per_image_curves(
    run: dict[str, Any], filename: str, measure: Callable[..., np.ndarray], max_images: int
) -> str:
    """RUN/filename: measure(image, cams) of the split's first `max_images` labelled images,
    stacked as `values`, with the images' pixel counts and the grid."""
    from wsss.camfile import find_cam_file, load_cam_file
    from wsss.data.voc import VocDataset

    cams_dir = Path(run["cams"])
    target = cams_dir.parent / filename
    if target.is_file():
        return str(target)
    voc = VocDataset.open(Path(run["data"]), None)
    ids = [i for i in voc.split_ids(run["split"]) if voc.image_classes(i)][:max_images]
    values, pixels = [], []
    for image_id in ids:
        record = load_cam_file(find_cam_file(cams_dir, image_id), len(voc.classes))
        image = np.asarray(voc.load_image(image_id).convert("RGB"), np.uint8)
        values.append(measure(image, np.asarray(record.hr_cam, np.float32)))
        pixels.append(image.shape[0] * image.shape[1])
    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, grid=EDGE_GRID, values=np.stack(values), pixels=np.array(pixels))
    tmp.replace(target)
    return str(target)


def edge_curves_of(run: dict[str, Any], max_images: int = 100) -> str:
    """RUN/edge_curves.npz: edge_counts of the split's first `max_images` labelled images."""
    return per_image_curves(run, EDGE_CURVES, edge_counts, max_images)


COLOUR_LEVELS = (4, 8)  # levels per channel of the quantised colour: 64 and 512 bins


def quantised_colour(image: np.ndarray, levels: int) -> np.ndarray:
    """H x W bin index of an H x W x 3 uint8 image, `levels` bins per channel."""
    q = (image.astype(np.int64) * levels) // 256
    return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


def mutual_information(mask: np.ndarray, bins: np.ndarray, count: int) -> float:
    """I(mask; colour) in nats of one image: how much of the mask its colours explain."""
    joint = np.bincount((bins + count * mask).ravel(), minlength=2 * count).reshape(2, count)
    p = joint / joint.sum()
    outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
    seen = p > 0
    return float((p[seen] * np.log(p[seen] / outer[seen])).sum())


def colour_information(image: np.ndarray, cams: np.ndarray,
                       grid: np.ndarray = EDGE_GRID) -> np.ndarray:  # fmt: skip
    """Per colour quantisation and t of the grid: I(foreground at t; colour) of one image."""
    from wsss.pseudo import threshold_indices

    out = np.zeros((len(COLOUR_LEVELS), len(grid)))
    for q, levels in enumerate(COLOUR_LEVELS):
        bins = quantised_colour(image, levels)
        for k, t in enumerate(grid):
            mask = (threshold_indices(cams, float(t)) > 0).astype(np.int64)
            out[q, k] = mutual_information(mask, bins, levels**3)
    return out


def colour_curves_of(run: dict[str, Any], max_images: int = 100) -> str:
    """RUN/colour_curves.npz: colour_information of the split's first `max_images` labelled
    images."""
    return per_image_curves(run, COLOUR_CURVES, colour_information, max_images)


def _runs(folders: list[Path], only: str = "") -> list[dict[str, Any]]:
    """The saved runs of `threshold_sets.py run` folders (`only`: NAME-SEED,... of them)."""
    chosen = {name for name in only.split(",") if name}
    runs = [dict(run, set=folder.name) for folder in folders
            for run in json.loads((folder / "rules.json").read_text())]  # fmt: skip
    return [r for r in runs if not chosen or f"{r['variant']}-{r['seed']}" in chosen]


def _each(job: Callable[..., str], args: Iterable[list[Any]], jobs: int) -> None:
    """job(*a) for every a, `jobs` processes at a time, printing each file made."""
    if jobs == 1:
        for a in args:
            print(job(*a), flush=True)
        return
    with ProcessPoolExecutor(jobs) as pool:
        for made in pool.map(job, *zip(*args, strict=True)):
            print(made, flush=True)


ONLY = typer.Option("", "--only", help="NAME-SEED,... (default: every saved run)")
JOBS = typer.Option(1, "--jobs", min=1)
MAX_IMAGES = typer.Option(100, "--max-images", min=1)


@app.command("classifier-curves")
def classifier_curves(folders: list[Path], jobs: int = JOBS, only: str = ONLY) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    _each(classifier_curves_of, ([run, threads] for run in _runs(folders, only)), jobs)


@app.command("crf-curves")
def crf_curves(
    folders: list[Path],
    jobs: int = JOBS,
    only: str = ONLY,
    max_images: int = MAX_IMAGES,
    unary: str = typer.Option("scores", "--unary", help="the CRF's unary: scores | labels"),
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _each(crf_curves_of, ([run, max_images, unary] for run in _runs(folders, only)), jobs)


@app.command("edge-curves")
def edge_curves(
    folders: list[Path], jobs: int = JOBS, only: str = ONLY, max_images: int = MAX_IMAGES
) -> None:
    _each(edge_curves_of, ([run, max_images] for run in _runs(folders, only)), jobs)


@app.command("colour-curves")
def colour_curves(
    folders: list[Path], jobs: int = JOBS, only: str = ONLY, max_images: int = MAX_IMAGES
) -> None:
    _each(colour_curves_of, ([run, max_images] for run in _runs(folders, only)), jobs)


def _first_below(values: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Per row, the grid's t just before the first t at which `values` < `limit` (rising t);
    the last t where it never falls below."""
    below = values < limit[:, None]
    first = np.where(below.any(axis=1), below.argmax(axis=1), len(CLASSIFIER_GRID))
    return CLASSIFIER_GRID[np.clip(first - 1, 0, len(CLASSIFIER_GRID) - 1)]


def _last_below(values: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Per row, the largest t at which `values` < `limit` (the class gone once the region at
    t is removed); the lowest t where it never is."""
    below = values < limit[:, None]
    last = np.where(below.any(axis=1), len(CLASSIFIER_GRID) - 1 - below[:, ::-1].argmax(axis=1), 0)
    return CLASSIFIER_GRID[last]


def classifier_rules(path: Path) -> dict[str, float]:
    with np.load(path) as saved:
        full, inside, outside = saved["full"], saved["inside"], saved["outside"]
    rules: dict[str, float] = {}
    for rho in (0.5, 0.7, 0.9):
        t_in = _first_below(inside, rho * full)
        t_out = _last_below(outside, rho * full)
        rules[f"in{rho}-median"] = float(np.median(t_in))
        rules[f"in{rho}-mean"] = float(np.mean(t_in))
        rules[f"out{rho}-median"] = float(np.median(t_out))
        rules[f"out{rho}-mean"] = float(np.mean(t_out))
    half = np.full_like(full, 0.5)  # a probability of one half, whatever the full image's
    rules["in-abs0.5-median"] = float(np.median(_first_below(inside, half)))
    rules["out-abs0.5-median"] = float(np.median(_last_below(outside, half)))
    return rules


def agreement(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per t, the thresholded CAMs' agreement with their CRF: pooled over the images, and the
    median of per-image figures."""
    fg_b, fg_a, fg_both, bg_both, size = (counts[..., i].astype(np.float64) for i in range(5))
    fg_union = fg_b + fg_a - fg_both
    bg_union = 2 * size - fg_b - fg_a - bg_both
    pooled = (fg_both.sum(0) / np.maximum(fg_union.sum(0), 1)
              + bg_both.sum(0) / np.maximum(bg_union.sum(0), 1)) / 2  # fmt: skip
    per_image = (fg_both / np.maximum(fg_union, 1) + bg_both / np.maximum(bg_union, 1)) / 2
    changed = (fg_union - fg_both).sum(0) / size.sum(0)  # share of pixels the CRF flips
    return {"pooled": pooled, "median": np.median(per_image, axis=0), "changed": changed}


def crf_rules(path: Path) -> dict[str, float]:
    with np.load(path) as saved:
        counts = saved["counts"]
    curves = agreement(counts)
    rules = {
        "crf-pooled-max": float(CRF_GRID[int(np.argmax(curves["pooled"]))]),
        "crf-median-max": float(CRF_GRID[int(np.argmax(curves["median"]))]),
        "crf-changed-min": float(CRF_GRID[int(np.argmin(curves["changed"]))]),
    }
    # per image: its own best t, then the median over the images
    fg_b, fg_a, fg_both, bg_both, size = (counts[..., i].astype(np.float64) for i in range(5))
    per_image = (fg_both / np.maximum(fg_b + fg_a - fg_both, 1)
                 + bg_both / np.maximum(2 * size - fg_b - fg_a - bg_both, 1)) / 2  # fmt: skip
    rules["crf-per-image-median"] = float(np.median(CRF_GRID[np.argmax(per_image, axis=1)]))
    return rules


def first_peak(curve: np.ndarray, half_width: int = 2) -> int:
    """The first index that is the largest of its +-half_width neighbours and above the
    curve's start (the curve smoothed by a moving average of 2 half_width + 1 first); the
    largest where there is none."""
    size = 2 * half_width + 1
    smooth = np.convolve(np.pad(curve, half_width, mode="edge"), np.ones(size) / size, "valid")
    for k in range(half_width, len(smooth) - half_width):
        if smooth[k] == smooth[k - half_width : k + half_width + 1].max() and smooth[k] > smooth[0]:
            return k
    return int(np.argmax(smooth))


def edge_rules(path: Path, scores: dict[str, Any]) -> dict[str, float]:
    """The mean gradient on the contour per t, pooled over the images: its largest, its first
    peak, the median of per-image largest; and a choice between blend's and Otsu's t (the
    two histogram rules right on different regimes) by whose contour is the stronger."""
    with np.load(path) as saved:
        grid, counts = saved["grid"], saved["values"]
    pooled = counts[..., 0].sum(0) / np.maximum(counts[..., 1].sum(0), 1)
    per_image = counts[..., 0] / np.maximum(counts[..., 1], 1)
    blend_t, otsu_t = scores["blend (chosen)"][0], scores["Otsu, pooled"][0]
    stronger = np.interp(otsu_t, grid, pooled) > np.interp(blend_t, grid, pooled)
    return {
        "edge-max": float(grid[int(np.argmax(pooled))]),
        "edge-first-peak": float(grid[first_peak(pooled)]),
        "edge-per-image-median": float(np.median(grid[np.argmax(per_image, axis=1)])),
        "edge-picks-blend-or-otsu": float(otsu_t if stronger else blend_t),
    }


def colour_rules(path: Path) -> dict[str, float]:
    """The t whose foreground its colours explain best: I(foreground; colour) pooled over the
    images (weighted by their pixels) at its largest, and the median of per-image largest."""
    with np.load(path) as saved:
        grid, info, pixels = saved["grid"], saved["values"], saved["pixels"]
    rules: dict[str, float] = {}
    for q, levels in enumerate(COLOUR_LEVELS):
        pooled = (info[:, q] * pixels[:, None]).sum(0)
        rules[f"colour{levels}-max"] = float(grid[int(np.argmax(pooled))])
        rules[f"colour{levels}-per-image-median"] = float(
            np.median(grid[np.argmax(info[:, q], axis=1)])
        )
    return rules


KINDS: dict[str, tuple[str, Callable[[Path, dict[str, Any]], dict[str, float]]]] = {
    # rules_of(curves file, the run's histogram rules' (t, mIoU)): only edge reads the latter
    "classifier": (CLASSIFIER_CURVES, lambda path, _: classifier_rules(path)),
    "crf": (CRF_CURVES, lambda path, _: crf_rules(path)),
    "edge": (EDGE_CURVES, edge_rules),
    "colour": (COLOUR_CURVES, lambda path, _: colour_rules(path)),
}


@app.command()
def table(
    kind: str = typer.Argument(..., help="classifier | crf | edge | colour"),
    folders: list[Path] = typer.Argument(...),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """Each candidate's t / CAM mIoU per run (and averaged with blend's t), then every
    candidate's mean and largest gap to the oracle, best worst case first."""
    from experiments.threshold_sets import saved_scores

    if kind not in KINDS:
        raise typer.BadParameter(f"KIND must be one of {', '.join(KINDS)}, got '{kind}'")
    curves_file, rules_of = KINDS[kind]
    histogram = {(r["set"], r["variant"], r["seed"]): r["scores"] for r in saved_scores(folders)}
    out: list[dict[str, Any]] = []
    for run in _runs(folders):
        path = Path(run["cams"]).parent / curves_file
        if not path.is_file():
            continue
        grid, miou = np.array(run["curve"]).T
        scores = dict(histogram[(run["set"], run["variant"], run["seed"])])
        blend_t = scores["blend (chosen)"][0]
        for name, t in rules_of(path, scores).items():
            scores[name] = (t, float(np.interp(t, grid, miou)))
            mixed = (blend_t + t) / 2
            scores[f"blend+{name}"] = (mixed, float(np.interp(mixed, grid, miou)))
        out.append({"set": run["set"], "variant": run["variant"], "seed": run["seed"],
                    "scores": scores})  # fmt: skip
    if not out:
        raise SystemExit(f"no run holds {curves_file}: run {kind}-curves first")
    shown = ("oracle", "blend (chosen)", "mean-cam (before)")
    new = [n for n in out[0]["scores"] if n not in histogram[next(iter(histogram))]]
    names = [*shown, *new]
    for set_name in dict.fromkeys(r["set"] for r in out):
        rows = [r for r in out if r["set"] == set_name]
        print(f"## {set_name}")
        gaps = {n: [r["scores"]["oracle"][1] - r["scores"][n][1] for r in rows] for n in names}
        for r in rows:
            cells = " ".join("{:.2f}/{:.1f}".format(*r["scores"][n]) for n in names[:2] + new[:2])
            print(f"{r['variant']}-{r['seed']}: {cells}")
        for n in sorted(names, key=lambda n: (max(gaps[n]), np.mean(gaps[n]))):
            print(f"  {n:32s} mean gap {np.mean(gaps[n]):5.2f}  largest {max(gaps[n]):5.2f}")
    if json_out is not None:
        json_out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    app()

"""How many pixel masks make the background threshold as good as all of them (issue #27).

Where the label-free rule misses (sparse small objects, docs/label_free_threshold.md), a user
can draw masks for a few images and let eval-cam's sweep choose t on them (`--threshold
oracle`). This measures what K masks buy: for each saved `threshold_sets.py run`, every
image's own threshold sweep against its mask, then many random draws of K images; each draw
picks the best t of its K images' pooled sweep, scored on all of the run's images against the
oracle of all of them (the best possible t).

    python experiments/few_masks.py curves runs/thresholds/tuning --jobs 2
    python experiments/few_masks.py table runs/thresholds/tuning [--draws 1000] [--json F]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import typer

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

app = typer.Typer(add_completion=False)
GRID = np.round(np.arange(0.01, 0.951, 0.01), 2)  # the sweep of threshold_sets.py run
COUNTS = (1, 3, 5, 10, 20, 40)
WITHIN = 1.5  # issue #27's target on the report set, in mIoU points
MARGINS = (0.0, 1.0, 2.0, 5.0)  # mIoU points by which the masks' best must beat blend's t


def per_image_matrices(run: dict[str, Any]) -> np.ndarray:
    """I x T x N x N: each image's confusion matrices over GRID (rows GT), saved beside the
    run's CAMs (few_masks.npz) so a second reading is free."""
    from wsss.cam_eval import ThresholdSweep
    from wsss.camfile import find_cam_file, load_cam_file
    from wsss.data.voc import VocDataset

    target = Path(run["cams"]).parent / "few_masks.npz"
    if target.is_file():
        with np.load(target) as saved:
            return saved["matrices"]
    voc = VocDataset.open(Path(run["data"]))
    out = []
    for image_id in voc.split_ids(run["split"]):
        record = load_cam_file(find_cam_file(Path(run["cams"]), image_id), voc.num_classes)
        sweep = ThresholdSweep(voc.classes, GRID.tolist())
        sweep.update(record.hr_cam, record.labels, voc.load_mask(image_id), name=image_id)
        out.append(sweep.matrices())
    matrices = np.stack(out).astype(np.int32)
    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, matrices=matrices)
    tmp.replace(target)
    return matrices


LABEL_GRID = np.round(np.arange(0.05, 0.701, 0.05), 2)  # label-making is a CRF per t


def per_image_label_matrices(run: dict[str, Any], blend_t: float) -> np.ndarray:
    """I x T x N x N: each image's pseudo labels (threshold + dense CRF, the pipeline's
    make-pseudo settings) at LABEL_GRID and, last, at blend's t, against its mask; saved
    beside the run's CAMs (few_masks_labels.npz)."""
    from experiments.entry import MEASURED_AMP
    from experiments.quality_sets import SETS
    from experiments.threshold_sets import _steps
    from wsss.camfile import find_cam_file, load_cam_file
    from wsss.data.voc import VocDataset
    from wsss.mask_threshold import label_matrices
    from wsss.stages.make_pseudo import MakePseudoConfig, crf_params

    target = Path(run["cams"]).parent / "few_masks_labels.npz"
    if target.is_file():
        with np.load(target) as saved:
            return saved["matrices"]
    out = Path(run["cams"]).parents[1]
    variant = next(v for v in SETS[out.name] if v.name == run["variant"])
    steps = _steps(variant, int(run["seed"]), out, MEASURED_AMP)
    options = {k: v for k, v in steps.options["make_pseudo"].items() if k != "threshold"}
    config = MakePseudoConfig(cams=Path(run["cams"]), data=Path(run["data"]),
                              split=run["split"], out=out / "unused", **options)  # fmt: skip
    crf = crf_params(config)
    voc = VocDataset.open(Path(run["data"]))
    thresholds = [*LABEL_GRID.tolist(), blend_t]
    out_matrices = []
    for image_id in voc.split_ids(run["split"]):
        record = load_cam_file(find_cam_file(Path(run["cams"]), image_id), voc.num_classes)
        image = np.asarray(voc.load_image(image_id).convert("RGB"), np.uint8)
        gt = voc.load_mask(image_id)
        matrices = label_matrices(image, record, gt, voc.num_classes, crf, config.bg_power,
                                  thresholds)  # fmt: skip
        out_matrices.append(matrices)
    matrices = np.stack(out_matrices).astype(np.int32)
    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, matrices=matrices)
    tmp.replace(target)
    return matrices


def miou_curves(matrices: np.ndarray) -> np.ndarray:
    """... x T x N x N confusion matrices -> ... x T mIoU %, wsss.metrics' convention (a class
    absent from both GT and prediction left out); `check_metric` ties it to that metric."""
    m = matrices.astype(np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    union = m.sum(-1) + m.sum(-2) - tp
    present = union > 0
    iou = np.where(present, tp / np.maximum(union, 1), 0.0)
    return 100.0 * iou.sum(-1) / np.maximum(present.sum(-1), 1)


def check_metric(matrices: np.ndarray, classes: tuple[str, ...]) -> None:
    """The vectorised curve equals wsss.metrics.ConfusionMatrix's mIoU on the pooled sweep."""
    from wsss.metrics import ConfusionMatrix

    pooled = matrices.sum(0)
    for k in (0, len(GRID) // 2, len(GRID) - 1):
        confusion = ConfusionMatrix(pooled.shape[-1], ("background", *classes))
        confusion.matrix = pooled[k].astype(np.int64)
        expected = confusion.compute().miou
        assert abs(miou_curves(pooled[k][None])[0] - expected) < 1e-9, (k, expected)


def draw(images: int, count: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """draws x count image indices, each draw without replacement."""
    return np.stack([rng.choice(images, count, replace=False) for _ in range(draws)])


def best_of_draws(matrices: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Per draw: the index of the best t of its images' pooled curve (the first of ties)."""
    return miou_curves(matrices[picks].sum(1)).argmax(-1)


def _runs(folders: list[Path]) -> list[dict[str, Any]]:
    """Every saved run of the folders, with its set's name and blend's t."""
    from experiments.threshold_sets import saved_scores

    scores = {(r["set"], r["variant"], r["seed"]): r["scores"] for r in saved_scores(folders)}
    return [dict(run, set=folder.name, scores=scores[(folder.name, run["variant"], run["seed"])])
            for folder in folders
            for run in json.loads((folder / "rules.json").read_text())]  # fmt: skip


def _curves_of(run: dict[str, Any]) -> str:
    import torch

    torch.set_num_threads(1)
    per_image_matrices(run)
    per_image_label_matrices(run, run["scores"]["blend (chosen)"][0])
    return f"{run['set']}/{run['variant']}-{run['seed']}"


@app.command()
def curves(
    folders: list[Path] = typer.Argument(..., help="--out folders of threshold_sets.py run"),
    jobs: int = typer.Option(1, "--jobs", min=1),
) -> None:
    """Each run's per-image CAM sweeps and pseudo-label curves (resumes: saved per run)."""
    from concurrent.futures import ProcessPoolExecutor

    runs = _runs(folders)
    if jobs == 1:
        for run in runs:
            print(_curves_of(run), flush=True)
        return
    with ProcessPoolExecutor(jobs) as pool:
        for made in pool.map(_curves_of, runs):
            print(made, flush=True)


def _gap_stats(gaps: np.ndarray) -> dict[str, float]:
    return {"mean": float(gaps.mean()), "p90": float(np.quantile(gaps, 0.9)),
            "within": float((gaps <= WITHIN).mean())}  # fmt: skip


@app.command()
def table(
    folders: list[Path] = typer.Argument(..., help="--out folders of threshold_sets.py run"),
    draws: int = typer.Option(1000, "--draws", min=1),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """Per run and K: what K masks buy, on the CAMs (the t of their sweep) and on the pseudo
    labels (the t of their labels' curve, and the CAM sweep's t carried to the labels)."""
    from wsss.data.voc import VocDataset

    rows: list[dict[str, Any]] = []
    for run in _runs(folders):
        cams = per_image_matrices(run)
        check_metric(cams, VocDataset.open(Path(run["data"])).classes)
        scores = run["scores"]
        row: dict[str, Any] = {"set": run["set"], "variant": run["variant"], "seed": run["seed"],
                               "images": len(cams), "cam_oracle": scores["oracle"],
                               "cam_blend": scores["blend (chosen)"]}  # fmt: skip
        labels_path = Path(run["cams"]).parent / "few_masks_labels.npz"
        labels = per_image_label_matrices(run, scores["blend (chosen)"][0]) \
            if labels_path.is_file() else None  # fmt: skip
        full_cams = miou_curves(cams.sum(0))
        if labels is not None:
            full_labels = miou_curves(labels.sum(0))
            grid_labels = full_labels[: len(LABEL_GRID)]
            best = int(grid_labels.argmax())
            row["label_oracle"] = (float(LABEL_GRID[best]), float(grid_labels[best]))
            row["label_blend"] = float(full_labels[-1])
            row["label_at_cam_oracle"] = float(np.interp(scores["oracle"][0], LABEL_GRID,
                                                         grid_labels))  # fmt: skip
        rng = np.random.default_rng(int(run["seed"]))
        for count in COUNTS:
            picks = draw(len(cams), count, draws, rng)
            cam_t = GRID[best_of_draws(cams, picks)]
            entry = {"cams": _gap_stats(full_cams.max() - full_cams[np.searchsorted(GRID, cam_t)])}
            if labels is not None:
                label_pick = best_of_draws(labels[:, : len(LABEL_GRID)], picks)
                oracle = row["label_oracle"][1]
                entry["labels"] = _gap_stats(oracle - grid_labels[label_pick])
                entry["labels_by_cam_t"] = _gap_stats(oracle - np.interp(cam_t, LABEL_GRID,
                                                                         grid_labels))  # fmt: skip
                # blend's t unless the drawn images' best beats it on them by a margin
                drawn = miou_curves(labels[picks].sum(1))
                ahead = drawn[np.arange(draws), label_pick] - drawn[:, -1]
                for margin in MARGINS:
                    chosen = np.where(ahead > margin, grid_labels[label_pick], full_labels[-1])
                    entry[f"labels_blend_unless_{margin:g}"] = _gap_stats(oracle - chosen)
            row[f"k{count}"] = entry
        rows.append(row)
    _print_tables(rows)
    if json_out is not None:
        json_out.write_text(json.dumps({"draws": draws, "within": WITHIN, "runs": rows}, indent=1))


def _print_tables(rows: list[dict[str, Any]]) -> None:
    cells = lambda e: "{mean:.2f} / {p90:.2f} / {within:.0%}".format(**e)  # noqa: E731
    head = " | ".join(f"{c} masks" for c in COUNTS)
    print(f"CAMs: gap to the oracle, mean / 90th percentile / share within {WITHIN}\n")
    print(f"| set | variant, seed | oracle t / mIoU | blend gap | {head} |")
    print("|---" * (4 + len(COUNTS)) + "|")
    for r in rows:
        gap = r["cam_oracle"][1] - r["cam_blend"][1]
        print(f"| {r['set']} | {r['variant']}, {r['seed']} | "
              "{:.2f} / {:.1f} | {:.2f} | ".format(*r["cam_oracle"], gap)
              + " | ".join(cells(r[f"k{c}"]["cams"]) for c in COUNTS) + " |")  # fmt: skip
    print(
        f"\nPseudo labels: gap to their oracle (best t of {LABEL_GRID[0]:.2f}..."
        f"{LABEL_GRID[-1]:.2f}), K masks picking t on the labels [on the CAMs]\n"
    )
    print(f"| set | variant, seed | label oracle t / mIoU | blend gap | at the CAM oracle's t "
          f"gap | {head} |")  # fmt: skip
    print("|---" * (5 + len(COUNTS)) + "|")
    for r in [r for r in rows if "label_oracle" in r]:
        t, best = r["label_oracle"]
        print(f"| {r['set']} | {r['variant']}, {r['seed']} | {t:.2f} / {best:.1f} | "
              f"{best - r['label_blend']:.2f} | {best - r['label_at_cam_oracle']:.2f} | "
              + " | ".join(f"{cells(r[f'k{c}']['labels'])} "
                           f"[{r[f'k{c}']['labels_by_cam_t']['mean']:.2f}]" for c in COUNTS)
              + " |")  # fmt: skip


if __name__ == "__main__":
    app()

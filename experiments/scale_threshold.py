"""Does comparing a classifier's CAMs at two scales tell a blur halo from an object (issue #27)?

The blend rule misses on sparse small objects because their strongest-CAM histogram is that of
large strong-bodied objects (docs/label_free_threshold.md). One cue the histogram cannot see:
at stride 16 a small object's CAM is blurred over the background by about the stride, and at
scale 2 that halo is half as wide in the image, so the scale-2 region should be much smaller
than the scale-1 region where the CAMs are mostly halo and about as large where they are
mostly object. Per run (a saved `threshold_sets.py run` folder), on its first labelled train
images: the CAMs at scale 1 and at scale 2 alone (each with its flip), and the pipeline's at
1, 1.5 and 2, their pixel areas above each t of GRID, the merged CAMs' sweep against the masks
(the oracle) and blend's t on them. Two readings: the area ratio (scale 2 over scale 1), and
an "area rule": the t at which the merged CAMs cover as many pixels as the scale-2 CAMs do
above t0, i.e. the object's extent read from the less blurred scale.

Measured on twelve tuning runs, bf16 (docs/label_free_threshold.md, "The two scales"): the
ratio does not follow the oracle, because the CAMs of classifiers that rely on a part shrink
at scale 2 onto the part as a halo does onto a small object. Not adopted.

    python experiments/scale_threshold.py curves runs/thresholds/tuning-bf16/sparse-small-191 ...
    python experiments/scale_threshold.py table runs/thresholds/tuning-bf16/*/scale_curves.json
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

from experiments import entry  # noqa: E402

app = entry.app()
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
SCALES = {"area1": (1.0,), "area2": (2.0,)}
MERGED = (1.0, 1.5, 2.0)  # the demo recipe's make-cam scales
CURVES = "scale_curves.json"


def area_rule(merged: np.ndarray, scale2: np.ndarray, grid: np.ndarray, t0: float) -> float:
    """The lowest t of `grid` at which the merged CAMs' area above t is no larger than the
    scale-2 CAMs' area above t0 (both areas non-increasing in t, one per grid point)."""
    target = scale2[int(np.argmin(np.abs(grid - t0)))]
    below = np.flatnonzero(merged <= target)
    return float(grid[below[0]] if below.size else grid[-1])


def nearest(grid: np.ndarray, t: float) -> int:
    return int(np.argmin(np.abs(grid - t)))


def curves(run: Path, images: int) -> dict[str, Any]:
    """The areas, the oracle sweep and blend's t of one run (see the module's docstring)."""
    import torch

    from wsss.cam_eval import ThresholdSweep
    from wsss.cam_threshold import TopStats
    from wsss.checkpoints import load_model
    from wsss.data.transforms import normalize
    from wsss.data.voc import VocDataset
    from wsss.inference import Predictor, TtaConfig, make_cams
    from wsss.models.classifier import CamClassifier

    voc = VocDataset.open(run / "data")
    model, _ = load_model(run / "cam_model" / "final.pt", CamClassifier.KIND, voc.classes)
    predictor = Predictor.prepare(model.eval(), torch.device("cpu"))
    ids = [i for i in voc.split_ids("train") if voc.image_classes(i)][:images]
    areas = {name: np.zeros(len(GRID)) for name in (*SCALES, "area_merged")}
    sweep, stats = ThresholdSweep(voc.classes, GRID.tolist()), TopStats()

    def area(scales: tuple[float, ...], image: torch.Tensor, classes: list) -> Any:
        tta = TtaConfig(scales=scales, flip=True)
        return make_cams(predictor, image, classes, tta, with_strided=False)[0]

    for image_id in ids:
        image, classes = normalize(voc.load_image(image_id))[None], [voc.image_classes(image_id)]
        for name, scales in SCALES.items():
            areas[name] += (area(scales, image, classes).hr_cam[..., None] > GRID).sum((0, 1, 2))
        merged = area(MERGED, image, classes)
        areas["area_merged"] += (merged.hr_cam[..., None] > GRID).sum((0, 1, 2))
        sweep.update(merged.hr_cam, merged.labels, voc.load_mask(image_id), name=image_id)
        stats.update(merged.hr_cam)
    mious = np.array([score.miou for score in sweep.result().scores])
    return {"run": run.name, "images": len(ids), "grid": GRID.tolist(), "miou": mious.tolist(),
            "oracle_t": float(GRID[mious.argmax()]), "oracle_miou": float(mious.max()),
            "blend_t": stats.result().threshold,
            **{name: values.tolist() for name, values in areas.items()}}  # fmt: skip


def row(record: dict[str, Any], t0: float) -> dict[str, float]:
    """One run's readings: the oracle, blend, the area ratio at 0.10 and at blend's t, the
    area rule; each t with its mIoU on the run's sweep."""
    grid, miou = np.asarray(record["grid"]), np.asarray(record["miou"])
    a1, a2, am = (np.asarray(record[k]) for k in ("area1", "area2", "area_merged"))
    blend, rule = record["blend_t"], area_rule(am, a2, grid, t0)
    return {"oracle_t": record["oracle_t"], "oracle_miou": record["oracle_miou"],
            "blend_t": blend, "blend_miou": float(miou[nearest(grid, blend)]),
            "ratio_010": float(a2[nearest(grid, 0.10)] / a1[nearest(grid, 0.10)]),
            "ratio_blend": float(a2[nearest(grid, blend)] / a1[nearest(grid, blend)]),
            "rule_t": rule, "rule_miou": float(miou[nearest(grid, rule)])}  # fmt: skip


@app.command("curves")
def curves_command(runs: list[Path], images: int = typer.Option(80, "--images", min=1)) -> None:
    """Each run's curves, saved as RUN/scale_curves.json."""
    for run in runs:
        record = curves(run, images)
        (run / CURVES).write_text(json.dumps(record))
        print(f"{run.name}: oracle t {record['oracle_t']:.2f}, blend t {record['blend_t']:.2f}")


@app.command("table")
def table_command(
    files: list[Path],
    t0: float = typer.Option(0.10, "--t0"),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """The readings of every run, as a Markdown table (and JSON)."""
    records = [json.loads(path.read_text()) for path in files]
    rows = {r["run"]: row(r, t0) for r in sorted(records, key=lambda r: r["oracle_t"])}
    print("| run | oracle t / mIoU | blend t / mIoU (gap) | scale-2 / scale-1 area at 0.10 | "
          f"at blend's t | area rule (t0 {t0:.2f}) t / mIoU (gap) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['oracle_t']:.2f} / {r['oracle_miou']:.2f} | {r['blend_t']:.2f} / "
              f"{r['blend_miou']:.2f} ({r['oracle_miou'] - r['blend_miou']:.2f}) | "
              f"{r['ratio_010']:.2f} | {r['ratio_blend']:.2f} | {r['rule_t']:.2f} / "
              f"{r['rule_miou']:.2f} ({r['oracle_miou'] - r['rule_miou']:.2f}) |")  # fmt: skip
    if json_out is not None:
        json_out.write_text(json.dumps({"t0": t0, "runs": rows}, indent=1))


if __name__ == "__main__":
    entry.main(app)

"""bf16 against fp32 on the CAMs and pseudo labels of a quality set (issue #26).

Reads two `experiments/threshold_sets.py` folders made from the same variants and seeds, one
with `--amp gpu` (fp32 on the CPU) and one with `--amp bf16`, each after `run` and `pseudo`
(and `experiments/run_arms.py run --arms seg` for the segmenter, in the folder's precision),
and prints, per variant, each precision's figures per data seed, the fp32 seed spread (the
two seeds' difference) and bf16's difference from fp32 on the same data; the check is that
each variant's bf16 mean lies within its fp32 seed spread of the fp32 mean.

`training-seeds` reads, besides, a second training seed on the same data (run_arms.py's
`cam-seed1` and `seg-30ep-seed1` arms, in each folder's precision): the fp32 spread is then
what retraining on the same images moves, not the difference of two datasets.

    python experiments/precision_quality.py compare runs/thresholds/tuning \
        runs/thresholds/tuning-bf16 [--seg-arm seg-30ep] [--json OUT.json]
    python experiments/precision_quality.py training-seeds runs/thresholds/tuning \
        runs/thresholds/tuning-bf16 [--json OUT.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.threshold_sets import CAM_NAMES  # noqa: E402

app = typer.Typer(add_completion=False)

# figure name -> how to read it from one run's rules.json row and pseudo.json entry
FIGURES = (
    "CAMs, oracle t",
    "CAMs, blend t",
    "pseudo labels, blend t",
    "pseudo labels, oracle t",
    "segmenter (val)",
)


def figures_of(folder: Path, seg_arm: str = "seg") -> dict[tuple[str, str], dict[str, float]]:
    """(variant, seed) -> each figure (mIoU %) of one threshold_sets folder; the segmenter is
    run_arms.py's `seg_arm`."""
    rules = json.loads((folder / "rules.json").read_text())
    pseudo_path = folder / "pseudo.json"
    pseudo = json.loads(pseudo_path.read_text()) if pseudo_path.is_file() else {}
    arms_path = folder / "arms.json"  # experiments/run_arms.py's `seg` arm: the segmenter
    arms = json.loads(arms_path.read_text()) if arms_path.is_file() else {}
    out: dict[tuple[str, str], dict[str, float]] = {}
    for row in rules:
        key = (row["variant"], str(row["seed"]))
        labels = pseudo.get(f"{key[0]}-{key[1]}", {})
        values = {
            FIGURES[0]: row["scores"]["oracle"][1],
            FIGURES[1]: row["scores"][CAM_NAMES["blend"]][1],
        }
        if "blend" in labels:
            values[FIGURES[2]] = labels["blend"][1]
        if "oracle" in labels:
            values[FIGURES[3]] = labels["oracle"][1]
        segmenter = arms.get(f"{key[0]}-{key[1]}", {}).get(seg_arm)
        if segmenter is not None:
            values[FIGURES[4]] = segmenter["seg_miou"]
        out[key] = values
    return out


def compare(fp32: Path, bf16: Path, seg_arm: str = "seg") -> list[dict[str, Any]]:
    """One row per variant and figure where both precisions have both seeds."""
    a, b = figures_of(fp32, seg_arm), figures_of(bf16, seg_arm)
    variants = list(dict.fromkeys(variant for variant, _ in a))
    rows = []
    for variant in variants:
        seeds = sorted(seed for v, seed in a if v == variant)
        if len(seeds) < 2 or any((variant, s) not in b for s in seeds):
            continue
        for figure in FIGURES:
            if any(figure not in x[(variant, s)] for x in (a, b) for s in seeds):
                continue
            full = [a[(variant, s)][figure] for s in seeds]
            half = [b[(variant, s)][figure] for s in seeds]
            spread = max(full) - min(full)
            shift = sum(half) / len(half) - sum(full) / len(full)
            rows.append({
                "variant": variant, "figure": figure, "seeds": seeds, "fp32": full,
                "bf16": half, "fp32_seed_spread": spread, "bf16_minus_fp32_mean": shift,
                "paired": [h - f for h, f in zip(half, full, strict=True)],
                "within_spread": abs(shift) <= spread,
            })  # fmt: skip
    return rows


# the second training seed's figures: run_arms.py arm -> (its key, the figure)
SEED1 = {"cam-seed1": (("cam_miou_oracle", FIGURES[0]), ("cam_miou", FIGURES[1]),
                       ("pseudo_miou", FIGURES[2])),
         "seg-30ep-seed1": (("seg_miou", FIGURES[4]),)}  # fmt: skip


def by_training_seed(folder: Path) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(variant, data seed) -> figure -> [training seed 0, training seed 1], for the runs
    that have the seed arms (seed 0: the run's own figures, its segmenter the seg-30ep arm)."""
    own = figures_of(folder, "seg-30ep")
    arms_path = folder / "arms.json"
    arms = json.loads(arms_path.read_text()) if arms_path.is_file() else {}
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for key, values in own.items():
        run = arms.get(f"{key[0]}-{key[1]}", {})
        pairs = {figure: [values[figure], run[arm][name]] for arm, names in SEED1.items()
                 if arm in run for name, figure in names if figure in values}  # fmt: skip
        if pairs:
            out[key] = pairs
    return out


def compare_training_seeds(fp32: Path, bf16: Path) -> list[dict[str, Any]]:
    """Per variant and figure with both training seeds of every data seed in both precisions:
    the fp32 training-seed spread (the largest |seed 1 - seed 0| over the data seeds) and
    bf16's mean over all its runs minus fp32's; within: the shift is at most that spread."""
    a, b = by_training_seed(fp32), by_training_seed(bf16)
    rows = []
    for variant in dict.fromkeys(v for v, _ in a):
        seeds = sorted(s for v, s in a if v == variant)
        for figure in FIGURES:
            if any(figure not in x.get((variant, s), {}) for x in (a, b) for s in seeds):
                continue
            full = [a[(variant, s)][figure] for s in seeds]
            half = [b[(variant, s)][figure] for s in seeds]
            spread = max(abs(y - x) for x, y in full)
            shift = sum(map(sum, half)) / (2 * len(half)) - sum(map(sum, full)) / (2 * len(full))
            rows.append({
                "variant": variant, "figure": figure, "data_seeds": seeds,
                "fp32": full, "bf16": half, "fp32_training_seed_spread": spread,
                "bf16_training_seed_spread": max(abs(y - x) for x, y in half),
                "bf16_minus_fp32_mean": shift, "within_spread": abs(shift) <= spread,
            })  # fmt: skip
    return rows


@app.command("training-seeds")
def training_seeds(
    fp32: Path = typer.Argument(..., help="threshold_sets folder made with --amp gpu (CPU fp32)"),
    bf16: Path = typer.Argument(..., help="the same variants made with --amp bf16"),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """bf16 against the fp32 spread of a second training seed on the same data."""
    rows = compare_training_seeds(fp32, bf16)
    lines = ["| variant | figure | fp32 (data seed: training seeds 0 / 1) | bf16 (the same) | "
             "fp32 training-seed spread | bf16's | bf16 - fp32 (means) | within |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        cells = [
            ", ".join(
                f"{s}: {x:.2f} / {y:.2f}" for s, (x, y) in zip(r["data_seeds"], r[k], strict=True)
            )
            for k in ("fp32", "bf16")
        ]
        lines.append(f"| {r['variant']} | {r['figure']} | {cells[0]} | {cells[1]} | "
                     f"{r['fp32_training_seed_spread']:.2f} | "
                     f"{r['bf16_training_seed_spread']:.2f} | "
                     f"{r['bf16_minus_fp32_mean']:+.2f} | "
                     f"{'yes' if r['within_spread'] else '**no**'} |")  # fmt: skip
    print("\n".join(lines))
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=1))


@app.command("compare")
def main(
    fp32: Path = typer.Argument(..., help="threshold_sets folder made with --amp gpu (CPU fp32)"),
    bf16: Path = typer.Argument(..., help="the same variants made with --amp bf16"),
    seg_arm: str = typer.Option("seg", "--seg-arm", help="run_arms.py's segmenter arm to read"),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """bf16 against the fp32 spread of the two data seeds."""
    rows = compare(fp32, bf16, seg_arm)
    lines = [
        "| variant | figure | fp32 (seeds) | bf16 (seeds) | fp32 seed spread | "
        "bf16 - fp32 (means) | bf16 - fp32 per seed | within |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['figure']} | "
            + " / ".join(f"{v:.2f}" for v in r["fp32"]) + " | "
            + " / ".join(f"{v:.2f}" for v in r["bf16"]) + " | "
            + f"{r['fp32_seed_spread']:.2f} | {r['bf16_minus_fp32_mean']:+.2f} | "
            + " / ".join(f"{v:+.2f}" for v in r["paired"]) + " | "
            + ("yes" if r["within_spread"] else "**no**") + " |"
        )  # fmt: skip
    for figure in FIGURES:
        chosen = [r for r in rows if r["figure"] == figure]
        if chosen:
            inside = sum(r["within_spread"] for r in chosen)
            mean = sum(r["bf16_minus_fp32_mean"] for r in chosen) / len(chosen)
            lines.append(f"| all | {figure} | | | | mean {mean:+.2f} | | "
                         f"{inside} of {len(chosen)} |")  # fmt: skip
    print("\n".join(lines))
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(app())

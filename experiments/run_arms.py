"""Arms on saved threshold-set runs: each changes one setting of one stage and reruns the
chain from that stage on, reusing what lies upstream (the run's CAM classifier, CAMs, CRF
labels at blend's t, affinity net).

Issue #25 asks for each of wsss's own settings to be measured against the reference's on the
tuning set (rows 2-9 of docs/parity.md here) and for Puzzle-CAM's ablation there (the
classifier arms: a plain-CAM and a full-loss classifier trained beside the run's own; the
`*-reference` arms: the three under the reference profile's make-cam and CRF);
issue #26 for the segmenter half of the bf16 check and its training-seed spread; issue #27
for the segmenter's length and make-cam's scales. Every arm writes its own folders under the
run (its base's name and its own: `rw_rw_global`, `aff_model_aff_reference_head`, ...) and
resumes; OUT/arms.json keeps each run's figures per arm, merged across invocations.

    python experiments/run_arms.py run --out runs/thresholds/tuning --arms seg,predict-logits
        [--datasets tuning] [--only NAME,...] [--jobs 2] [--amp gpu|bf16]
    python experiments/run_arms.py table runs/thresholds/tuning [--json OUT.json]
    python experiments/run_arms.py ablation runs/thresholds/tuning [--by-variant] [--json OUT]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import typer

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.entry import MEASURED_AMP  # noqa: E402
from experiments.quality_sets import Variant  # noqa: E402
from experiments.records import put_row  # noqa: E402
from experiments.threshold_sets import _in_parallel, _selected, _steps  # noqa: E402
from wsss.recipes import DEMO, variant_options  # noqa: E402

app = typer.Typer(add_completion=False)


@dataclass(frozen=True)
class Arm:
    """One setting changed: `options` per stage on top of the run's recipe; `kind` says where
    the chain restarts; `base` is the arm it is compared with (None: a baseline)."""

    kind: str  # "classifier" | "cams" | "labels" | "walk" | "aff" | "seg" | "predict"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    base: str | None = None
    row: str = ""  # docs/parity.md's row, or the issue the arm answers
    # the classifier arm it starts from: its model for a "cams" arm, its CAMs for a "labels" one
    source: str = "cams"


# The segmenter's length every segmenter arm was measured at (the default until issue #27's
# 30 epochs), so that `seg` and its arms reproduce docs/parity.md and docs/quality.md.
SEG_15 = {"epochs": 15}

# make-cam and make-pseudo under the reference profile (docs/parity.md, rows 2 and 3)
REFERENCE_CAMS = {"make_cam": {"resize": "pil-bicubic"}, "make_pseudo": {"crf_preset": "reference"}}

ARMS: dict[str, Arm] = {
    # baselines: the pipeline's own settings, scored the way their arms are
    "cams": Arm("cams"),
    "rw": Arm("walk"),
    "seg": Arm("seg", {"train_seg": SEG_15}),
    # issue #25: the reference's value of one row each
    "cam-pil-bicubic": Arm("cams", {"make_cam": {"resize": "pil-bicubic"}}, "cams", "2"),
    "crf-reference": Arm("labels", {"make_pseudo": {"crf_preset": "reference"}}, "cams", "3"),
    "rw-global": Arm("walk", {"make_rw": {"rw_normalise": "global"}}, "rw", "4"),
    "rw-8": Arm("walk", {"make_rw": {"exp_times": 8}}, "rw", "5"),
    "rw-reference": Arm(
        "walk", {"make_rw": {"rw_normalise": "global", "exp_times": 8}}, "rw", "4+5"
    ),  # fmt: skip
    "aff-reference-pairs": Arm(
        "aff", {"train_aff": {"radius": 10, "pair_sources": "cropped"}}, "rw", "6"
    ),
    "aff-reference-head": Arm("aff", {"train_aff": {"aff_head": "reference"}}, "rw", "7"),
    "seg-reference-head": Arm(
        "seg", {"train_seg": {**SEG_15, "align_corners": True, "head_norm": "gn"}}, "seg", "8"
    ),  # fmt: skip
    "predict-logits": Arm("predict", {"predict": {"merge": "logits"}}, "seg", "9"),
    # issue #27: the segmenter's length
    "seg-30ep": Arm("seg", {"train_seg": {"epochs": 30}}, "seg", "#27"),
    # issue #27: make-cam without its coarsest scale, whose blur makes the halo round small
    # objects that the label-free threshold cannot cut (docs/label_free_threshold.md)
    "cam-scales-1-2": Arm("cams", {"make_cam": {"scales": (1.0, 1.5, 2.0)}}, "cams", "#27"),
    # issue #25: Puzzle-CAM's ablation on the tuning set, against the runs' L_cls + L_p-cls
    # classifiers: the plain CAM and the full loss (the paper's alpha 4), trained afresh
    "cam-plain": Arm(
        "classifier", {"train_cam": variant_options(DEMO, "baseline")}, "cams", "ablation"
    ),  # fmt: skip
    "cam-full": Arm(
        "classifier",
        # the recipe's alpha, which the demo's own variant (pcl) sets to 0
        {"train_cam": {**variant_options(DEMO, "full"), "alpha": DEMO.train_cam["alpha"]}},
        "cams",
        "ablation",
    ),  # fmt: skip
    # the ablation under the reference profile: the three classifiers' CAMs made with the
    # reference's resize (row 2) and labelled with its CRF (row 3), each against the same
    # classifier under wsss's; at ResNet-18 depth rows 1 and 4-9 do not touch these figures
    "cam-plain-reference": Arm(
        "cams", REFERENCE_CAMS, "cam-plain", "ablation, 2+3", source="cam-plain"
    ),  # fmt: skip
    "cams-reference": Arm("cams", REFERENCE_CAMS, "cams", "ablation, 2+3"),
    "cam-full-reference": Arm(
        "cams", REFERENCE_CAMS, "cam-full", "ablation, 2+3", source="cam-full"
    ),  # fmt: skip
    # issue #26: another training seed on the same data (train-cam and train-seg; the runs'
    # own train with the stage default, 0), so that the bf16 check's fp32 spread is a
    # training seed's and not only the data seed's
    "cam-seed1": Arm("classifier", {"train_cam": {"seed": 1}}, "cams", "#26"),
    "seg-30ep-seed1": Arm(
        "seg", {"train_seg": {"epochs": 30, "seed": 1}}, "seg-30ep", "#26", source="cam-seed1"
    ),  # fmt: skip
}


def _folder(name: str, base: str) -> str:
    """An arm's folder under the run: the baseline's own name, or it suffixed by the arm."""
    return base if name in ("cams", "rw", "seg") else f"{base}_{name.replace('-', '_')}"


def _arm_of(name: str, steps: Any, run_dir: Path) -> dict[str, Any]:
    """One arm on one saved run; the figures of what it changed (mIoU %)."""
    arm = ARMS[name]
    steps.options = {stage: {**opts, **arm.options.get(stage, {})}
                     for stage, opts in steps.options.items()}  # fmt: skip
    steps.cam_model = run_dir / "cam_model" / "final.pt"
    tag = name.replace("-", "_")
    if arm.kind == "classifier":  # a classifier of its own, then its CAMs
        model = steps.train_cam(_folder(name, "cam_model"))
        cams = run_dir / _folder(name, "cams")
        steps.make_cam(model, cams)
        return steps.cams_to_labels(cams, tag=tag)
    if arm.kind == "cams":
        cams = run_dir / _folder(name, "cams")
        model = run_dir / _folder(arm.source, "cam_model") / "final.pt"
        steps.make_cam(model, cams)  # skips the files already there
        return steps.cams_to_labels(cams, tag=tag)
    if arm.kind == "labels":
        return steps.cams_to_labels(run_dir / _folder(arm.source, "cams"), tag=tag)
    if arm.kind in ("walk", "aff"):
        aff_model = run_dir / "aff_model" / "final.pt"
        if arm.kind == "aff":  # retrained on the run's confident labels
            aff_model = steps.train_aff(steps.cam_model, run_dir / "pseudo_confident",
                                        run_dir / _folder(name, "aff_model"))  # fmt: skip
        walked = run_dir / _folder(name, "rw")
        steps.make_rw(aff_model, run_dir / "cams", walked)
        return steps.cams_to_labels(walked, tag=tag)
    labels = run_dir / "pseudo"  # the CRF labels at blend's t, as a pipeline run has them
    if arm.source != "cams":  # a classifier arm's labels, its model the segmenter's start
        labels = run_dir / _folder(arm.source, "pseudo")
        steps.cam_model = run_dir / _folder(arm.source, "cam_model") / "final.pt"
    elif not labels.exists():
        labels.symlink_to("pseudo_blend", target_is_directory=True)
    if arm.kind == "seg":
        model = steps.train_seg(labels, "" if name == "seg" else f"_{tag}")
    else:  # "predict": the baseline's segmenter, predicted otherwise
        model = run_dir / "seg_model" / "final.pt"
    pred = run_dir / _folder(name, f"pred_{steps.splits.predict}")
    steps.predict(model, pred)
    scores = steps.evaluate(pred)
    return {"seg_miou": scores["miou"], "seg_miou_reference": scores["miou_reference"]}


def arms_of(variant: Variant, seed: int, out: Path, amp: str, threads: int,
            arms: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """The arms, in order, on one saved run (each on the run's recipe afresh)."""
    import torch

    torch.set_num_threads(threads)
    run_dir = out / f"{variant.name}-{seed}"
    figures = {name: _arm_of(name, _steps(variant, seed, out, amp), run_dir) for name in arms}
    return {"key": f"{variant.name}-{seed}", "arms": figures}


@app.command("run")
def run(
    out: Path = typer.Option(..., "--out"),
    arms: str = typer.Option(..., "--arms", help="comma-separated names of ARMS, in order"),
    set_name: str = typer.Option("tuning", "--datasets"),
    only: list[str] = typer.Option([], "--only"),
    max_seeds: int | None = typer.Option(None, "--max-seeds"),
    jobs: int = typer.Option(1, "--jobs", min=1),
    amp: str = typer.Option(MEASURED_AMP, "--amp"),
) -> None:
    names = tuple(name for name in arms.split(",") if name)
    unknown = [name for name in names if name not in ARMS]
    if unknown:
        raise typer.BadParameter(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    saved = {f"{r['variant']}-{r['seed']}" for r in json.loads((out / "rules.json").read_text())}
    runs = [(v, s) for v, s in _selected(set_name, only, max_seeds) if f"{v.name}-{s}" in saved]
    job: Callable[..., Any] = partial(arms_of, arms=names)
    for row in _in_parallel(job, runs, out, amp, jobs):  # saved as each run ends
        put_row(out / "arms.json", row["key"], row["arms"], merge=True)
        print(row["key"], json.dumps(row["arms"]), flush=True)


# the figures an arm changes, per kind, and their names in the table
WALKED = (("cam_miou_oracle", "walked maps, oracle t"), ("cam_miou", "walked maps, blend t"),
          ("pseudo_miou", "walked labels"))  # fmt: skip
CAM_FIGURES = (("cam_miou_oracle", "CAMs, oracle t"), ("cam_miou", "CAMs, blend t"),
               ("pseudo_miou", "labels, blend t"))  # fmt: skip
FIGURES = {
    "classifier": CAM_FIGURES,
    "cams": CAM_FIGURES,
    "labels": (("pseudo_miou", "labels, blend t"),),
    "walk": WALKED,
    "aff": WALKED,
    "seg": (("seg_miou", "segmenter (val)"),),
    "predict": (("seg_miou", "segmenter (val)"),),
}  # fmt: skip


def compared(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm with a base and per figure: every run's arm - base, and its variant means."""
    rows = []
    for name, arm in ARMS.items():
        if arm.base is None:
            continue
        for key, label in FIGURES[arm.kind]:
            pairs = {run: (r[name][key], r[arm.base][key]) for run, r in results.items()
                     if name in r and arm.base in r and r[name].get(key) is not None}  # fmt: skip
            if not pairs:
                continue
            diffs = {run: a - b for run, (a, b) in pairs.items()}
            variants: dict[str, list[float]] = {}
            for run, d in diffs.items():
                variants.setdefault(run.rsplit("-", 1)[0], []).append(d)
            means = {v: sum(ds) / len(ds) for v, ds in variants.items()}
            rows.append({
                "arm": name, "row": arm.row, "figure": label, "runs": len(diffs),
                "mean_diff": sum(diffs.values()) / len(diffs),
                "arm_wins": sum(d > 0 for d in diffs.values()),
                "variant_mean_diff": means, "per_run": {r: list(p) for r, p in pairs.items()},
                "worst": min(diffs.values()), "best": max(diffs.values()),
                "paired_t": paired_t(list(diffs.values())),
            })  # fmt: skip
    return rows


def paired_t(diffs: list[float]) -> float | None:
    """The paired t statistic of arm - base over the runs (mean / its standard error); None
    below two runs or with no spread. |t| < 2 is read as a tie (docs/parity.md)."""
    if len(diffs) < 2:
        return None
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return None if var == 0 else mean / (var / len(diffs)) ** 0.5


def _results(folders: list[Path]) -> dict[str, dict[str, Any]]:
    """Every run's arms of the folders' arms.json, keyed FOLDER/RUN."""
    results: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for run_key, figures in json.loads((folder / "arms.json").read_text()).items():
            results[f"{folder.name}/{run_key}"] = figures
    return results


@app.command("table")
def table(
    folders: list[Path] = typer.Argument(..., help="--out folders of `run`"),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """Each arm against its base on every run of the folders: mean, range, wins, and the
    variants where the variant mean falls on either side."""
    rows = compared(_results(folders))
    lines = ["| arm (row) | figure | runs | arm - base, mean | paired t | range | arm ahead on | "
             "variants ahead (mean of seeds) |", "|---" * 8 + "|"]  # fmt: skip
    for r in rows:
        ahead = sum(d > 0 for d in r["variant_mean_diff"].values())
        t = "-" if r["paired_t"] is None else f"{r['paired_t']:+.2f}"
        lines.append(f"| {r['arm']} ({r['row']}) | {r['figure']} | {r['runs']} | "
                     f"{r['mean_diff']:+.2f} | {t} | {r['worst']:+.2f} to {r['best']:+.2f} | "
                     f"{r['arm_wins']} of {r['runs']} | {ahead} of "
                     f"{len(r['variant_mean_diff'])} |")  # fmt: skip
    print("\n".join(lines))
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=1) + "\n")


# Puzzle-CAM's ablation in the paper's order: the plain CAM, + L_p-cls (the runs' own
# classifier, the demo recipe's), + L_re (the full loss)
ABLATION = (("cam-plain", "plain CAM"), ("cams", "L_cls + L_p-cls"), ("cam-full", "full loss"))
# the same three classifiers under the reference profile, where the runs have them
ABLATION_REFERENCE = ("cam-plain-reference", "cams-reference", "cam-full-reference")
ABLATION_FIGURES = (*CAM_FIGURES,
                    *((f"{key}|reference", f"{label}, reference profile") for key, label in
                      CAM_FIGURES))  # fmt: skip


def ablation_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run that has all three classifiers: each figure of each, and whether the paper's
    ordering (plain < L_cls + L_p-cls < full) holds on it."""
    rows = []
    for run, arms in results.items():
        if not all(name in arms for name, _ in ABLATION):
            continue
        figures = {key: [arms[name][key] for name, _ in ABLATION] for key, _ in CAM_FIGURES}
        if all(name in arms for name in ABLATION_REFERENCE):
            for key, _ in CAM_FIGURES:
                figures[f"{key}|reference"] = [arms[name][key] for name in ABLATION_REFERENCE]
        order = {key: a < b < c for key, (a, b, c) in figures.items()}
        rows.append({"run": run, "figures": figures, "paper_order": order})
    return rows


def _ablation_summary(rows: list[dict[str, Any]], key: str) -> tuple[str, str]:
    """The means of one figure over the runs that have it, and how often each step holds."""
    rows = [r for r in rows if key in r["figures"]]
    if not rows:
        return "-", "-"
    means = " / ".join(f"{sum(r['figures'][key][i] for r in rows) / len(rows):.2f}"
                       for i in range(len(ABLATION)))  # fmt: skip
    pcl = sum(r["figures"][key][1] > r["figures"][key][0] for r in rows)
    full = sum(r["figures"][key][2] > r["figures"][key][1] for r in rows)
    over_plain = sum(r["figures"][key][2] > r["figures"][key][0] for r in rows)
    order = sum(r["paper_order"][key] for r in rows)
    return means, (f"of {len(rows)}: L_p-cls ahead {pcl}, full ahead of it {full}, full ahead "
                   f"of plain {over_plain}, the order {order}")  # fmt: skip


def by_variant(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ablation's rows averaged over each variant's seeds (a figure over the seeds that
    have it), the paper's order read on the means."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["run"].rsplit("-", 1)[0], []).append(row)
    out = []
    for variant, runs in groups.items():
        figures = {}
        for key, _ in ABLATION_FIGURES:
            have = [r["figures"][key] for r in runs if key in r["figures"]]
            if have:
                figures[key] = [sum(f[i] for f in have) / len(have) for i in range(len(ABLATION))]
        order = {key: a < b < c for key, (a, b, c) in figures.items()}
        out.append({"run": f"{variant} ({len(runs)})", "figures": figures, "paper_order": order})
    return out


def _steps_t(rows: list[dict[str, Any]], key: str) -> str:
    """Each step's mean difference over the runs that have the figure, with its paired t."""
    have = [r["figures"][key] for r in rows if key in r["figures"]]
    if not have:
        return "-"
    cells = []
    for step, (a, b) in (("L_p-cls - plain", (1, 0)), ("full - L_p-cls", (2, 1))):
        diffs = [f[a] - f[b] for f in have]
        t = paired_t(diffs)
        cells.append(
            f"{step} {sum(diffs) / len(diffs):+.2f} (t {'-' if t is None else f'{t:+.1f}'})"
        )
    return ", ".join(cells)


@app.command("ablation")
def ablation(
    folders: list[Path] = typer.Argument(..., help="--out folders of `run`"),
    json_out: Path | None = typer.Option(None, "--json"),
    variants: bool = typer.Option(False, "--by-variant", help="one row per variant: seed means"),
) -> None:
    """The classifier arms side by side, run by run: plain CAM / L_cls + L_p-cls / full loss
    per figure (under the reference profile too, where made), the means, on how many
    rows each step of the paper's order holds, and each step's mean over the runs."""
    runs = ablation_rows(_results(folders))
    rows = by_variant(runs) if variants else runs
    names = " / ".join(label for _, label in ABLATION)
    lines = [f"| {'variant (runs)' if variants else 'run'} | "
             + " | ".join(f"{label}: {names}" for _, label in ABLATION_FIGURES) + " |",
             "|---" * (len(ABLATION_FIGURES) + 1) + "|"]  # fmt: skip
    for row in rows:
        cells = [" / ".join(f"{v:.2f}" for v in row["figures"][key])
                 if key in row["figures"] else "-" for key, _ in ABLATION_FIGURES]  # fmt: skip
        lines.append(f"| {row['run']} | " + " | ".join(cells) + " |")
    if rows:
        summaries = [_ablation_summary(rows, key) for key, _ in ABLATION_FIGURES]
        lines.append("| **mean** | " + " | ".join(m for m, _ in summaries) + " |")
        lines.append(f"| **{'variants' if variants else 'runs'}** | "
                     + " | ".join(s for _, s in summaries) + " |")  # fmt: skip
        steps = " | ".join(_steps_t(runs, key) for key, _ in ABLATION_FIGURES)
        lines.append(f"| **steps, over the runs** | {steps} |")
    print("\n".join(lines))
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    app()

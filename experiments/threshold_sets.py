"""CAMs of a quality set's variants, for choosing the label-free threshold rule (issue #27).

For each dataset variant x seed: the variant's data, then train-cam and make-cam exactly as
the quality suite's pipeline runs them (the demo recipe scaled to the variant, `recipe_for`;
make-cam at the scales 0.5-2 of every saved run, `SET_CAM_SCALES`), and nothing after. Each
run resumes. Then every rule of `benchmarks/label_free_threshold.py` picks a threshold from
the CAMs alone and one sweep against the masks scores each choice and
the oracle; the table goes to OUT/rules.md and OUT/rules.json.

    python experiments/threshold_sets.py --datasets tuning --out runs/thresholds/tuning
        [--only NAME|NAME-SEED,...] [--max-seeds N] [--jobs 2] [--amp gpu|bf16]
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import typer

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.entry import MEASURED_AMP  # noqa: E402
from experiments.quality_sets import SETS, Variant  # noqa: E402
from experiments.records import put_row, read_record, update_record  # noqa: E402

app = typer.Typer(add_completion=False)

SET_CAM_SCALES = (0.5, 1.0, 1.5, 2.0)  # make-cam's scales in the threshold-set runs


def _selected(set_name: str, only: list[str], max_seeds: int | None) -> list[tuple[Variant, int]]:
    """The (variant, seed) runs of a set; `only`: --only values, repeatable or comma-separated,
    each a variant's name (its seeds) or NAME-SEED (that one run)."""
    names = {name for item in only for name in item.split(",") if name}
    runs = [(v, seed) for v in SETS[set_name] for seed in v.seeds[:max_seeds]]
    return [(v, s) for v, s in runs if not names or names & {v.name, f"{v.name}-{s}"}]


def _call(args: tuple[Any, ...]) -> Any:
    return args[0](*args[1:])


def _in_parallel(job: Any, runs: list[tuple[Variant, int]], out: Path, amp: str,
                 jobs: int) -> Iterator[Any]:  # fmt: skip
    """job(variant, seed, out, amp, threads) of each run in order, `jobs` processes at a time
    with cores / jobs torch threads each (one job: in this process)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    args = [(job, variant, seed, out, amp, threads) for variant, seed in runs]
    if jobs == 1:
        yield from map(_call, args)
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(_call, args)


def _steps(variant: Variant, seed: int, out: Path, amp: str) -> Any:
    """The pipeline's steps of one variant x seed under OUT/NAME-SEED (its data made once)."""
    from experiments.suite import recipe_for
    from wsss.stages.pipeline import PipelineConfig, Steps, _prepare_data, resolve_run

    run_dir = out / f"{variant.name}-{seed}"
    recipe = recipe_for(variant, seed)
    # The scales every saved run's cams/ was made at (docs/label_free_threshold.md); the demo
    # recipe's 1-2 since is the `cam-scales-1-2` arm of run_arms.py, measured against them.
    recipe = dataclasses.replace(recipe, make_cam={**recipe.make_cam, "scales": SET_CAM_SCALES})
    config = PipelineConfig(out=run_dir, recipe=recipe, device="cpu", amp=amp,
                            loader_workers=0)  # fmt: skip
    resolved = resolve_run(config)
    data = _prepare_data(config, resolved, run_dir)
    return Steps(config, resolved, data, run_dir, lambda name, action: action())


def cams_of(variant: Variant, seed: int, out: Path, amp: str, threads: int) -> dict[str, str]:
    """train-cam + make-cam of one variant x seed under OUT/NAME-SEED (resumed if there)."""
    import torch

    torch.set_num_threads(threads)
    run_dir = out / f"{variant.name}-{seed}"
    steps = _steps(variant, seed, out, amp)
    data = steps.data
    steps.make_cam(steps.train_cam())  # each skips what is done
    return {"variant": variant.name, "seed": str(seed), "cams": str(run_dir / "cams"),
            "data": str(data), "split": steps.splits.cam}  # fmt: skip


@app.command("run")
def main(
    out: Path = typer.Option(..., "--out"),
    set_name: str = typer.Option("tuning", "--datasets"),
    only: list[str] = typer.Option([], "--only"),
    max_seeds: int | None = typer.Option(None, "--max-seeds"),
    jobs: int = typer.Option(1, "--jobs", min=1),
    amp: str = typer.Option(MEASURED_AMP, "--amp"),
) -> None:
    from benchmarks.label_free_threshold import RULES, measure

    out.mkdir(parents=True, exist_ok=True)
    made = list(_in_parallel(cams_of, _selected(set_name, only, max_seeds), out, amp, jobs))
    rows: list[dict[str, Any]] = []
    import numpy as np

    for run in made:
        kept: dict[str, Any] = {}
        scores = measure(Path(run["cams"]), Path(run["data"]), run["split"], kept)
        rows.append({**run, "scores": {k: list(v) for k, v in scores.items()},
                     "curve": kept["curve"]})  # fmt: skip
        maps = {f"t{i}": top.astype(np.float16) for i, top in enumerate(kept["tops"])}
        np.savez_compressed(Path(run["cams"]).parent / "tops.npz", **maps)
        print(run["variant"], run["seed"], scores, flush=True)
    # Runs of other invocations (other --only / --max-seeds) stay; this one's replace theirs.
    done = {(row["variant"], row["seed"]) for row in rows}
    rows = update_record(out / "rules.json", lambda earlier: [
        r for r in earlier if (r["variant"], r["seed"]) not in done] + rows, list)  # fmt: skip
    names = ["oracle", *RULES]
    lines = ["| variant, seed | " + " | ".join(f"{n}: t / mIoU" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]  # fmt: skip
    for row in rows:
        # rows of an earlier run lack the rules added since (`table` rescores them all)
        cells = ["-" if n not in row["scores"] else "{:.2f} / {:.2f}".format(*row["scores"][n])
                 for n in names]  # fmt: skip
        lines.append(f"| {row['variant']}, {row['seed']} | " + " | ".join(cells) + " |")
    (out / "rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _saved_tops(run: dict[str, Any]) -> list[Any]:
    """The strongest-CAM maps `run` saved beside its CAMs (tops.npz), as float32."""
    import numpy as np

    with np.load(Path(run["cams"]).parent / "tops.npz") as saved:
        return [saved[k].astype(np.float32) for k in saved.files]


def saved_scores(folders: list[Path]) -> list[dict[str, Any]]:
    """Each saved run's oracle and every rule of RULES (today's, not the run's), scored on
    its saved 0.01-step curve (linear between steps): new rules need no new sweep."""
    import numpy as np

    from benchmarks.label_free_threshold import RULES

    rows = []
    for folder in folders:
        for run in json.loads((folder / "rules.json").read_text()):
            grid, miou = np.array(run["curve"]).T
            best = int(np.argmax(miou))
            tops = _saved_tops(run)
            scores = {"oracle": (float(grid[best]), float(miou[best]))}
            for name, rule in RULES.items():
                t = float(rule(tops))
                scores[name] = (t, float(np.interp(t, grid, miou)))
            rows.append({"set": folder.name, "variant": run["variant"], "seed": run["seed"],
                         "scores": scores})  # fmt: skip
    return rows


PSEUDO_RULES = ("oracle", "blend", "lifted-median", "mean-cam")
# their names among benchmarks/label_free_threshold.py's candidates
CAM_NAMES = {"oracle": "oracle", "blend": "blend (chosen)", "lifted-median": "lifted-median",
             "mean-cam": "mean-cam (before)"}  # fmt: skip


@app.command("pseudo")
def pseudo(
    out: Path = typer.Option(..., "--out"),
    set_name: str = typer.Option("tuning", "--datasets"),
    only: list[str] = typer.Option([], "--only"),
    max_seeds: int | None = typer.Option(None, "--max-seeds"),
    amp: str = typer.Option(MEASURED_AMP, "--amp"),
) -> None:
    """Pseudo labels (threshold + CRF, as the pipeline makes them) of every saved run at the
    oracle's t and at each rule's, scored on the masks; OUT/pseudo.json and a table."""
    saved = {(r["variant"], r["seed"]): r for r in json.loads((out / "rules.json").read_text())}
    results: dict[str, Any] = {}
    for variant, seed in _selected(set_name, only, max_seeds):
        run = saved.get((variant.name, str(seed)))
        if run is None:
            continue  # CAMs not made yet: `run` first
        steps = _steps(variant, seed, out, amp)
        key = f"{variant.name}-{seed}"
        for name in PSEUDO_RULES:
            options = dict(steps.options["make_pseudo"])
            if name == "oracle":
                options.update(threshold=run["scores"]["oracle"][0])
            else:
                options.update(threshold="auto", threshold_rule=name)
            steps.options = {**steps.options, "make_pseudo": options}
            made = steps.make_pseudo(Path(run["cams"]), out / key / f"pseudo_{name}")
            results.setdefault(key, {})[name] = [made.threshold, made.scores.miou]
            print(key, name, results[key][name], flush=True)
        put_row(out / "pseudo.json", key, results[key], merge=True)
    results = read_record(out / "pseudo.json")  # with the rows of other invocations
    lines = ["| variant, seed | " + " | ".join(f"{n}: t / mIoU" for n in PSEUDO_RULES) + " |",
             "|---" * (len(PSEUDO_RULES) + 1) + "|"]  # fmt: skip
    for key, row in results.items():
        lines.append(f"| {key} | " + " | ".join(f"{t:.2f} / {m:.2f}" for t, m in
                                                (row[n] for n in PSEUDO_RULES)) + " |")  # fmt: skip
    print("\n".join(lines))


def walk_of(variant: Variant, seed: int, out: Path, amp: str, threads: int) -> dict[str, Any]:
    """The pipeline's random-walk path on one saved run, under the default rule (blend):
    confident labels -> train-aff -> make-rw -> the walked maps' label-free and oracle
    thresholds -> walked pseudo labels -> the walk check against the CRF labels (the run's
    `pseudo_blend`); no segmenter. Each step resumes."""
    import torch

    torch.set_num_threads(threads)
    steps = _steps(variant, seed, out, amp)
    run_dir = out / f"{variant.name}-{seed}"
    crf = run_dir / "pseudo"  # the walk check reads the CRF labels here, as in a pipeline run
    if not crf.exists():
        crf.symlink_to("pseudo_blend", target_is_directory=True)
    cams = run_dir / "cams"
    labelled = steps.make_pseudo(cams, run_dir / "pseudo_confident", confident=True)
    aff_model = steps.train_aff(run_dir / "cam_model" / "final.pt", run_dir / "pseudo_confident")
    steps.make_rw(aff_model, cams, run_dir / "rw")
    walked = steps.cams_to_labels(run_dir / "rw", tag="rw")
    check = steps.walk_check()
    crf_miou = json.loads((out / "pseudo.json").read_text())[f"{variant.name}-{seed}"]["blend"][1]
    return {"key": f"{variant.name}-{seed}", "confident": list(labelled.confident),
            "rw_t": walked["cam_threshold"], "rw_miou": walked["cam_miou"],
            "rw_t_oracle": walked["cam_threshold_oracle"],
            "rw_miou_oracle": walked["cam_miou_oracle"], "walked_pseudo": walked["pseudo_miou"],
            "crf_pseudo": crf_miou, "agreement": check.agreement, "keep": check.keep_walk,
            "right": check.keep_walk == (walked["pseudo_miou"] >= crf_miou)}  # fmt: skip


@app.command("walk")
def walk(
    out: Path = typer.Option(..., "--out"),
    set_name: str = typer.Option("tuning", "--datasets"),
    only: list[str] = typer.Option([], "--only"),
    max_seeds: int | None = typer.Option(None, "--max-seeds"),
    jobs: int = typer.Option(1, "--jobs", min=1),
    amp: str = typer.Option(MEASURED_AMP, "--amp"),
) -> None:
    """The random-walk path of every saved run that has its pseudo labels (`run`, then
    `pseudo`): OUT/walk.json and a table (issue #27: the walk's thresholds by the rule, and
    whether the walk check decides right)."""
    labelled = json.loads((out / "pseudo.json").read_text())
    runs = [(v, seed) for v, seed in _selected(set_name, only, max_seeds)
            if f"{v.name}-{seed}" in labelled]  # fmt: skip
    for row in _in_parallel(walk_of, runs, out, amp, jobs):  # each run's row saved as it comes
        put_row(out / "walk.json", row.pop("key"), row)
    print(walk_table(read_record(out / "walk.json")))


def walk_decision(row: dict[str, Any], min_agreement: float) -> tuple[bool, bool]:
    """(kept, right) of one walk.json row at the check's bar `min_agreement`: decided again
    from the recorded agreement, since rows made before the bar moved (70 -> 85) carry the
    old bar's decision; right = kept exactly where the walked labels beat the CRF's."""
    kept = row["agreement"] >= min_agreement
    return kept, kept == (row["walked_pseudo"] >= row["crf_pseudo"])


def walk_table(results: dict[str, dict[str, Any]]) -> str:
    """walk.json as a markdown table, each walk decided at today's bar."""
    from wsss.walk_check import MIN_AGREEMENT

    lines = ["| variant, seed | rw t / mIoU (blend) | rw oracle t / mIoU | walked labels | "
             f"CRF labels | agreement | kept (>= {MIN_AGREEMENT:g}) | right |",
             "|---" * 8 + "|"]  # fmt: skip
    for key, r in results.items():
        keep, correct = walk_decision(r, MIN_AGREEMENT)
        kept, right = "yes" if keep else "no", "yes" if correct else "**no**"
        lines.append(f"| {key} | {r['rw_t']:.2f} / {r['rw_miou']:.2f} | "
                     f"{r['rw_t_oracle']:.2f} / {r['rw_miou_oracle']:.2f} | "
                     f"{r['walked_pseudo']:.2f} | {r['crf_pseudo']:.2f} | {r['agreement']:.1f} | "
                     f"{kept} | {right} |")  # fmt: skip
    return "\n".join(lines)


@app.command("table")
def table(folders: list[Path] = typer.Argument(..., help="--out folders of `run`")) -> None:
    """Every rule's t / mIoU and its gap to the oracle per saved run, and the summary."""
    import numpy as np

    from benchmarks.label_free_threshold import RULES

    rows = saved_scores(folders)
    names = ["oracle", *RULES]
    lines = ["| set | variant, seed | " + " | ".join(names) + " |",
             "|---" * (len(names) + 2) + "|"]  # fmt: skip
    for row in rows:
        cells = [f"{t:.2f} / {m:.1f}" for t, m in (row["scores"][n] for n in names)]
        lines.append(f"| {row['set']} | {row['variant']}, {row['seed']} | " + " | ".join(cells)
                     + " |")  # fmt: skip
    for label, pick in (("mean gap", np.mean), ("largest gap", np.max)):
        for set_name in sorted({row["set"] for row in rows}):
            gaps = {n: [r["scores"]["oracle"][1] - r["scores"][n][1] for r in rows
                        if r["set"] == set_name] for n in RULES}  # fmt: skip
            lines.append(f"| {set_name} | {label} | - | "
                         + " | ".join(f"{pick(gaps[n]):.2f}" for n in RULES) + " |")  # fmt: skip
    print("\n".join(lines))


@app.command("histogram")
def histogram(folders: list[Path] = typer.Argument(..., help="--out folders of `run`")) -> None:
    """Per saved run: the oracle's and blend's t beside the pooled strongest-CAM histogram's
    mean and quantiles, which every pooled rule reads (two runs with the same histogram get
    the same t from any such rule, whatever their oracles)."""
    import numpy as np

    lines = ["| set | variant, seed | oracle t | blend t | mean | q10 | q25 | q50 | q75 | q90 |",
             "|---" * 10 + "|"]  # fmt: skip
    for folder in folders:
        for run in json.loads((folder / "rules.json").read_text()):
            grid, miou = np.array(run["curve"]).T
            pooled = np.concatenate([top.ravel() for top in _saved_tops(run)])
            quantiles = np.quantile(pooled, [0.1, 0.25, 0.5, 0.75, 0.9])
            blend = run["scores"].get("blend (chosen)", [float("nan")])[0]
            lines.append(f"| {folder.name} | {run['variant']}, {run['seed']} | "
                         f"{grid[int(np.argmax(miou))]:.2f} | {blend:.2f} | {pooled.mean():.2f} | "
                         + " | ".join(f"{q:.2f}" for q in quantiles) + " |")  # fmt: skip
    print("\n".join(lines))


@app.command("blobs")
def blobs(folders: list[Path] = typer.Argument(..., help="--out folders of `run`")) -> None:
    """Per saved run: the oracle's and blend's t beside the size of the strongest CAM's blobs
    at half its peak (connected regions >= 0.5: median and area-weighted diameter in pixels,
    blobs per image), the spatial statistic a rule for small, blurred objects would read."""
    import numpy as np
    from scipy import ndimage

    lines = ["| set | variant, seed | oracle t | blend t | image px | median diameter | "
             "area-weighted diameter | blobs per image |", "|---" * 8 + "|"]  # fmt: skip
    for folder in folders:
        for run in json.loads((folder / "rules.json").read_text()):
            grid, miou = np.array(run["curve"]).T
            tops = _saved_tops(run)
            areas = np.concatenate([np.bincount(ndimage.label(top >= 0.5)[0].ravel())[1:]
                                    for top in tops])  # fmt: skip
            diameters = 2 * np.sqrt(areas / np.pi)
            blend = run["scores"].get("blend (chosen)", [float("nan")])[0]
            lines.append(f"| {folder.name} | {run['variant']}, {run['seed']} | "
                         f"{grid[int(np.argmax(miou))]:.2f} | {blend:.2f} | {tops[0].shape[0]} | "
                         f"{np.median(diameters):.1f} | "
                         f"{np.sum(diameters * areas) / np.sum(areas):.1f} | "
                         f"{len(areas) / len(tops):.2f} |")  # fmt: skip
    print("\n".join(lines))


@app.command("summary")
def summary(
    folders: list[Path] = typer.Argument(..., help="--out folders of `run` + `pseudo`"),
    json_out: Path | None = typer.Option(None, "--json", help="the rows, for docs/measurements"),
) -> None:
    """The package's rules (and the oracle) per run on CAMs and pseudo labels, t / mIoU, then
    each rule's mean and largest gap to the oracle per folder: docs/label_free_threshold.md's
    two-seed tables."""
    import numpy as np

    rows = saved_scores(folders)
    names = PSEUDO_RULES
    lines = ["| set | variant, seed | " + " | ".join(f"CAMs: {n}" for n in names) + " | "
             + " | ".join(f"labels: {n}" for n in names) + " |",
             "|---" * (2 * len(names) + 2) + "|"]  # fmt: skip
    gaps: dict[tuple[str, str, str], list[float]] = {}
    records: list[dict[str, Any]] = []
    for folder in folders:
        labels = json.loads((folder / "pseudo.json").read_text())
        for row in (r for r in rows if r["set"] == folder.name):
            key = f"{row['variant']}-{row['seed']}"
            cams = [row["scores"][CAM_NAMES[n]] for n in names]
            made = labels.get(key, {})
            marks = [made.get(n) for n in names]
            records.append({"set": folder.name, "variant": row["variant"], "seed": row["seed"],
                            "cams": dict(zip(names, cams, strict=True)),
                            "labels": {n: made[n] for n in names if n in made}})  # fmt: skip
            lines.append(f"| {folder.name} | {row['variant']}, {row['seed']} | "
                         + " | ".join(f"{t:.2f} / {m:.2f}" for t, m in cams) + " | "
                         + " | ".join("-" if x is None else f"{x[0]:.2f} / {x[1]:.2f}"
                                      for x in marks) + " |")  # fmt: skip
            for n in names[1:]:
                gaps.setdefault((folder.name, "CAMs", n), []).append(
                    row["scores"]["oracle"][1] - row["scores"][CAM_NAMES[n]][1]
                )
                if n in made and "oracle" in made:
                    gaps.setdefault((folder.name, "labels", n), []).append(
                        made["oracle"][1] - made[n][1])  # fmt: skip
    lines += ["", "| set | maps | rule | runs | mean gap to the oracle | largest gap |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for (set_name, maps, rule), values in gaps.items():
        lines.append(f"| {set_name} | {maps} | {rule} | {len(values)} | "
                     f"{np.mean(values):.2f} | {np.max(values):.2f} |")  # fmt: skip
    print("\n".join(lines))
    if json_out is not None:
        json_out.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    app()

"""`make quality` (experiments/quality.py): the demo recipe on a set of dataset variants x
seeds.

For each variant and seed of a set (experiments/quality_sets.py) the suite draws the
variant's data once (OUT/data/<variant>/seed<S>), runs the whole pipeline with the
random-walk path on it for each chosen train-cam ablation
(OUT/runs/<variant>/seed<S>/<ablation>), and trains the same segmenter recipe on the
ground-truth masks for the supervised bound (OUT/runs/<variant>/seed<S>/supervised). It
then writes one table and OUT/quality.json: per variant and stage the mIoU, per stage the
mean, the worst variant and the seed spread, and the ratios every stage should reach
(docs/quality.md).

Runs are independent processes (`jobs`), each with its share of the CPU threads. A run
whose summary exists is not run again; an interrupted one resumes like any pipeline run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from experiments.quality_sets import SETS, Variant
from wsss.amp import AMP_DEFAULT
from wsss.data.demo import ensure_demo
from wsss.errors import WsssError, check_count
from wsss.io import ensure_dir, read_json, write_json
from wsss.recipes import DEMO, RUN_STAGES, Recipe, pick_variants, resolve
from wsss.stages import pipeline
from wsss.ui import fmt_pct, info, print_table

# Stage keys of quality.json, in pipeline order, with the summary.json value each reads.
STAGES: dict[str, str] = {
    "cam": "CAMs",
    "cam_oracle": "CAMs (oracle threshold)",
    "crf_pseudo": "CRF pseudo",
    "crf_seg": "CRF seg",
    "rw_maps": "RW maps",
    "rw_pseudo": "RW pseudo",
    "rw_seg": "RW seg",
    "walk_kept": "walk kept (share of seeds)",
    "final_maps": "final maps",
    "final_pseudo": "final pseudo",
    "final_seg": "final seg",
    "supervised_seg": "supervised bound",
}
# Each stage should add: name -> (stage, reference stage, factor); passes when
# stage >= factor x reference.
# The random-walk targets read the run's FINAL maps / labels / segmenter: the walk's where the
# walk check kept it, the CAMs' / CRF's where it dropped it (the issue's "or the pipeline
# detects that without ground truth and keeps the CRF labels").
CHECKS: dict[str, tuple[str, str, float]] = {
    "crf_pseudo_ge_cam": ("crf_pseudo", "cam", 1.0),
    "rw_maps_ge_cam": ("final_maps", "cam", 1.0),
    "rw_pseudo_ge_crf_pseudo": ("final_pseudo", "crf_pseudo", 1.0),
    "crf_seg_ge_0.9_crf_pseudo": ("crf_seg", "crf_pseudo", 0.9),
    "rw_seg_ge_0.9_rw_pseudo": ("final_seg", "final_pseudo", 0.9),
}
# Whether the walk check decided right: it kept the walk exactly where the walked labels
# beat the CRF labels (scored on the masks, which the check never sees).
CHECK_RIGHT = "walk_check_right"
CHECK_TITLES = ("CRF pseudo >= CAMs", "final maps >= CAMs", "final pseudo >= CRF pseudo",
                "CRF seg >= 0.9 pseudo", "final seg >= 0.9 final pseudo",
                "walk check right")  # fmt: skip
SUPERVISED = "supervised"
RESULT = "supervised.json"
SPEC = "quality_run.json"
# Pixel sizes of the demo recipe, which are for its 128 px images: a variant of another
# image size gets them scaled by size / 128 (a user's crop follows their images too).
_PIXEL_OPTIONS = {"train_cam": ("crop",), "train_seg": ("crop", "scale_range"),
                  "train_aff": ("crop", "scale_range")}  # fmt: skip


@dataclass
class SuiteConfig:
    out: Path
    set_name: str = "tuning"
    ablations: tuple[str, ...] = ()  # train-cam variants (baseline, pcl, re, full); () = recipe's
    jobs: int | None = None  # parallel runs (default: from the device and the cores)
    device: str = "auto"
    threads: int | None = None  # torch threads per run (default: cores / jobs)
    workers: int | None = None  # loader / CRF workers per run (default: by device and jobs)
    only: tuple[str, ...] = ()  # variant names to run (default: the whole set)
    max_seeds: int | None = None  # the first N seeds of each variant (default: all)
    # "stage.option=value" on top of the demo recipe, for every run of the suite (a tuning
    # arm); recorded in each run's spec, so an arm needs its own --out
    overrides: tuple[str, ...] = ()
    amp: str = AMP_DEFAULT  # every stage's --amp (issue #26: bf16 on the CPU is an arm of its own)
    profile: str | None = None  # wsss.recipes.PROFILES (issue #25: the reference's settings)
    bound: bool = True  # each seed's supervised bound after its first run (a third of the set)


@dataclass
class SuiteResult:
    quality: dict[str, Any]
    json_path: Path


@dataclass(frozen=True)
class Task:
    """One unit of work: a pipeline run (`ablation` set), followed by the supervised bound
    when `bound` names its folder; or the bound alone (`ablation` None)."""

    variant: Variant
    seed: int
    ablation: str | None
    data: Path
    out: Path
    overrides: tuple[str, ...] = ()
    bound: Path | None = None
    amp: str = AMP_DEFAULT
    profile: str | None = None

    def bound_task(self) -> Task | None:
        """The supervised bound run after this pipeline run (its CAM classifier starts the
        bound's segmenter when the recipe's segmenter starts from it)."""
        if self.bound is None:
            return None
        return dataclasses.replace(self, ablation=None, out=self.bound, bound=None)

    @property
    def label(self) -> str:
        return f"{self.variant.name}/seed{self.seed}/{self.ablation or SUPERVISED}"


@dataclass(frozen=True)
class JobSetup:
    jobs: int
    threads: int  # torch threads of each job
    workers: int | None  # loader / CRF workers of each job (None: the stages' defaults)
    device: str
    log: bool  # send each run's output to its own log file (parallel jobs)


def run(config: SuiteConfig) -> SuiteResult:
    if config.set_name not in SETS:
        raise WsssError(f"--datasets must be one of {'|'.join(SETS)}, got '{config.set_name}'")
    ablations = ablation_names(config.ablations)
    variants = select_variants(SETS[config.set_name], config.only, config.max_seeds)
    for variant in variants:  # a bad --set fails before any work
        resolve(recipe_for(variant, variant.seeds[0]), None, config.overrides, random_walk=True,
                profile=config.profile)  # fmt: skip
    out = ensure_dir(config.out)
    tasks: list[Task] = []
    for variant in variants:
        for seed in variant.seeds:
            data = out / "data" / variant.name / f"seed{seed}"
            ensure_demo(data, variant.demo_args(seed))
            runs = out / "runs" / variant.name / f"seed{seed}"
            tasks += [Task(variant, seed, a, data, runs / a, config.overrides,
                           runs / SUPERVISED if i == 0 and config.bound else None, config.amp,
                           config.profile)
                      for i, a in enumerate(ablations)]  # fmt: skip
    todo = [task for task in tasks if not is_done(task)]
    info(f"quality suite '{config.set_name}': {len(tasks) - len(todo)} of {len(tasks)} "
         f"runs done, {len(todo)} to run")  # fmt: skip
    failed, logged = _execute_all(todo, config)
    quality = collect(config.set_name, variants, ablations, out)
    quality["amp"] = config.amp  # the runs' precision (their specs hold it where not "gpu")
    quality["profile"] = config.profile  # None: the demo recipe's own (wsss)
    json_path = write_json(out / "quality.json", quality)
    print_table(quality_table(quality))
    if failed:
        where = "see their suite.log" if logged else "their errors are above"
        raise WsssError(f"{len(failed)} quality run(s) failed: {', '.join(failed)} ({where})")
    return SuiteResult(quality=quality, json_path=json_path)


def select_variants(
    variants: tuple[Variant, ...], only: tuple[str, ...], max_seeds: int | None
) -> tuple[Variant, ...]:
    """The set's variants named in `only` (all when empty), each with its first `max_seeds`
    seeds; an unknown name is a one-line error naming the set's variants."""
    names = [v.name for v in variants]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise WsssError(f"--only: no variant '{unknown[0]}' in this set ({', '.join(names)})")
    check_count("--max-seeds", max_seeds)
    chosen = [v for v in variants if not only or v.name in only]
    if max_seeds is not None:
        chosen = [dataclasses.replace(v, seeds=v.seeds[:max_seeds]) for v in chosen]
    return tuple(chosen)


def ablation_names(short: tuple[str, ...]) -> tuple[str, ...]:
    """The ablations' short names, checked; none means the demo recipe's own variant."""
    if not short:
        return (DEMO.variant or "full",)
    pick_variants(list(short))  # a one-line error for an unknown name
    return tuple(dict.fromkeys(short))


def recipe_for(variant: Variant, seed: int) -> Recipe:
    """The demo recipe on this variant: pixel sizes scaled to its images, its data, the
    variant's own stage options (the smoke set's tiny recipe). The suite's overrides are the
    pipeline's `--set`, on top of everything."""
    scale = variant.size / DEMO.demo["size"]
    stages: dict[str, dict[str, Any]] = {}
    for stage in (key for key in RUN_STAGES if key != "demo"):
        options = dict(getattr(DEMO, stage))
        for key in _PIXEL_OPTIONS.get(stage, ()):
            if key in options:
                options[key] = _scaled(options[key], scale)
        stages[stage] = {**options, **variant.recipe.get(stage, {})}
    return dataclasses.replace(DEMO, demo=variant.demo_args(seed), **stages)


def _scaled(value: Any, scale: float) -> Any:
    if isinstance(value, tuple):
        return tuple(round(v * scale) for v in value)
    return round(value * scale)


def pick_jobs(
    jobs: int | None, device: str, runs: int, threads: int | None = None,
    workers: int | None = None,
) -> JobSetup:  # fmt: skip
    """Parallel runs and torch threads per run, jobs x threads <= cores.

    On the CPU a run's convolutions scale to about 4 threads on these small images, so the
    cores go to cores / 4 runs; with a GPU the runs are small for it, and several keep it
    busy, each with loader workers of its own.
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    check_count("--jobs", jobs)
    check_count("--threads", threads)
    check_count("--workers", workers, 0)
    if jobs is None:
        jobs = max(1, min(4, cores // 4)) if gpu else max(1, cores // 4)
    jobs = max(1, min(jobs, runs))
    threads = threads or max(1, cores // jobs)
    if workers is None and jobs > 1:
        # one job keeps the stages' defaults; parallel CPU jobs load in-process (one CRF worker)
        workers = min(4, threads) if gpu else 0
    return JobSetup(jobs=jobs, threads=threads, workers=workers, device=device, log=jobs > 1)


def _execute_all(tasks: list[Task], config: SuiteConfig) -> tuple[list[str], bool]:
    """Run the tasks, in parallel processes when there are several jobs; the failed labels,
    and whether the runs logged to their suite.log (several jobs) or to the console."""
    if not tasks:
        return [], False
    setup = pick_jobs(config.jobs, config.device, len(tasks), config.threads, config.workers)
    failed: list[str] = []
    if not setup.log:
        for task in tasks:
            _report(task, execute(task, setup), failed)
        return failed, False
    info(f"{setup.jobs} parallel jobs x {setup.threads} threads; each run logs to its suite.log")
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(max_workers=setup.jobs, mp_context=context) as pool:
        futures = [(task, pool.submit(execute, task, setup)) for task in tasks]
        for task, future in futures:
            _report(task, future.result(), failed)
    return failed, True


def _report(task: Task, error: str | None, failed: list[str]) -> None:
    if error is None:
        info(f"done {task.label}")
    else:
        failed.append(task.label)
        info(f"failed {task.label}: {error}")


def execute(task: Task, setup: JobSetup) -> str | None:
    """Run one task (in this process or a pool's); returns an error line, or None."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(setup.threads)
    try:
        with _logging_to(task.out / "suite.log" if setup.log else None):
            if not _result_done(task):
                _pipeline_run(task, setup)
            bound = task.bound_task()
            if bound is not None and not _result_done(bound):
                _supervised_bound(bound, task.out, setup)
    except Exception as exc:  # one failed run must not stop the others
        if setup.log:
            with open(ensure_dir(task.out) / "suite.log", "a") as handle:
                handle.write(traceback.format_exc())
        return f"{type(exc).__name__}: {exc}"
    finally:
        torch.set_num_threads(before)
    return None


@contextlib.contextmanager
def _logging_to(log: Path | None) -> Iterator[None]:
    if log is None:
        yield
        return
    before = os.environ.get("WSSS_QUIET")
    os.environ["WSSS_QUIET"] = "1"  # no progress bars in a file
    ensure_dir(log.parent)
    try:
        with (
            open(log, "a") as handle,
            contextlib.redirect_stdout(handle),
            contextlib.redirect_stderr(handle),
        ):
            yield
    finally:  # a job run in this process leaves the console as it found it
        if before is None:
            os.environ.pop("WSSS_QUIET", None)
        else:
            os.environ["WSSS_QUIET"] = before


def is_done(task: Task) -> bool:
    bound = task.bound_task()
    return _result_done(task) and (bound is None or _result_done(bound))


def _result_done(task: Task) -> bool:
    result = task.out / (RESULT if task.ablation is None else "summary.json")
    return result.is_file() and _same_spec(task)


def _spec(task: Task) -> dict[str, Any]:
    """What a run's results depend on, to refuse reusing a run made otherwise."""
    recipe = recipe_for(task.variant, task.seed)
    spec = {"variant": task.variant.name, "seed": task.seed, "ablation": task.ablation,
            "recipe": dataclasses.asdict(recipe),
            **({"overrides": list(task.overrides)} if task.overrides else {}),
            **({"amp": task.amp} if task.amp != "gpu" else {}),
            **({"profile": task.profile} if task.profile is not None else {})}  # fmt: skip
    return json.loads(json.dumps(spec, default=str))


def _same_spec(task: Task) -> bool:
    path = task.out / SPEC
    if not path.is_file():
        return False
    if read_json(path) != _spec(task):
        raise WsssError(
            f"{task.out}: made with other settings than this suite's {task.label}; "
            "use another --out or remove it"
        )
    return True


def _claim(task: Task) -> None:
    """Record the run's settings (or stop if the folder holds a run made otherwise)."""
    _same_spec(task)
    write_json(ensure_dir(task.out) / SPEC, _spec(task))


def _pipeline_run(task: Task, setup: JobSetup) -> None:
    _claim(task)
    link = task.out / "data"  # the pipeline's data folder: the variant's, drawn once
    if not link.exists():
        link.symlink_to(os.path.relpath(task.data, task.out), target_is_directory=True)
    pipeline.run(
        pipeline.PipelineConfig(
            out=task.out, recipe=recipe_for(task.variant, task.seed), overrides=task.overrides,
            device=setup.device, amp=task.amp, profile=task.profile, variant=task.ablation,
            random_walk=True, **_workers(setup),
        )
    )  # fmt: skip


def _workers(setup: JobSetup) -> dict[str, int | None]:
    """Each job's loader and CRF processes (None: the stages' defaults)."""
    if setup.workers is None:
        return {}
    return {"loader_workers": setup.workers, "crf_workers": max(1, setup.workers)}


def _supervised_bound(task: Task, run: Path, setup: JobSetup) -> None:
    """The recipe's segmenter trained on the ground-truth masks (train-seg's default labels),
    started from the CAM classifier of the pipeline run in `run` where the recipe says so."""
    _claim(task)
    start, cpu_start = time.perf_counter(), pipeline.cpu_seconds()
    config = pipeline.PipelineConfig(out=task.out, recipe=recipe_for(task.variant, task.seed),
                                     overrides=task.overrides, device=setup.device,
                                     amp=task.amp, profile=task.profile,
                                     **_workers(setup))  # fmt: skip
    resolved = pipeline.resolve_run(config)
    steps = pipeline.Steps(config, resolved, task.data, task.out, lambda _name, action: action())
    steps.cam_model = run / "cam_model" / "final.pt"
    model = steps.train_seg(None, "")
    split = steps.splits.predict
    pred = task.out / f"pred_{split}"
    steps.predict(model, pred)
    scores = steps.evaluate(pred)
    seconds = round(time.perf_counter() - start, 1)
    cpu = round(pipeline.cpu_seconds() - cpu_start, 1)
    write_json(task.out / RESULT, {"seg_miou": scores["miou"], "seg_split": split,
                                   "seconds": seconds, "cpu_seconds": cpu})  # fmt: skip


# -- the table and JSON ----------------------------------------------------------------------


def run_stages(summary: dict[str, Any], bound: dict[str, Any] | None) -> dict[str, float | None]:
    """A run's stage mIoUs from its summary.json (extra keys are ignored)."""
    walk = summary.get("random_walk") or {}
    stages: dict[str, float | None] = {
        "cam": summary.get("cam_miou"),  # at the label-free threshold
        "cam_oracle": summary.get("cam_miou_oracle"),  # at eval-cam's best, picked on masks
        "crf_pseudo": summary.get("pseudo_miou"),
        "crf_seg": summary.get("seg_miou"),
        "rw_maps": walk.get("rw_miou"),
        "rw_pseudo": walk.get("pseudo_miou"),
        "rw_seg": walk.get("seg_miou"),
        "supervised_seg": None if bound is None else bound.get("seg_miou"),
    }
    if walk:
        kept = bool(walk.get("kept", True))  # before the walk check, every walk was kept
        stages["walk_kept"] = 1.0 if kept else 0.0
        stages["final_maps"] = stages["rw_maps"] if kept else stages["cam"]
        stages["final_pseudo"] = stages["rw_pseudo"] if kept else stages["crf_pseudo"]
        stages["final_seg"] = stages["rw_seg"] if kept else stages["crf_seg"]
    return {stage: stages.get(stage) for stage in STAGES}


def checks(stages: dict[str, float | None]) -> dict[str, bool | None]:
    """Each target: True / False, or None where a stage is missing. On seed means the walk
    check is right only where it decided right on every seed (kept share 0 or 1)."""
    result: dict[str, bool | None] = {}
    for name, (stage, reference, factor) in CHECKS.items():
        value, ref = stages.get(stage), stages.get(reference)
        result[name] = None if value is None or ref is None else value >= factor * ref
    kept, walk, crf = (stages.get(k) for k in ("walk_kept", "rw_pseudo", "crf_pseudo"))
    if kept is None or walk is None or crf is None or kept not in (0.0, 1.0):
        result[CHECK_RIGHT] = None
    else:
        result[CHECK_RIGHT] = (kept == 1.0) == (walk >= crf)
    return result


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def collect(
    set_name: str, variants: tuple[Variant, ...], ablations: tuple[str, ...], out: Path
) -> dict[str, Any]:
    """quality.json from the finished runs' summaries (unfinished runs show as missing)."""
    per_ablation: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for ablation in ablations:
        rows: dict[str, Any] = {}
        for variant in variants:
            seeds: dict[str, dict[str, float | None]] = {}
            for seed in variant.seeds:
                base = out / "runs" / variant.name / f"seed{seed}"
                summary_path, bound_path = (
                    base / ablation / "summary.json",
                    base / SUPERVISED / RESULT,
                )
                if not summary_path.is_file():
                    continue
                bound = read_json(bound_path) if bound_path.is_file() else None
                summary = read_json(summary_path)
                stages = run_stages(summary, bound)
                seeds[str(seed)] = stages
                # wall and CPU seconds of the run and of its bound, to check the set's time
                # budget (CPU seconds hold on a shared machine; older runs have none)
                seconds = {
                    "pipeline": summary.get("total_seconds"),
                    "supervised": None if bound is None else bound.get("seconds"),
                    "pipeline_cpu": summary.get("total_cpu_seconds"),
                    "supervised_cpu": None if bound is None else bound.get("cpu_seconds"),
                }
                runs.append({"variant": variant.name, "seed": seed, "ablation": ablation,
                             "stages": stages, "checks": checks(stages),
                             "seconds": seconds})  # fmt: skip
            if seeds:
                rows[variant.name] = _variant_row(variant, seeds)
        per_ablation[ablation] = {"variants": rows, "stages": _stage_rows(rows),
                                  "checks": _check_shares(rows)}  # fmt: skip
    return {
        "set": set_name,
        "variants": {v.name: {"knobs": v.knobs, "n_train": v.n_train, "n_val": v.n_val,
                              "size": v.size, "seeds": list(v.seeds)} for v in variants},
        "ablations": per_ablation,
        "runs": runs,
        "checks": {**{name: {"stage": s, "reference": r, "factor": f}
                      for name, (s, r, f) in CHECKS.items()},
                   CHECK_RIGHT: {"stage": "walk_kept",
                                 "reference": "rw_pseudo >= crf_pseudo"}},
    }  # fmt: skip


def _variant_row(variant: Variant, seeds: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    stages = {s: _mean([run[s] for run in seeds.values()]) for s in STAGES}
    spread = {}
    for stage in STAGES:
        values = [run[stage] for run in seeds.values() if run[stage] is not None]
        spread[stage] = max(values) - min(values) if values else None
    return {"seeds": seeds, "mean": stages, "seed_spread": spread, "checks": checks(stages)}


def _stage_rows(rows: dict[str, Any]) -> dict[str, Any]:
    """Per stage: mean over variants, the worst variant, the largest seed spread."""
    result = {}
    for stage in STAGES:
        values = {name: row["mean"][stage] for name, row in rows.items()
                  if row["mean"][stage] is not None}  # fmt: skip
        spreads = [row["seed_spread"][stage] for row in rows.values()
                   if row["seed_spread"][stage] is not None]  # fmt: skip
        worst = min(values, key=values.__getitem__) if values else None
        result[stage] = {
            "mean": _mean(list(values.values())),
            "worst": None if worst is None else {"variant": worst, "miou": values[worst]},
            "seed_spread": max(spreads) if spreads else None,
        }
    return result


def _check_shares(rows: dict[str, Any]) -> dict[str, Any]:
    """Per target: which variants pass, the share passing, and whether the means pass."""
    means = {s: _mean([row["mean"][s] for row in rows.values()]) for s in STAGES}
    on_average = checks(means)
    result = {}
    for name in (*CHECKS, CHECK_RIGHT):
        passing = [v for v, row in rows.items() if row["checks"][name]]
        result[name] = {
            "passing": passing,
            "share": len(passing) / len(rows) if rows else None,
            "on_average": on_average[name],
        }
    return result


def _mark(value: bool | None) -> str:
    return "-" if value is None else ("[green]pass[/]" if value else "[red]fail[/]")


def quality_table(quality: dict[str, Any]) -> Table:
    """One table, a column per variant (seed mean) and the mean, worst variant and largest
    seed range over them; per ablation a row per stage, then a row per target with the
    share of variants passing it."""
    names = list(quality["variants"])
    table = Table(title=f"wsss quality suite, {quality['set']} set: mIoU %")
    table.add_column("stage / target")
    for name in names:
        table.add_column(name, justify="right")
    for column in ("mean", "worst", "seed range"):
        table.add_column(column, justify="right")
    for ablation, block in quality["ablations"].items():
        rows, stages, shares = block["variants"], block["stages"], block["checks"]
        for stage, title in STAGES.items():
            cells = [fmt_pct(rows[n]["mean"][stage]) if n in rows else "-" for n in names]
            worst = stages[stage]["worst"]
            table.add_row(
                f"{title} ({ablation})", *cells, fmt_pct(stages[stage]["mean"]),
                "-" if worst is None else f"{fmt_pct(worst['miou'])} {worst['variant']}",
                fmt_pct(stages[stage]["seed_spread"]),
            )  # fmt: skip
        for check, title in zip((*CHECKS, CHECK_RIGHT), CHECK_TITLES, strict=True):
            cells = [_mark(rows[n]["checks"][check]) if n in rows else "-" for n in names]
            share = shares[check]["share"]
            passing = "-" if share is None else f"{100 * share:.0f}% pass"
            table.add_row(title, *cells, _mark(shares[check]["on_average"]), passing, "")
        table.add_section()
    return table

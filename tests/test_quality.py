"""The quality suite: its sets keep the tuning/report protocol, its JSON aggregates what the
runs measured, and the smoke set runs end to end and resumes (quality itself is not tested)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from experiments import suite
from experiments.quality_sets import REPORT, SETS, TUNING, Variant
from experiments.suite import CHECKS, STAGES, SuiteConfig
from wsss.amp import AMP_DEFAULT
from wsss.data.demo import DemoKnobs
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import write_json
from wsss.recipes import DEMO, resolve
from wsss.stages import pipeline

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "quality.py"


def test_tuning_and_report_sets_are_disjoint_and_spread_over_the_knobs() -> None:
    assert {v.name for v in TUNING}.isdisjoint(v.name for v in REPORT)
    tuning_seeds = {s for v in TUNING for s in v.seeds}
    report_seeds = {s for v in REPORT for s in v.seeds}
    assert tuning_seeds.isdisjoint(report_seeds) and 0 not in tuning_seeds | report_seeds
    knob_sets = [json.dumps(v.knobs, sort_keys=True) for v in TUNING + REPORT]
    assert len(set(knob_sets)) == len(knob_sets)
    for variant in (v for variants in SETS.values() for v in variants):
        # the tuning set may hold the demo's family on other seeds; the report set never
        assert variant.knobs or variant in TUNING, f"{variant.name} is the demo's family"
        DemoKnobs(**variant.knobs).check()
        assert len(variant.seeds) == len(set(variant.seeds)) >= 1
    # Between them, the report variants move body evidence, clutter, objects and classes.
    moved = {k for v in REPORT for k in v.knobs}
    assert {"body_evidence", "clutter", "max_objects", "classes"} <= moved


def test_the_recipe_follows_the_variants_image_size() -> None:
    variant = Variant("v", {"classes": 3}, 10, 5, 96, (7,), {"train_cam": {"epochs": 2}})
    recipe = suite.recipe_for(variant, 7)
    assert recipe.demo == {"n_train": 10, "n_val": 5, "size": 96, "seed": 7, "classes": 3}
    assert recipe.train_cam["crop"] == 96 and recipe.train_cam["epochs"] == 2
    assert recipe.train_seg["scale_range"] == (72, 120) and recipe.train_aff["crop"] == 96
    assert recipe.train_seg["epochs"] == DEMO.train_seg["epochs"]


@pytest.mark.parametrize("jobs", [None, 1, 3])
def test_jobs_times_threads_fit_the_cores(jobs: int | None, monkeypatch) -> None:
    monkeypatch.setattr(suite.os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    setup = suite.pick_jobs(jobs, "cpu", runs=10)
    assert setup.jobs * setup.threads <= 8
    assert setup.jobs == (jobs or 2)
    assert suite.pick_jobs(None, "cpu", runs=1).jobs == 1


def fake_run(out: Path, variant: str, seed: int, cam: float, pseudo: float, seg: float,
             rw: float, bound: float, kept: bool = True) -> None:  # fmt: skip
    base = out / "runs" / variant / f"seed{seed}"
    summary = {"cam_miou": cam, "cam_miou_oracle": 99.0, "pseudo_miou": pseudo,
               "seg_miou": seg, "random_walk": {"rw_miou": rw, "pseudo_miou": pseudo + 1,
                                                "seg_miou": seg - 1 if kept else None,
                                                "kept": kept}}  # fmt: skip
    write_json(base / "pcl" / "summary.json", summary)
    write_json(base / "supervised" / "supervised.json", {"seg_miou": bound})


def test_quality_json_aggregates_per_variant_stage_and_target(tmp_path: Path) -> None:
    variants = (Variant("a", {"clutter": 2.0}, 1, 1, 48, (1, 2)),
                Variant("b", {"clutter": 0.5}, 1, 1, 48, (3,)))  # fmt: skip
    fake_run(tmp_path, "a", 1, cam=50, pseudo=60, seg=50, rw=55, bound=80)
    fake_run(tmp_path, "a", 2, cam=40, pseudo=50, seg=49, rw=35, bound=70)
    fake_run(tmp_path, "b", 3, cam=30, pseudo=20, seg=19, rw=25, bound=60, kept=False)
    quality = suite.collect("tuning", variants, ("pcl",), tmp_path)
    block = quality["ablations"]["pcl"]
    a, b = block["variants"]["a"], block["variants"]["b"]
    assert a["mean"]["cam"] == 45 and a["seed_spread"]["cam"] == 10
    assert a["mean"]["cam_oracle"] == 99.0  # the oracle figure beside the label-free one
    assert a["mean"]["supervised_seg"] == 75 and a["mean"]["rw_pseudo"] == 56
    assert a["checks"]["crf_pseudo_ge_cam"] and a["checks"]["rw_maps_ge_cam"]
    assert not b["checks"]["crf_pseudo_ge_cam"] and b["checks"]["rw_maps_ge_cam"]
    # seg 49.5 vs 0.9 x 55 = 49.5 passes; b's 19 vs 18 passes
    assert a["checks"]["crf_seg_ge_0.9_crf_pseudo"] and b["checks"]["crf_seg_ge_0.9_crf_pseudo"]
    stages = block["stages"]
    assert stages["cam"]["mean"] == pytest.approx(37.5)
    assert stages["cam"]["worst"] == {"variant": "b", "miou": 30}
    assert stages["cam"]["seed_spread"] == 10
    shares = block["checks"]
    assert shares["crf_pseudo_ge_cam"]["share"] == 0.5
    assert shares["crf_pseudo_ge_cam"]["passing"] == ["a"]
    assert shares["crf_pseudo_ge_cam"]["on_average"] is True  # 37.5 <= 37.5
    assert shares["rw_maps_ge_cam"]["share"] == 1.0
    # b's walk was dropped: its final maps / labels / segmenter are the CAMs' / CRF's,
    # and the check decided wrong (the walked labels, 21, beat the CRF's, 20)
    assert b["mean"]["walk_kept"] == 0 and b["mean"]["rw_seg"] is None
    assert (b["mean"]["final_maps"], b["mean"]["final_pseudo"]) == (30, 20)
    assert b["mean"]["final_seg"] == 19 and b["checks"]["rw_seg_ge_0.9_rw_pseudo"]
    assert a["mean"]["final_pseudo"] == a["mean"]["rw_pseudo"] == 56
    assert a["checks"]["walk_check_right"] and not b["checks"]["walk_check_right"]
    assert shares["walk_check_right"]["passing"] == ["a"]
    assert len(quality["runs"]) == 3
    assert set(quality["checks"]) == {*CHECKS, suite.CHECK_RIGHT}
    assert set(quality["runs"][0]["seconds"]) == {"pipeline", "supervised", "pipeline_cpu",
                                                  "supervised_cpu"}  # fmt: skip
    assert set(quality["variants"]) == {"a", "b"}
    assert isinstance(suite.quality_table(quality).row_count, int)


def assert_complete(quality: dict) -> None:
    assert quality["set"] == "smoke"
    block = quality["ablations"]["pcl"]
    row = block["variants"]["smoke"]
    kept = row["mean"]["walk_kept"]
    assert kept in (0.0, 1.0)
    for stage in STAGES:
        if stage == "rw_seg" and not kept:  # a dropped walk trains no segmenter
            assert row["mean"][stage] is None
            continue
        assert 0.0 <= row["mean"][stage] <= 100.0, stage
        assert set(block["stages"][stage]) == {"mean", "worst", "seed_spread"}
    assert row["mean"]["final_pseudo"] == row["mean"]["rw_pseudo" if kept else "crf_pseudo"]
    assert set(row["checks"]) == set(block["checks"]) == {*CHECKS, suite.CHECK_RIGHT}
    for share in block["checks"].values():
        assert set(share) == {"passing", "share", "on_average"}
        assert share["share"] in (0.0, 1.0)


@pytest.mark.slow
def test_smoke_set_runs_end_to_end_and_resumes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WSSS_QUIET", "1")
    config = SuiteConfig(out=tmp_path / "q", set_name="smoke", device="cpu", threads=1,
                         workers=0)  # fmt: skip
    first = suite.run(config)
    assert_complete(first.quality)
    assert first.quality["amp"] == AMP_DEFAULT  # recorded: a bf16 arm says so
    assert json.loads(first.json_path.read_text()) == first.quality
    assert (tmp_path / "q" / "data" / "smoke" / "seed901" / "classes.txt").is_file()
    (run,) = first.quality["runs"]
    assert run["seconds"]["pipeline"] > 0 and run["seconds"]["supervised"] > 0
    assert run["seconds"]["pipeline_cpu"] > 0 and run["seconds"]["supervised_cpu"] > 0

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(pipeline, "run", no_training)
    monkeypatch.setattr(pipeline.Steps, "train_seg", no_training)
    again = suite.run(config)
    assert again.quality == first.quality

    # benchmarks/segmenter_levers.py: its `base` arm retrains the run's segmenter recipe
    # outside the pipeline and must give the run's segmenter, so an arm differs by its change.
    from benchmarks import segmenter_levers

    folder = tmp_path / "q" / "runs" / "smoke" / "seed901" / "pcl"
    voc = VocDataset.open(folder / "data")
    spec = json.loads((folder / suite.SPEC).read_text())
    recipe = spec["recipe"]
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)  # the run's bits: the suite's thread count
    try:
        base = segmenter_levers.run_arm(folder, voc, recipe, "base", spec["amp"])
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((folder / "summary.json").read_text())
    assert base["seg_val_miou"] == summary["seg_miou"]
    assert base["labels_train_miou"] == pytest.approx(summary["pseudo_miou"], abs=1e-9)

    # a run folder made with other settings is not silently reused
    spec = tmp_path / "q" / "runs" / "smoke" / "seed901" / "pcl" / suite.SPEC
    write_json(spec, {"variant": "smoke", "seed": 901, "ablation": "pcl", "recipe": {}})
    with pytest.raises(WsssError, match="made with other settings"):
        suite.run(config)


def test_bad_set_and_ablation_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(WsssError, match="--datasets must be one of"):
        suite.run(SuiteConfig(out=tmp_path, set_name="nope"))
    with pytest.raises(WsssError, match="--variant must be one of"):
        suite.run(SuiteConfig(out=tmp_path, set_name="smoke", ablations=("plain-ish",)))


def test_the_quality_script_runs_from_anywhere_and_errors_in_one_line(tmp_path: Path) -> None:
    """`make quality` runs experiments/quality.py as a script, outside the installed package."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    run = [sys.executable, str(SCRIPT)]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    for option in ("--variant-set", "--variants", "--jobs", "--only", "--max-seeds", "--set",
                   "--amp", "--profile"):  # fmt: skip
        assert option in shown.stdout
    bad = [*run, "--variant-set", "nope", "--out", str(tmp_path / "q")]
    refused = subprocess.run(bad, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip() == "error: --datasets must be one of tuning|report|smoke, got 'nope'"
    )


def test_a_tuning_arm_picks_variants_seeds_and_recipe_changes(tmp_path: Path) -> None:
    chosen = suite.select_variants(TUNING, ("demo-family", "ten-classes"), 1)
    assert [v.name for v in chosen] == ["ten-classes", "demo-family"]  # the set's order
    assert all(len(v.seeds) == 1 and v.seeds[0] == w.seeds[0]
               for v, w in zip(chosen, (TUNING[2], TUNING[-1]), strict=True))  # fmt: skip
    assert suite.select_variants(TUNING, (), None) == TUNING
    with pytest.raises(WsssError, match="--only: no variant 'nope'"):
        suite.select_variants(TUNING, ("nope",), None)
    recipe = suite.recipe_for(TUNING[0], 101)
    arm_run = resolve(recipe, None, ("train_seg.epochs=30", "recipe.seg_init=false"))
    assert arm_run.stages["train_seg"]["epochs"] == 30 and arm_run.switches["seg_init"] is False
    assert arm_run.stages["train_seg"]["crop"] == 96  # the size scaling still applies
    # an arm's runs record its changes, so another arm's folder is refused, not reused
    arm = ("train_seg.epochs=30",)
    task = suite.Task(TUNING[0], 101, "pcl", tmp_path / "d", tmp_path / "r", arm)
    suite._claim(task)
    with pytest.raises(WsssError, match="other settings"):
        suite._claim(replace(task, overrides=()))
    # so is a bf16 arm's (issue #26); a run of --amp gpu (fp32 on the CPU) keeps the spec it
    # had before --amp existed, so the fp32 runs made then are still reused
    assert suite._spec(task)["amp"] == AMP_DEFAULT == "auto"
    assert "amp" not in suite._spec(replace(task, amp="gpu"))
    assert suite._spec(replace(task, amp="bf16"))["amp"] == "bf16"
    with pytest.raises(WsssError, match="other settings"):
        suite._claim(replace(task, amp="bf16"))
    # and a profile's (issue #25: the reference's settings on the tuning set)
    assert suite._spec(replace(task, profile="reference"))["profile"] == "reference"
    with pytest.raises(WsssError, match="other settings"):
        suite._claim(replace(task, profile="reference"))
    with pytest.raises(WsssError, match="profile"):  # a bad name fails before any work
        suite.run(SuiteConfig(out=tmp_path / "q", set_name="smoke", profile="paper"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_run_is_named_with_where_its_error_went(tmp_path: Path, monkeypatch,
                                                         jobs: int) -> None:  # fmt: skip
    """One job logs to the console, several to each run's suite.log: the final line says which."""

    def boom(task, setup) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(suite, "_pipeline_run", boom)
    monkeypatch.setattr(suite, "pick_jobs", lambda *a: suite.JobSetup(
        jobs=jobs, threads=1, workers=0, device="cpu", log=jobs > 1))  # fmt: skip
    monkeypatch.setattr(suite, "ProcessPoolExecutor", _InProcessPool)
    config = SuiteConfig(out=tmp_path / "q", set_name="smoke", device="cpu", threads=1,
                         workers=0, jobs=jobs)  # fmt: skip
    monkeypatch.delenv("WSSS_QUIET", raising=False)
    with pytest.raises(WsssError, match="1 quality run\\(s\\) failed: smoke") as failure:
        suite.run(config)
    assert "WSSS_QUIET" not in os.environ  # the log's quiet console was not left behind
    logs = list((tmp_path / "q").rglob("suite.log"))
    if jobs == 1:
        assert "errors are above" in str(failure.value) and not logs
    else:
        assert "see their suite.log" in str(failure.value)
        assert len(logs) == 1 and "ValueError: boom" in logs[0].read_text()


class _InProcessPool:
    """ProcessPoolExecutor's shape, run here: the monkeypatched run must reach the jobs."""

    def __init__(self, max_workers: int, mp_context=None) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future: Future = Future()
        future.set_result(fn(*args))
        return future


def test_no_bound_leaves_the_bound_out_and_a_later_run_adds_it(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []

    def pipeline_run(task, setup) -> None:
        suite._claim(task)
        calls.append("pipeline")
        write_json(task.out / "summary.json", {"cam_miou": 40.0, "pseudo_miou": 50.0,
                                               "seg_miou": 45.0})  # fmt: skip

    def bound_run(task, run, setup) -> None:
        suite._claim(task)
        calls.append("bound")
        write_json(task.out / suite.RESULT, {"seg_miou": 70.0})

    monkeypatch.setattr(suite, "_pipeline_run", pipeline_run)
    monkeypatch.setattr(suite, "_supervised_bound", bound_run)
    monkeypatch.setattr(suite, "ProcessPoolExecutor", _InProcessPool)
    config = SuiteConfig(out=tmp_path / "q", set_name="smoke", device="cpu", threads=1,
                         workers=0, jobs=1, bound=False)  # fmt: skip
    first = suite.run(config)
    assert calls == ["pipeline"] and first.quality["runs"][0]["stages"]["supervised_seg"] is None
    second = suite.run(replace(config, bound=True))
    assert calls == ["pipeline", "bound"]  # the finished pipeline run is reused
    assert second.quality["runs"][0]["stages"]["supervised_seg"] == 70.0

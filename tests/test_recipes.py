"""Recipes and `--set stage.option=value`: one precedence (stage default < recipe < variant <
--seed < --set), typed by the stage's option, a key that cannot take effect refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cli.main import main
from wsss import registry
from wsss.errors import WsssError
from wsss.option import options
from wsss.recipes import (
    COCO,
    DEMO,
    RECIPES,
    RUN_STAGES,
    VARIANTS,
    VOC,
    get_recipe,
    option_values,
    resolve,
)
from wsss.stages.pipeline import PipelineConfig, resolve_run


def resolved(*sets: str, recipe=DEMO, **kwargs):
    return resolve(recipe, overrides=sets, **kwargs).stages


def test_recipes_by_name() -> None:
    assert set(RECIPES) == {"demo", "voc", "coco"}
    assert get_recipe("coco") is COCO and get_recipe("voc") is VOC
    with pytest.raises(WsssError, match=r"--recipe must be one of demo\|voc\|coco, got 'vco'"):
        get_recipe("vco")


def test_values_take_the_type_of_the_stage_option() -> None:
    stages = resolved(
        "train_cam.epochs=20",
        "train_seg.lr=0.01",
        "make_cam.scales=0.5,1,1.5",
        "train_seg.scale_range=64,96",
        "predict.flip=false",
        "train_cam.pretrained=imagenet",
        "make_pseudo.threshold=0.3",
        "demo.train=50",
        "train_cam.epochs=25",  # the last one wins
    )
    assert stages["train_cam"]["epochs"] == 25 and isinstance(stages["train_cam"]["epochs"], int)
    assert stages["train_seg"]["lr"] == 0.01
    assert stages["make_cam"]["scales"] == (0.5, 1.0, 1.5) and stages["make_cam"]["flip"] is True
    assert stages["train_seg"]["scale_range"] == (64, 96)
    assert stages["predict"]["flip"] is False
    assert stages["train_cam"]["pretrained"] == "imagenet" and stages["train_cam"]["lr"] == 1e-3
    assert stages["make_pseudo"]["threshold"] == 0.3
    assert stages["demo"]["train"] == 50 and stages["demo"]["size"] == 128
    assert resolved("make_pseudo.threshold=auto")["make_pseudo"]["threshold"] == "auto"
    assert resolved("make_pseudo.threshold=oracle")["make_pseudo"]["threshold"] == "oracle"
    assert DEMO.train_cam["epochs"] == 30  # the recipe itself is untouched


def test_old_keys_still_work_under_the_flag_names() -> None:
    """Keys of the first release (nested parameter objects, old field names) are aliases."""
    stages = resolved("make_pseudo.crf.iterations=3", "make_pseudo.crf.unary=labels",
                      "make_rw.rw.beta=8", "make_rw.rw.exp_times=none", "demo.n_train=40",
                      "train_cam.use_pcl=false", random_walk=True)  # fmt: skip
    assert stages["make_pseudo"]["crf_iters"] == 3 and stages["make_pseudo"]["unary"] == "labels"
    assert stages["make_rw"]["beta"] == 8.0 and stages["make_rw"]["exp_times"] is None
    assert stages["demo"]["train"] == 40 and stages["train_cam"]["pcl"] is False
    walk = resolved("make_rw.exp_times=auto", "make_rw.exp_times=6", random_walk=True)
    assert walk["make_rw"]["exp_times"] == 6


def test_set_wins_over_recipe_and_variant_for_every_stage() -> None:
    """The case that was ignored: the recipe's variant (pcl) sets alpha 0 and use_pcl true
    after `--set`; now `--set` comes last, for every option of every stage."""
    stages = resolved("train_cam.alpha=2.0", "train_cam.use_pcl=false")
    assert stages["train_cam"]["alpha"] == 2.0 and stages["train_cam"]["pcl"] is False
    for variant in ("baseline", "pcl", "re", "full"):
        train_cam = resolve(DEMO, variant, ["train_cam.pieces=9", "train_cam.alpha=1.5"]).stages
        assert train_cam["train_cam"]["pieces"] == 9 and train_cam["train_cam"]["alpha"] == 1.5
    # every stage: a --set of an option the recipe sets wins over the recipe
    for key in RUN_STAGES:
        recipe_values = getattr(DEMO, key) or {}
        for name, value in recipe_values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            new = value + 1
            got = resolved(f"{key}.{name}={new}", random_walk=True)[key][name]
            assert got == new, (key, name)


def test_precedence_stage_default_recipe_variant_seed_set() -> None:
    stages = resolve(DEMO, "baseline", ["train_seg.seed=5"], seed=3, random_walk=True).stages
    assert stages["train_cam"]["pieces"] == 1  # variant over recipe (4)
    assert stages["train_cam"]["seed"] == 3 and stages["train_aff"]["seed"] == 3  # --seed
    assert stages["train_seg"]["seed"] == 5  # --set over --seed
    assert stages["train_seg"]["output_stride"] == 16 and stages["predict"]["crf"] is False
    # train-aff's backbone is the CAM classifier's, under its own recipe and --set
    assert stages["train_aff"]["backbone"] == "resnet18"
    assert resolved("train_aff.backbone=resnet34", random_walk=True)["train_aff"]["backbone"] == (
        "resnet34"
    )
    # a stage the recipe says nothing of runs on its own defaults
    assert resolved()["make_pseudo"] == option_values(registry.stage("make-pseudo").config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train_cams.epochs=3", r"unknown stage 'train_cams' \(stages: demo, train_cam, make_cam"),
        ("train_cam.epoch=3", r"unknown option 'epoch' of train_cam \(options: .*\bepochs\b"),
        ("train_cam.data=/x", "the pipeline sets it from the run 'data' of train_cam"),
        ("train_cam.epochs=ten", r"--set train_cam.epochs=ten: 'ten' is not a valid int"),
        ("train_seg.scale_range=1,2,3", "is not a valid 2 comma-separated ints"),
        ("predict.flip=maybe", "is not a valid bool"),
        ("make_pseudo.threshold=high", "is not a valid float or auto|oracle"),
        ("make_pseudo.crf_iters=0", "--crf-iters must be at least 1"),
        ("train_cam.epochs", "expected STAGE.OPTION=VALUE"),
        ("epochs=3", "expected STAGE.OPTION=VALUE"),
        ("recipe.bogus=1", "unknown switch 'bogus'"),
        # keys the run would ignore
        ("train_aff.epochs=3", "used only on the random-walk path; add --random-walk"),
        ("make_rw.beta=3", "used only on the random-walk path"),
        ("make_pseudo.fg_threshold=0.5", "used only on the random-walk path"),
        ("train_aff.eval_every=3", "unknown option 'eval_every' of train_aff"),
    ],
)
def test_bad_overrides_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(WsssError, match=message) as caught:
        resolved(text)
    assert "\n" not in str(caught.value)


def test_demo_options_only_where_the_run_generates_data(tmp_path: Path) -> None:
    with pytest.raises(WsssError, match="does not generate the demo data"):
        resolved("demo.train=5", recipe=VOC)
    config = PipelineConfig(out=tmp_path, recipe=DEMO, data=tmp_path, overrides=("demo.seed=1",))
    with pytest.raises(WsssError, match="does not generate the demo data"):
        resolve_run(config)


def test_seed_and_variant_of_the_pipeline(tmp_path: Path) -> None:
    stages = resolve_run(PipelineConfig(out=tmp_path, recipe=COCO, seed=7)).stages
    assert stages["train_cam"]["seed"] == stages["train_seg"]["seed"] == 7
    with pytest.raises(WsssError, match="--variant must be one of"):
        resolve_run(PipelineConfig(out=tmp_path, recipe=COCO, variant="puzzle"))


def test_a_variant_replaces_the_recipe_variant_and_never_stacks() -> None:
    recipe = replace(DEMO, variant="pcl")
    pcl = resolve(recipe).stages["train_cam"]
    assert pcl["alpha"] == 0.0 and pcl["pcl"] and pcl["pieces"] == 4
    full = resolve(recipe, "full").stages["train_cam"]
    assert full["alpha"] == DEMO.train_cam["alpha"] == 4.0 and full["pcl"]
    base = resolve(recipe, "baseline").stages["train_cam"]
    assert base["pieces"] == 1 and base["alpha"] == 0.0 and not base["pcl"]
    coco = resolve(COCO).stages["train_cam"]  # no variant: the settings as they are
    assert {k: coco[k] for k in COCO.train_cam} == COCO.train_cam
    assert all(set(v) <= {o.name for o in options(registry.stage("train-cam").config)}
               for v in VARIANTS.values())  # fmt: skip


def test_the_command_reports_a_bad_override_before_any_work(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["pipeline", "run", "--recipe", "demo", "--out", str(out),
            "--set", "train_cam.epochs=3", "--set", "make_cam.scale=1"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown option 'scale' of make_cam" in err
    assert "scales" in err and not out.exists()


def test_dry_run_prints_the_resolved_options_and_runs_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["pipeline", "demo", "--out", str(out), "--dry-run", "--seed", "4",
            "--set", "train_cam.alpha=2.5", "--set", "train_cam.use_pcl=false"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    rows = {tuple(cell.strip() for cell in line.split("│")[1:4])
            for line in printed.splitlines() if line.count("│") >= 4}  # fmt: skip
    assert ("train_cam", "alpha", "2.5") in rows and ("train_cam", "pcl", "False") in rows
    assert ("train_seg", "seed", "4") in rows and not out.exists()


def test_a_profile_sits_between_the_defaults_and_the_recipe() -> None:
    """stage default < profile < recipe < --set; voc runs the reference profile."""
    assert VOC.profile == "reference" and DEMO.profile is None
    voc = resolve(VOC, random_walk=True)
    assert voc.profile == "reference" and voc.stages["make_rw"]["exp_times"] == 8
    assert voc.stages["train_aff"]["radius"] == 10
    demo = resolve(DEMO, random_walk=True)
    assert demo.profile == "wsss" and demo.stages["make_rw"]["exp_times"] == "auto"
    chosen = resolve(DEMO, random_walk=True, profile="reference")
    assert chosen.stages["make_rw"]["exp_times"] == 8
    # the recipe's own setting wins over the profile's, --set over both
    recipe = replace(DEMO, make_rw={"exp_times": 6})
    assert (
        resolve(recipe, random_walk=True, profile="reference").stages["make_rw"]["exp_times"] == 6
    )
    won = resolve(VOC, overrides=["make_rw.exp_times=5"], random_walk=True)
    assert won.stages["make_rw"]["exp_times"] == 5
    with pytest.raises(WsssError, match="--profile must be one of wsss\\|reference"):
        resolve(DEMO, profile="paper")

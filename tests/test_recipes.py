"""Recipes and `--set stage.option=value`: typed by the stage config, one-line errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cli.main import main
from wsss.crf import CrfParams
from wsss.errors import WsssError
from wsss.recipes import (
    COCO,
    DEMO,
    RECIPES,
    VOC,
    apply_overrides,
    build_config,
    get_recipe,
    train_cam_options,
)
from wsss.stages.pipeline import PipelineConfig, resolve_recipe, stage_options


def overridden(*sets: str, recipe=DEMO):
    return apply_overrides(recipe, sets, stage_options(recipe))


def test_recipes_by_name() -> None:
    assert set(RECIPES) == {"demo", "voc", "coco"}
    assert get_recipe("coco") is COCO and get_recipe("voc") is VOC
    with pytest.raises(WsssError, match=r"--recipe must be one of demo\|voc\|coco, got 'vco'"):
        get_recipe("vco")


def test_values_take_the_type_of_the_stage_option() -> None:
    recipe = overridden(
        "train_cam.epochs=20",
        "train_seg.lr=0.01",
        "make_cam.scales=0.5,1,1.5",
        "train_seg.scale_range=64,96",
        "predict.flip=false",
        "train_cam.pretrained=imagenet",
        "make_pseudo.threshold=0.3",
        "train_cam.eval_split=none",
        "demo.n_train=50",
        "train_cam.epochs=25",  # the last one wins
    )
    assert recipe.train_cam["epochs"] == 25 and isinstance(recipe.train_cam["epochs"], int)
    assert recipe.train_seg["lr"] == 0.01
    assert recipe.make_cam["scales"] == (0.5, 1.0, 1.5) and recipe.make_cam["flip"] is True
    assert recipe.train_seg["scale_range"] == (64, 96)
    assert recipe.predict["flip"] is False
    assert recipe.train_cam["pretrained"] == "imagenet" and recipe.train_cam["lr"] == 1e-3
    assert recipe.make_pseudo == {"threshold": 0.3}
    assert recipe.train_cam["eval_split"] is None
    assert recipe.demo == {**DEMO.demo, "n_train": 50}
    assert overridden("make_pseudo.threshold=auto").make_pseudo == {"threshold": "auto"}


def test_parameter_objects_take_their_fields_as_stage_field_name(tmp_path: Path) -> None:
    from wsss.stages.make_pseudo import MakePseudoConfig
    from wsss.stages.make_rw import MakeRwConfig

    recipe = overridden("make_pseudo.crf.iterations=3", "make_pseudo.crf.unary=labels",
                        "make_rw.rw.beta=8", "make_rw.rw.exp_times=none")  # fmt: skip
    assert recipe.make_pseudo == {"crf.iterations": 3, "crf.unary": "labels"}
    paths = {"cams": tmp_path, "data": tmp_path, "split": "train", "out": tmp_path}
    config = build_config(MakePseudoConfig, {**paths, **recipe.make_pseudo})
    assert config.crf == CrfParams(iterations=3, unary="labels")
    rw = build_config(MakeRwConfig, {**paths, "checkpoint": tmp_path, **recipe.make_rw}).rw
    assert (rw.beta, rw.exp_times, rw.radius) == (8.0, None, 5)
    with pytest.raises(WsssError, match="'soft' is not a valid scores|labels"):
        overridden("make_pseudo.crf.unary=soft")
    assert DEMO.train_cam["epochs"] == 30  # the recipe itself is untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train_cams.epochs=3", r"unknown stage 'train_cams' \(stages: demo, train_cam, make_cam"),
        ("train_cam.epoch=3", r"unknown option 'epoch' of train_cam \(options: .*\bepochs\b"),
        ("train_cam.data=/x", "unknown option 'data' of train_cam"),  # the pipeline's own
        ("train_cam.epochs=ten", r"--set train_cam.epochs=ten: 'ten' is not a valid int"),
        ("train_seg.scale_range=1,2,3", "is not a valid 2 comma-separated ints"),
        ("predict.flip=maybe", "is not a valid bool"),
        ("make_pseudo.threshold=high", "is not a valid float or auto or none"),
        ("train_cam.epochs", "expected STAGE.OPTION=VALUE"),
        ("epochs=3", "expected STAGE.OPTION=VALUE"),
    ],
)
def test_bad_overrides_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(WsssError, match=message) as caught:
        overridden(text)
    assert "\n" not in str(caught.value)


def test_demo_options_only_where_the_recipe_generates_data() -> None:
    with pytest.raises(WsssError, match="unknown stage 'demo'"):
        overridden("demo.n_train=5", recipe=VOC)


def test_seed_and_variant_of_the_pipeline(tmp_path: Path) -> None:
    recipe = resolve_recipe(PipelineConfig(out=tmp_path, recipe=COCO, seed=7))
    assert recipe.train_cam["seed"] == recipe.train_seg["seed"] == recipe.train_aff["seed"] == 7
    with pytest.raises(WsssError, match="--variant must be one of"):
        resolve_recipe(PipelineConfig(out=tmp_path, recipe=COCO, variant="puzzle"))


def test_a_variant_replaces_the_recipe_variant_and_never_stacks() -> None:
    recipe = replace(DEMO, variant="pcl")
    pcl = train_cam_options(recipe)
    assert pcl["alpha"] == 0.0 and pcl["use_pcl"] and pcl["pieces"] == 4
    full = train_cam_options(recipe, "full")
    assert full["alpha"] == DEMO.train_cam["alpha"] == 4.0 and full["use_pcl"]
    base = train_cam_options(recipe, "baseline")
    assert base["pieces"] == 1 and base["alpha"] == 0.0 and not base["use_pcl"]
    assert train_cam_options(COCO) == COCO.train_cam  # no variant: the settings as they are
    with pytest.raises(WsssError, match="--variant must be one of"):
        train_cam_options(recipe, "puzzle")


def test_the_command_reports_a_bad_override_before_any_work(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["pipeline", "run", "--recipe", "demo", "--out", str(out),
            "--set", "train_cam.epochs=3", "--set", "make_cam.scale=1"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown option 'scale' of make_cam" in err
    assert "scales" in err and not out.exists()

"""One place per option: every stage command's flags, defaults and help texts, and every
`--set` key, come from the stage's config; the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
from typing import Any

import click
import pytest
import typer

from cli.main import app, main
from wsss import registry
from wsss.option import Option, format_value, options, simple_type
from wsss.recipes import DEMO, RUN_STAGES, resolve, settable

COMMANDS = typer.main.get_command(app)


def command_params(name: str) -> dict[str, click.Parameter]:
    command = COMMANDS.commands[name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params if p.name != "help"}


def cli_default(opt: Option, param: click.Parameter) -> Any:
    """The value a user gets without the flag, parsed as the stage parses it."""
    if param.default is None or simple_type(opt.kind) is not None:
        return param.default
    return opt.parse(param.default)


@pytest.mark.parametrize("stage", registry.STAGES, ids=lambda s: s.name)
def test_every_command_is_its_config(stage: registry.Stage) -> None:
    params = command_params(stage.name)
    declared = {opt.name: opt for opt in options(stage.config)}
    assert set(params) == set(declared)  # a flag without an option, or an option without one
    for name, opt in declared.items():
        param = params[name]
        assert param.help == opt.spec.help, name
        assert param.required == opt.required, name
        if not opt.required:
            assert cli_default(opt, param) == opt.default, name
        if not opt.spec.argument:
            spelled = {*param.opts, *param.secondary_opts}
            assert opt.flag in spelled, name
            for alias in opt.spec.aliases:
                assert set(alias.split("/")) <= spelled, (name, alias)


@pytest.mark.parametrize("stage", registry.STAGES, ids=lambda s: s.name)
def test_every_stage_declares_its_help_and_has_its_run(stage: registry.Stage) -> None:
    """The config's docstring is the command's help (not dataclass's generated signature)."""
    assert stage.help and not stage.help.startswith(stage.config.__name__)
    assert COMMANDS.commands[stage.name].help == stage.help  # type: ignore[attr-defined]
    assert importlib.util.find_spec(stage.module) is not None
    assert stage.output in typing.get_args(registry.Output)


@pytest.mark.parametrize("key", [k for k in RUN_STAGES], ids=str)
def test_every_set_key_is_a_flag_of_the_same_name(key: str) -> None:
    stage = registry.stage(RUN_STAGES[key])
    params = command_params(stage.name)
    keys = settable(key)
    for name, opt in keys.items():
        if name == opt.name:  # today's spelling: the flag's, dashes for underscores
            assert opt.flag == "--" + name.replace("_", "-"), name
            assert name in params
    run_level = {o.name for o in options(stage.config) if o.spec.run_level}
    assert {o.name for o in keys.values()} == set(params) - run_level


def test_standalone_and_pipeline_defaults_of_make_pseudo_agree() -> None:
    """make-pseudo alone and the pipeline's make-pseudo step start from the same defaults,
    the label-free threshold among them."""
    params = command_params("make-pseudo")
    pipeline = resolve(DEMO).stages["make_pseudo"]
    stage = registry.stage("make-pseudo")
    for opt in options(stage.config):
        if opt.name in pipeline:
            assert cli_default(opt, params[opt.name]) == pipeline[opt.name], opt.name
    assert pipeline["threshold"] == "auto"


def test_a_changed_default_shows_in_both_places(monkeypatch) -> None:
    """Planting a second default in one place is what the tests above catch: a recipe-free
    stage's pipeline value and the flag's default are both read off the one field."""
    config = registry.stage("predict").config
    field = {f.name: f for f in dataclasses.fields(config)}["scales"]
    assert format_value(field.default) == command_params("predict")["scales"].default


def test_flags_and_set_keys_parse_alike(tmp_path) -> None:
    """One parser per value type: `--scales 0.5,1` and `make_cam.scales=0.5,1` give the same
    tuple, and a bad value is the same kind of one-line error."""
    stage = registry.stage("make-cam")
    opt = {o.name: o for o in options(stage.config)}["scales"]
    from_set = resolve(DEMO, overrides=["make_cam.scales=0.5,1"]).stages["make_cam"]["scales"]
    assert opt.parse("0.5,1") == from_set == (0.5, 1.0)
    code = main(["make-cam", "--checkpoint", str(tmp_path), "--data", str(tmp_path),
                 "--split", "train", "--out", str(tmp_path / "o"), "--scales", "a,b"])  # fmt: skip
    assert code == 2


def test_lists_of_stage_names_below_the_registry_agree_with_it() -> None:
    """camfile and report_html sit below the registry in the layers (the registry's configs
    import them) and keep their own tuples of stage names; they must be the registry's."""
    from wsss import camfile, report_html

    def named(output: str) -> set[str]:
        return {stage.name for stage in registry.STAGES if stage.output == output}

    assert set(camfile.CAM_STAGES) == set(report_html.CAM_MAKERS) == named("cams")
    from wsss.configs.trainers import TrainOptions

    trainers = {s.name for s in registry.STAGES if issubclass(s.config, TrainOptions)}
    assert set(report_html.TRAINERS) == trainers <= named("model")
    assert set(report_html.LABEL_MAKERS) == named("labels")
    assert set(report_html.PIPELINE) <= {stage.name for stage in registry.STAGES}

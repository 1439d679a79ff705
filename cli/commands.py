"""Every stage's command, made from its registry entry: one flag per option of the stage's
config (`wsss.option`), the config built from the flags, `run`, then the result printed."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import typer

from wsss.option import Option, format_value, options, simple_type
from wsss.registry import STAGES, Stage


def typer_parameter(opt: Option) -> Any:
    """The `typer.Option` (or `typer.Argument`) of one option."""
    spec = opt.spec
    if opt.required:
        default: Any = ...
    elif simple_type(opt.kind) is None and opt.default is not None:
        default = spec.shown or format_value(opt.default)  # parsed by the callback below
    else:
        default = opt.default
    extra: dict[str, Any] = {"help": spec.help, "rich_help_panel": spec.panel}
    if simple_type(opt.kind) is None:
        extra["callback"] = lambda value: None if value is None else opt.parse(value)
    # Bounds are checked on the built config (`check_config`): the one-line error of every
    # other bad value, not click's usage block.
    if spec.argument:
        return typer.Argument(default, **extra)
    return typer.Option(default, *flags(opt), **extra)


def flags(opt: Option) -> list[str]:
    """The option's flags: a bool gets its off switch (--no-NAME unless the spec names
    another, or none), and the older spellings follow."""
    first = opt.flag
    if simple_type(opt.kind) is not None and bool in (opt.kind, *getattr(opt.kind, "__args__", ())):
        off = f"--no-{first[2:]}" if opt.spec.off is None else opt.spec.off
        if off:
            first = f"{first}/{off}"
    return [first, *opt.spec.aliases]


def annotation(opt: Option) -> Any:
    """What Typer parses the flag as: the option's own type, or text for a compound one."""
    kind = simple_type(opt.kind)
    if kind is None:
        return str | None if opt.default is None else str
    return kind


def command(stage: Stage, show: Callable[[Stage, Any], None]) -> Callable[..., None]:
    """The Typer command of `stage`: its flags, then `stage.run(config)` and `show`."""
    found = options(stage.config)
    settable = {f.name for f in dataclasses.fields(stage.config)}

    def call(**values: Any) -> None:
        from wsss.option import check_config

        config = stage.config(**{k: v for k, v in values.items() if k in settable})
        check_config(config)
        show(stage, stage.run(config))

    parameters = [
        inspect.Parameter(
            opt.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer_parameter(opt),
            annotation=annotation(opt),
        )
        for opt in sorted(found, key=lambda o: not o.spec.argument)
    ]
    call.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in parameters}
    call.__doc__ = stage.help
    call.__name__ = stage.key
    return call


def show_result(stage: Stage, result: Any) -> None:
    """A stage's result as the user sees it: its tables, its notes, then its summary rows."""
    from wsss.ui import info, key_value_table, print_table

    for table in getattr(result, "tables", list)():
        print_table(table)
    rows = result.summary_rows() if hasattr(result, "summary_rows") else []
    if rows:
        print_table(key_value_table(stage.name, rows))
    for line in getattr(result, "notes", list)():
        info(line)


def register(app: typer.Typer) -> None:
    """One command per registered stage."""
    for stage in STAGES:
        app.command(stage.name)(command(stage, show_result))

"""`takes`: options several hand-written commands (the pipeline's) share, declared once.
The stage commands are made from their configs instead (cli/commands.py)."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

# -- groups of options several commands take alike -----------------------------------------------

# name -> (type, factory); a factory with an argument takes the command's default.
Group = dict[str, tuple[Any, Callable[..., Any]]]


def takes(group: Group, **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command every option of `group` (with these per-command defaults); the command
    receives them together as its `shared` argument, a dict ready for its stage config."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command)
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "shared"]
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=factory(defaults[name]) if name in defaults else factory(),
                annotation=kind,
            )
            for name, (kind, factory) in group.items()
        ]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            shared = {name: kwargs.pop(name) for name in group}
            return command(shared=shared, **kwargs)

        parameters = [p.replace(annotation=hints[p.name]) for p in own] + added
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate

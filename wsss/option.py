"""One declaration per option.

A stage's config dataclass is the only place an option is declared: its field gives the name,
type and default, and `option(...)` adds the help text, the flag's other spellings, bounds and
the help panel. The CLI's flags (`cli/commands.py`) and the pipeline's `--set` keys
(`wsss.recipes`) are both made from it, and both parse text with `parse_value`, so a flag and
its `--set` key (`--crf-iters` and `make_pseudo.crf_iters`) take the same values.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsss.errors import WsssError

_KEY = "wsss.option"


@dataclass(frozen=True)
class Spec:
    """What a field needs beyond its name, type and default to be an option."""

    help: str
    flag: str | None = None  # the flag when it is not --NAME (json_path: --json)
    aliases: tuple[str, ...] = ()  # older flag spellings, still accepted ("--workers")
    old_keys: tuple[str, ...] = ()  # older `--set` keys, still accepted ("use_pcl")
    off: str | None = None  # a bool's off switch (default --no-NAME); "" for none
    panel: str | None = None  # rich help panel
    min: float | None = None
    max: float | None = None
    argument: bool = False  # a positional argument instead of a flag
    # A parser of its own, for flag and `--set` alike ('0.05:0.95:0.05' for a sweep), and the
    # default as that parser's text.
    parse: Callable[[str], Any] | None = None
    shown: str | None = None
    # Set by the pipeline from the run itself (data, out, the previous stage's output):
    # stand-alone a flag, never a `--set` key.
    run_level: bool = False


def option(default: Any = dataclasses.MISSING, help: str = "", **spec: Any) -> Any:
    """A dataclass field that is a user option (see `Spec` for the keywords)."""
    return dataclasses.field(default=default, metadata={_KEY: Spec(help=help, **spec)})


@dataclass(frozen=True)
class Option:
    """One option of a config class, resolved: field name, type, default and its `Spec`."""

    name: str
    kind: Any
    default: Any  # dataclasses.MISSING when required
    spec: Spec

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def keys(self) -> tuple[str, ...]:
        """Every `--set` spelling: the name first, then the older ones."""
        return (self.name, *self.spec.old_keys)

    def parse(self, text: str) -> Any:
        """`text` as this option's value; a one-line error naming the flag otherwise."""
        if self.spec.parse is not None:
            value = self.spec.parse(text)
            check_bounds(self, value)
            return value
        try:
            value = parse_value(text, self.kind)
        except ValueError:
            raise WsssError(
                f"{self.flag}: '{text}' is not a valid {type_name(self.kind)}"
            ) from None
        check_bounds(self, value)
        return value


def options(config_type: type) -> list[Option]:
    """The options of a config dataclass, in field order. A subclass that re-declares a field
    with another default (`epochs: int = 50`) keeps the spec of the class that declared it."""
    hints = typing.get_type_hints(config_type)
    found: list[tuple[int, Option]] = []
    for f in dataclasses.fields(config_type):
        owner = _declaring_class(config_type, f.name)
        if owner is None:
            continue
        spec = owner.__dataclass_fields__[f.name].metadata[_KEY]
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        found.append(
            (config_type.__mro__.index(owner), Option(f.name, hints[f.name], default, spec))
        )
    # A stage's own options first, then those of the classes it extends (sort is stable).
    return [opt for _, opt in sorted(found, key=lambda pair: pair[0])]


def _declaring_class(config_type: type, name: str) -> type | None:
    """The class whose field `name` carries the spec (the most derived one that does)."""
    for cls in config_type.__mro__:
        declared = name in cls.__dict__.get("__annotations__", {})
        if declared and _KEY in cls.__dataclass_fields__[name].metadata:
            return cls
    return None


def option_map(config_type: type) -> dict[str, Option]:
    """Every `--set` key of a config class (old spellings included) -> its option."""
    return {key: opt for opt in options(config_type) for key in opt.keys}


def check_bounds(opt: Option, value: Any) -> None:
    """The spec's bounds, for a value from a flag, a `--set` or a recipe; a number option
    is finite (`--weight-decay inf` or a NaN would train on nonsense, then blame the lr)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    # (An option that also takes words, `--threshold 0.3|auto|oracle`, checks its own range.)
    if isinstance(value, float) and not math.isfinite(value) and not literal_choices(opt.kind):
        raise WsssError(f"{opt.flag} must be a finite number, got {value}")
    if opt.spec.min is not None and value < opt.spec.min:
        raise WsssError(f"{opt.flag} must be at least {_bound(opt.spec.min)}, got {value}")
    if opt.spec.max is not None and value > opt.spec.max:
        raise WsssError(f"{opt.flag} must be at most {_bound(opt.spec.max)}, got {value}")


def _bound(value: float) -> str:
    """A bound as written: an integer in full (a seed's 2**64 - 1), other numbers short."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_config(config: Any) -> None:
    """Bounds and choices of every option of a built config (`Literal` types are choices)."""
    for opt in options(type(config)):
        value = getattr(config, opt.name)
        check_bounds(opt, value)
        choices = literal_choices(opt.kind)
        if choices and value not in choices and not _other_member_fits(opt.kind, value):
            raise WsssError(
                f"{opt.flag} must be one of {'|'.join(map(str, choices))}, got '{value}'"
            )


def _other_member_fits(kind: Any, value: Any) -> bool:
    """Whether a union's non-Literal member (a number beside 'auto') holds the value."""
    members = [a for a in typing.get_args(kind) if typing.get_origin(a) is not typing.Literal]
    return any(
        (m is type(None) and value is None)
        or (m in (int, float) and isinstance(value, int | float) and not isinstance(value, bool))
        or (m in (str, Path) and isinstance(value, str | Path))
        for m in members
    )


def literal_choices(kind: Any) -> tuple[Any, ...]:
    """The values of a `Literal` type, or of the `Literal` members of a union."""
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return tuple(c for a in typing.get_args(kind) for c in literal_choices(a))
    return ()


def simple_type(kind: Any) -> Any | None:
    """The type Typer can parse by itself (int, float, str, Path, bool, or one of them | None);
    None for a compound type, which the CLI takes as text and parses with `parse_value`."""
    if kind in (int, float, str, Path, bool):
        return kind
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in (int, float, str, Path, bool):
            return kind
    return None


def format_value(value: Any) -> str:
    """A value as the text that parses back to it (a tuple as comma-separated items)."""
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    if value is None:
        return "none"
    return str(value)


def parse_value(text: str, kind: Any) -> Any:
    """`text` as a value of type `kind` (int, float, bool, str, Path, Literal, X | None,
    tuple[X, ...] as comma-separated items); ValueError when it is not one."""
    text = text.strip()
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        for member in _union_order(args):
            try:
                return parse_value(text, member)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ValueError(text)
    if origin is tuple:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            if not items:
                raise ValueError(text)
            return tuple(parse_value(item, args[0]) for item in items)
        if len(items) != len(args):
            raise ValueError(text)
        return tuple(parse_value(item, a) for item, a in zip(items, args, strict=True))
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError(text)
    if kind in (int, float):
        return kind(text)
    if kind in (str, Path):
        if not text:
            raise ValueError(text)
        return kind(text)
    raise ValueError(text)


def _union_order(args: tuple[Any, ...]) -> Iterator[Any]:
    """Literals first ('auto' is not a float), then the rest, None last."""
    members = [a for a in args if a is not type(None)]
    yield from (a for a in members if typing.get_origin(a) is typing.Literal)
    yield from (a for a in members if typing.get_origin(a) is not typing.Literal)


def type_name(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) if a is not type(None) else "none" for a in args)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"comma list of {type_name(args[0])}"
        return f"{len(args)} comma-separated {type_name(args[0])}s"
    return getattr(kind, "__name__", str(kind))

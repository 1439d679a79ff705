"""Recipes: the per-stage settings of one reproduction, as typed data.

A `Recipe` names, per stage, the options that differ from the stage's own defaults; the
pipeline builds each stage's config from it. `--set stage.option=value` overrides any of
them (`apply_overrides`), typed by the stage config's field. Where each recipe's numbers
come from: docs/recipes.md.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsss.errors import WsssError


@dataclass(frozen=True)
class Recipe:
    """Per-stage settings of one reproduction; everything else is each stage's default."""

    name: str
    cam_split: str  # images the classifier trains on and pseudo labels are made for
    cam_eval_split: str  # images whose CAMs are scored (VOC: train, 1,464)
    seg_split: str
    seg_eval_split: str
    train_cam: dict[str, Any]
    make_cam: dict[str, Any]
    make_pseudo: dict[str, Any]
    train_seg: dict[str, Any]
    predict: dict[str, Any]
    demo: dict[str, Any] | None = None  # demo-data arguments, for the demo recipe
    # The random-walk path. train-aff takes backbone and pretrained from `train_cam`;
    # `aff_init` starts its backbone from the trained CAM classifier (train-aff --init).
    train_aff: dict[str, Any] = field(default_factory=dict)
    aff_init: bool = False
    # train-seg starts its backbone from the trained CAM classifier (train-seg --init)
    seg_init: bool = False
    # the label-free walk check decides whether the walked labels are kept (wsss.walk_check);
    # False keeps them whatever it says (it is still measured and recorded)
    walk_check: bool = True
    make_rw: dict[str, Any] = field(default_factory=dict)
    # The variant (`VARIANTS`) train-cam runs on top of `train_cam`, which holds the paper's
    # full Puzzle-CAM settings; None runs them as they are.
    variant: str | None = None


# `--set recipe.NAME=VALUE` sets one of these fields of the recipe itself.
RECIPE_STAGE = "recipe"
SWITCHES: dict[str, type] = {"aff_init": bool, "seg_init": bool, "walk_check": bool}

# Fields of a recipe that hold one stage's options each, in pipeline order.
STAGES = ("demo", "train_cam", "make_cam", "make_pseudo", "train_seg", "predict", "train_aff",
          "make_rw")  # fmt: skip

DEMO = Recipe(
    name="demo",
    cam_split="train",
    cam_eval_split="train",
    seg_split="train",
    seg_eval_split="val",
    demo={"n_train": 300, "n_val": 100, "size": 128, "seed": 0},
    # From scratch at 128 px the paper's SGD recipe does not learn; AdamW does. L_re shrinks
    # the maps onto the parts here, so the demo trains L_cls + L_p-cls (README, ablation).
    variant="pcl",
    train_cam={
        "backbone": "resnet18",
        "pretrained": "none",
        "output_stride": 16,
        "epochs": 30,
        "batch_size": 32,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "warmup_epochs": 2,
        "schedule": "cosine",
        "augment": "resized-crop",
        "crop": 128,
        "pieces": 4,
        "alpha": 4.0,
        "re_level": "feature",
    },
    make_cam={"scales": (0.5, 1.0, 1.5, 2.0), "flip": True, "overlays": 8},
    make_pseudo={},
    train_seg={
        "backbone": "resnet18",
        "pretrained": "none",
        "output_stride": 16,
        "epochs": 15,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "warmup_epochs": 1,
        "schedule": "cosine",
        "crop": 128,
        "scale_range": (96, 160),
    },
    # One scale + flip, chosen on the quality suite's tuning set: the multi-scale views
    # (0.5-1.5) lay outside the segmenter's training scales and cost 2 to 12 points there.
    predict={"scales": (1.0,), "flip": True},
    # Without ImageNet weights the affinity net starts from the CAM classifier and trains its
    # backbone too (docs/random_walk.md).
    train_aff={
        "freeze_backbone": False,
        "epochs": 15,
        "batch_size": 16,
        "crop": 128,
        "scale_range": (96, 160),
    },
    aff_init=True,
    # With no ImageNet weights the CAM classifier is the one network that knows these classes:
    # on the tuning set the segmenter started from it gained 18 points (docs/quality.md).
    seg_init=True,
)

# Puzzle-CAM's recipe for an ImageNet-pretrained ResNet-50 on VOC 2012 (docs/recipes.md).
VOC = Recipe(
    name="voc",
    cam_split="train_aug",
    cam_eval_split="train",
    seg_split="train_aug",
    seg_eval_split="val",
    train_cam={"backbone": "resnet50", "pretrained": "imagenet", "epochs": 15, "batch_size": 32},
    make_cam={"scales": (0.5, 1.0, 1.5, 2.0), "flip": True, "overlays": 16},
    make_pseudo={},
    train_seg={"backbone": "resnet50", "pretrained": "imagenet", "epochs": 50, "batch_size": 32},
    predict={"scales": (0.5, 1.0, 1.5, 2.0), "flip": True},
)

# COCO 2014: the CAM stage of the public IRN-family COCO code (ResNet-50, ImageNet, crop 512,
# batch 16, 5 epochs, SGD lr 0.1); 82k training images need fewer segmenter epochs than VOC's
# 10k. Sources: docs/recipes.md.
COCO = Recipe(
    name="coco",
    cam_split="train",
    cam_eval_split="train",
    seg_split="train",
    seg_eval_split="val",
    train_cam={
        "backbone": "resnet50",
        "pretrained": "imagenet",
        "epochs": 5,
        "batch_size": 16,
        "lr": 0.1,
        "weight_decay": 1e-4,
        "crop": 512,
    },  # fmt: skip
    make_cam={"scales": (1.0, 0.5, 1.5, 2.0), "flip": True, "overlays": 16},
    make_pseudo={},
    train_seg={"backbone": "resnet50", "pretrained": "imagenet", "epochs": 10, "batch_size": 32},
    predict={"scales": (0.5, 1.0, 1.5, 2.0), "flip": True},
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (DEMO, VOC, COCO)}

# name -> train-cam options on top of the recipe and its overrides (the puzzle variants take
# the tile count and alpha from there: `--pieces 9` changes all three, never the baseline)
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline (L_cls)": {"pieces": 1, "alpha": 0.0, "use_pcl": False},
    "L_cls + L_p-cls": {"alpha": 0.0, "use_pcl": True},
    "L_cls + L_re": {"use_pcl": False},
    "Puzzle-CAM (all)": {"use_pcl": True},
}
SHORT_NAMES = dict(zip(("baseline", "pcl", "re", "full"), VARIANTS, strict=True))


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise WsssError(f"--recipe must be one of {'|'.join(RECIPES)}, got '{name}'")
    return RECIPES[name]


def pick_variants(short: list[str] | None) -> tuple[str, ...]:
    """Variant names from their short forms (all when none given)."""
    if not short:
        return tuple(VARIANTS)
    unknown = [name for name in short if name not in SHORT_NAMES]
    if unknown:
        raise WsssError(f"--variant must be one of {'|'.join(SHORT_NAMES)}, got '{unknown[0]}'")
    return tuple(SHORT_NAMES[name] for name in short)


def train_cam_options(recipe: Recipe, variant: str | None = None) -> dict[str, Any]:
    """The recipe's train-cam options under its variant (or `variant`, which replaces it,
    never stacks on it)."""
    chosen = variant or recipe.variant
    if chosen is None:
        return dict(recipe.train_cam)
    (name,) = pick_variants([chosen])
    return {**recipe.train_cam, **VARIANTS[name]}


# -- overrides: `--set stage.option=value` ----------------------------------------------------


def apply_overrides(
    recipe: Recipe, overrides: typing.Sequence[str], options: dict[str, dict[str, Any]]
) -> Recipe:
    """The recipe with each `stage.option=value` applied; `options` maps a stage to its
    overridable options and their types. Any mistake is a one-line error naming the choices."""
    changes: dict[str, dict[str, Any]] = {}
    switches: dict[str, Any] = {}
    for text in overrides:
        stage, option, value = _split_override(text)
        if stage not in options:
            raise WsssError(f"--set {text}: unknown stage '{stage}' (stages: {', '.join(options)})")
        if option not in options[stage]:
            raise WsssError(
                f"--set {text}: unknown option '{option}' of {stage} "
                f"(options: {', '.join(sorted(options[stage]))})"
            )
        try:
            parsed = parse_value(value, options[stage][option])
        except ValueError:
            raise WsssError(
                f"--set {text}: '{value}' is not a valid {type_name(options[stage][option])}"
            ) from None
        if stage == RECIPE_STAGE:  # the recipe's own switches: fields, not a stage's options
            switches[option] = parsed
            continue
        changes.setdefault(stage, dict(getattr(recipe, stage) or {}))[option] = parsed
    return dataclasses.replace(recipe, **changes, **switches)


def _split_override(text: str) -> tuple[str, str, str]:
    key, sep, value = text.partition("=")
    stage, dot, option = key.strip().partition(".")
    if not sep or not dot or not stage or not option:
        raise WsssError(f"--set {text}: expected STAGE.OPTION=VALUE, e.g. train_cam.epochs=20")
    return stage, option.strip(), value.strip()


def option_types(config_type: type, exclude: typing.Collection[str] = ()) -> dict[str, Any]:
    """The fields of a stage config dataclass that a plain value can set, with their types;
    a field holding a parameter dataclass (the CRF's, the walk's) offers its fields as
    `field.name`."""
    hints = typing.get_type_hints(config_type)
    options: dict[str, Any] = {}
    for f in dataclasses.fields(config_type):
        if f.name in exclude:
            continue
        nested = _nested_type(hints[f.name])
        if nested is not None:
            options.update({f"{f.name}.{k}": v for k, v in option_types(nested).items()})
        elif _parsable(hints[f.name]):
            options[f.name] = hints[f.name]
    return options


def build_config(config_type: type, options: dict[str, Any]) -> Any:
    """`config_type(**options)`, with `field.name` keys set on that field's dataclass (the
    given one, else the field's default)."""
    plain = {key: value for key, value in options.items() if "." not in key}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        if "." in key:
            name, _, sub = key.partition(".")
            nested.setdefault(name, {})[sub] = value
    defaults = {f.name: f for f in dataclasses.fields(config_type)}
    hints = typing.get_type_hints(config_type)
    for name, subs in nested.items():
        base = plain.get(name)
        if base is None and defaults[name].default is not dataclasses.MISSING:
            base = defaults[name].default
        if base is None:
            base = _nested_type(hints[name])()
        plain[name] = dataclasses.replace(base, **subs)
    return config_type(**plain)


def _nested_type(kind: Any) -> type | None:
    members = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    return members[0] if len(members) == 1 and dataclasses.is_dataclass(members[0]) else None


def parse_value(text: str, kind: Any) -> Any:
    """`text` as a value of type `kind` (int, float, bool, str, Path, Literal, X | None,
    tuple[X, ...] as comma-separated items); ValueError when it is not one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        for member in (a for a in args if a is not type(None)):
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


def _parsable(kind: Any) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return all(_parsable(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return True
    if origin is tuple:
        return all(_parsable(a) for a in args if a is not Ellipsis)
    return kind in (bool, int, float, str, Path)

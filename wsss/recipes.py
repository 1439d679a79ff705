"""Recipes: the per-stage settings of one reproduction, as typed data.

A `Recipe` names, per stage, the options that differ from the stage's own defaults.
`resolve` gives every stage's options for one run, with one precedence:

    stage default < profile < recipe < variant (train-cam's loss terms) < --seed < --set

`--set stage.option=value` takes the stage's option names (`wsss.option`: the flag's name,
`--crf-iters` is `make_pseudo.crf_iters`) and always takes effect: a key the run cannot use is
an error naming it. Where each recipe's numbers come from: docs/recipes.md.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from wsss import registry
from wsss.errors import WsssError
from wsss.option import Option, check_bounds, option_map, options, parse_value, type_name


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
    # The profile (`PROFILES`) under the recipe's own settings: "reference" for the official
    # code's choices where wsss has its own; None runs wsss's defaults.
    profile: str | None = None


# `--set recipe.NAME=VALUE` sets one of these fields of the recipe itself.
RECIPE_STAGE = "recipe"
SWITCHES: dict[str, type] = {"aff_init": bool, "seg_init": bool, "walk_check": bool}

# The stages a run configures, in the registry's order: `--set` key -> the registry's key.
# Each is a field of `Recipe` named by the stage's key; the demo data's is `demo`.
_RECIPE_FIELD = {"demo_data": "demo"}
RUN_STAGES = {
    _RECIPE_FIELD.get(stage.key, stage.key): stage.key
    for stage in registry.STAGES
    if _RECIPE_FIELD.get(stage.key, stage.key) in Recipe.__dataclass_fields__
}
# Used only on the random-walk path: set without --random-walk they could not take effect.
WALK_ONLY = {"train_aff": None, "make_rw": None,
             "make_pseudo": ("fg_threshold", "bg_threshold")}  # fmt: skip

DEMO = Recipe(
    name="demo",
    cam_split="train",
    cam_eval_split="train",
    seg_split="train",
    seg_eval_split="val",
    demo={"train": 300, "val": 100, "size": 128, "seed": 0},
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
    # Scales 1-2, not the paper's 0.5-2: without the coarsest scale's blur the CAMs were ahead
    # on 13 of 14 tuning runs (+1.1 mIoU) and the pseudo labels on 12 (+2.6); docs/quality.md.
    make_cam={"scales": (1.0, 1.5, 2.0), "flip": True, "overlays": 8},
    make_pseudo={},
    # 30 epochs, not 15: ahead on all 15 tuning runs measured (+2.9 val mIoU on average),
    # at twice the segmenter's time (docs/quality.md, "The segmenter's length").
    train_seg={
        "backbone": "resnet18",
        "pretrained": "none",
        "output_stride": 16,
        "epochs": 30,
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
    profile="reference",
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

# name -> train-cam options on top of the recipe, under `--set` (the puzzle variants take the
# tile count and alpha from there: `--pieces 9` changes all three, never the baseline)
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline (L_cls)": {"pieces": 1, "alpha": 0.0, "pcl": False},
    "L_cls + L_p-cls": {"alpha": 0.0, "pcl": True},
    "L_cls + L_re": {"pcl": False},
    "Puzzle-CAM (all)": {"pcl": True},
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


# name -> stage -> options: the settings that make a stage compute what the official Puzzle-CAM
# code computes where wsss's default differs (docs/parity.md has the rows and their effects).
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "wsss": {},
    "reference": {
        # row 1: layer4 at stride 1, not dilated; L_p-cls as the reference at --re-level cam
        "train_cam": {"backbone_dilation": False, "pcl_maps": "level"},
        "make_cam": {"resize": "pil-bicubic"},  # row 2
        "make_pseudo": {"crf_preset": "reference"},  # row 3: labels unary, srgb 5
        "make_rw": {"rw_normalise": "global", "exp_times": 8},  # rows 4, 5
        "train_aff": {"radius": 10, "pair_sources": "cropped", "aff_head": "reference"},  # 6, 7
        "train_seg": {"backbone_dilation": False, "align_corners": True, "head_norm": "gn"},  # 1, 8
        "predict": {"resize": "pil-bicubic", "merge": "logits", "crf_preset": "reference"},  # 2, 9
    },
}


def profile_name(recipe: Recipe, profile: str | None = None) -> str:
    """The run's profile: `profile`, else the recipe's, else wsss's defaults."""
    chosen = profile or recipe.profile or "wsss"
    if chosen not in PROFILES:
        raise WsssError(f"--profile must be one of {'|'.join(PROFILES)}, got '{chosen}'")
    return chosen


def variant_options(recipe: Recipe, variant: str | None = None) -> dict[str, Any]:
    """train-cam's options of the variant (`variant`, else the recipe's; it replaces the
    recipe's, never stacks on it)."""
    chosen = variant or recipe.variant
    if chosen is None:
        return {}
    (name,) = pick_variants([chosen])
    return dict(VARIANTS[name])


@dataclass(frozen=True)
class Resolved:
    """One run's settings: every stage's options (defaults included), the recipe's switches."""

    recipe: Recipe
    stages: dict[str, dict[str, Any]]  # `--set` stage key -> option -> value
    switches: dict[str, Any]
    profile: str = "wsss"

    def to_json(self) -> dict[str, Any]:
        from wsss.io import jsonable

        return jsonable({**self.stages, RECIPE_STAGE: self.switches})


def resolve(
    recipe: Recipe,
    variant: str | None = None,
    overrides: typing.Sequence[str] = (),
    seed: int | None = None,
    random_walk: bool = False,
    demo_data: bool | None = None,
    profile: str | None = None,
) -> Resolved:
    """Every stage's options for one run (the precedence in the module's docstring); any
    mistake in `overrides` is a one-line error, raised before any work. `demo_data`: whether
    the run generates the demo data (default: when the recipe has it)."""
    demo_data = recipe.demo is not None if demo_data is None else demo_data
    chosen = profile_name(recipe, profile)
    sets = parse_overrides(overrides)
    _check_effect(sets, random_walk, demo_data)
    stages: dict[str, dict[str, Any]] = {}
    for key, name in RUN_STAGES.items():
        if key == "demo" and not demo_data:
            continue
        config = registry.stage(name).config
        values = option_values(config)
        if key == "train_aff":  # the affinity net's backbone is the CAM classifier's
            inherited = ("backbone", "pretrained", "backbone_dilation")
            values.update({k: stages["train_cam"][k] for k in inherited})
        values.update(_typed(config, PROFILES[chosen].get(key, {}), f"the {chosen} profile"))
        values.update(_typed(config, getattr(recipe, key) or {}, f"the {recipe.name} recipe"))
        if key == "train_cam":
            values.update(variant_options(recipe, variant))
        if seed is not None and key in TRAINERS:
            values["seed"] = seed
        values.update(sets.get(key, {}))
        for opt in options(config):
            if opt.name in values:
                check_bounds(opt, values[opt.name])
        stages[key] = values
    switches = {name: getattr(recipe, name) for name in SWITCHES}
    switches.update(sets.get(RECIPE_STAGE, {}))
    return Resolved(recipe, stages, switches, chosen)


TRAINERS = tuple(key for key, name in RUN_STAGES.items() if registry.stage(name).output == "model")


def option_values(config: type) -> dict[str, Any]:
    """The defaults of a stage's options that a run may set (not those it sets itself)."""
    return {opt.name: opt.default for opt in options(config) if not opt.spec.run_level}


def settable(key: str) -> dict[str, Option]:
    """A run stage's `--set` keys (old spellings included) -> option."""
    if key == RECIPE_STAGE:
        return {}
    config = registry.stage(RUN_STAGES[key]).config
    return {k: opt for k, opt in option_map(config).items() if not opt.spec.run_level}


def parse_overrides(overrides: typing.Sequence[str]) -> dict[str, dict[str, Any]]:
    """`stage.option=value` texts as stage -> option name -> typed value."""
    parsed: dict[str, dict[str, Any]] = {}
    for text in overrides:
        stage, key, value = _split_override(text)
        stage = {"demo_data": "demo"}.get(stage, stage)
        if stage == RECIPE_STAGE:
            if key not in SWITCHES:
                raise WsssError(f"--set {text}: unknown switch '{key}' of the recipe "
                                f"(switches: {', '.join(SWITCHES)})")  # fmt: skip
            parsed.setdefault(stage, {})[key] = _parse(text, value, SWITCHES[key])
            continue
        if stage not in RUN_STAGES:
            stages = ", ".join([*RUN_STAGES, RECIPE_STAGE])
            raise WsssError(f"--set {text}: unknown stage '{stage}' (stages: {stages})")
        known = settable(stage)
        if key not in known:
            fixed = {o.name for o in options(registry.stage(RUN_STAGES[stage]).config)}
            why = "the pipeline sets it from the run" if key in fixed else "unknown option"
            names = ", ".join(sorted({o.name for o in known.values()}))
            raise WsssError(f"--set {text}: {why} '{key}' of {stage} (options: {names})")
        opt = known[key]
        if opt.spec.parse is not None:
            parsed.setdefault(stage, {})[opt.name] = opt.parse(value)
        else:
            parsed.setdefault(stage, {})[opt.name] = _parse(text, value, opt.kind)
    return parsed


def _parse(text: str, value: str, kind: Any) -> Any:
    try:
        return parse_value(value, kind)
    except ValueError:
        raise WsssError(f"--set {text}: '{value}' is not a valid {type_name(kind)}") from None


def _split_override(text: str) -> tuple[str, str, str]:
    key, sep, value = text.partition("=")
    stage, dot, option = key.strip().partition(".")
    if not sep or not dot or not stage or not option:
        raise WsssError(f"--set {text}: expected STAGE.OPTION=VALUE, e.g. train_cam.epochs=20")
    return stage, option.strip(), value.strip()


def _check_effect(sets: dict[str, dict[str, Any]], random_walk: bool, demo_data: bool) -> None:
    """A `--set` the run would ignore is an error, not a silent no-op."""
    if not random_walk:
        for stage, only in WALK_ONLY.items():
            hit = [k for k in sets.get(stage, {}) if only is None or k in only]
            if hit:
                raise WsssError(f"--set {stage}.{hit[0]}: used only on the random-walk path; "
                                "add --random-walk")  # fmt: skip
    if sets.get("demo") and not demo_data:
        key = next(iter(sets["demo"]))
        raise WsssError(f"--set demo.{key}: this run does not generate the demo data "
                        "(the demo recipe without --data does)")  # fmt: skip


def _typed(config: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """A recipe's options under their names (old spellings taken), unknown ones refused."""
    known = option_map(config)
    unknown = [k for k in values if k not in known]
    if unknown:
        raise WsssError(f"{where}: unknown option '{unknown[0]}' of {config.__name__}")
    return {known[k].name: v for k, v in values.items()}

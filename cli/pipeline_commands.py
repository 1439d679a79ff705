"""`wsss pipeline run|demo|voc|ablation|quality`: every stage in order; re-running continues
where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli import options

pipeline_app = typer.Typer(
    help="Run every stage in order (any dataset in VOC layout, the demo data, PASCAL VOC 2012); "
    "resumable.",
    no_args_is_help=True,
)

VARIANT_HELP = (
    "Puzzle-CAM loss terms of train-cam: full (L_cls + L_p-cls + alpha L_re, the paper), pcl "
    "(L_cls + L_p-cls), re (L_cls + L_re) or baseline (plain CAM); default: the recipe's."
)
RANDOM_WALK_HELP = (
    "Also run the random-walk path (confident labels, train-aff, make-rw, then make-pseudo, "
    "train-seg, predict and eval on the walked maps) and compare both paths in the summary."
)


SET_HELP = (
    "Override a stage option of the recipe, STAGE.OPTION=VALUE (repeatable), e.g. "
    "train_cam.epochs=20, train_seg.lr=0.01, make_cam.scales=0.5,1,1.5, make_pseudo.threshold=0.3."
)


# The options of a whole run, in `wsss pipeline run`, `demo` and `voc` alike.
RUN: options.Group = {
    "device": (str, options.device),
    "workers": (
        int | None,
        lambda: typer.Option(None, "--workers", help="Loader / CRF worker processes."),
    ),
    "random_walk": (
        bool,
        lambda: typer.Option(False, "--random-walk", help=RANDOM_WALK_HELP),
    ),
    "variant": (str | None, lambda: typer.Option(None, "--variant", help=VARIANT_HELP)),
    "overrides": (list[str], lambda: typer.Option([], "--set", help=SET_HELP)),
}


def _run(shared: dict, **fields: Any) -> None:
    """One pipeline run from the RUN options and the command's own fields."""
    from wsss.stages.pipeline import PipelineConfig, run

    run(PipelineConfig(**{**shared, "overrides": tuple(shared["overrides"])}, **fields))


@pipeline_app.command("run")
@options.takes(RUN)
def run_pipeline(
    shared: dict,
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Dataset root: JPEGImages/, a class list, split lists (train, optional val), "
        "image-level labels (VOC XML or a labels file); masks optional, for scoring only. "
        "The demo recipe generates its data under OUT when omitted.",
    ),
    recipe: str = typer.Option(..., "--recipe", help="demo, voc or coco (docs/recipes.md)."),
    out: Path = typer.Option(..., "--out", help="Run directory."),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of every trainer (default: the recipe's)."
    ),
) -> None:
    """Every stage on a dataset in the toolkit's layout with a recipe by name; no pixel masks
    needed (the background threshold comes from the CAMs, docs/label_free_threshold.md)."""
    from wsss.recipes import get_recipe

    _run(shared, out=out, recipe=get_recipe(recipe), data=data, seed=seed)


@pipeline_app.command("demo")
@options.takes(RUN)
def demo(
    shared: dict,
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run directory."),
) -> None:
    """The whole pipeline on the synthetic demo data, from scratch, on the CPU in minutes
    (`pipeline run --recipe demo` on freshly generated demo data)."""
    from wsss.recipes import DEMO

    _run(shared, out=out, recipe=DEMO)


@pipeline_app.command("voc")
@options.takes(RUN)
def voc(
    shared: dict,
    voc_root: Path = typer.Option(..., "--voc", help="VOC 2012 root (VOCdevkit/VOC2012)."),
    sbd: Path | None = typer.Option(None, "--sbd", help="SBD root, for train_aug."),
    out: Path = typer.Option(Path("runs/voc"), "--out", help="Run directory."),
) -> None:
    """The paper's recipe on PASCAL VOC 2012 (+ SBD): ResNet-50, ImageNet weights, GPU
    (prepare-voc, then `pipeline run --recipe voc`)."""
    from wsss.recipes import VOC

    _run(shared, out=out, recipe=VOC, data=voc_root, sbd=sbd, prepare_voc=True)


@pipeline_app.command("ablation")
def ablation(
    out: Path = typer.Option(Path("runs/ablation"), "--out", help="Run directory."),
    re_level: str | None = typer.Option(None, "--re-level", help="feature|cam (recipe: feature)."),
    alpha: float | None = typer.Option(None, "--alpha", help="alpha_max of L_re (recipe: 4)."),
    puzzle_start: float | None = typer.Option(
        None, "--puzzle-start", help="Fraction of training before the puzzle terms start."
    ),
    init: Path | None = typer.Option(
        None, "--init", help="Warm start from a classifier checkpoint."
    ),
    output_stride: int | None = typer.Option(None, "--output-stride", help="8 or 16."),
    pieces: int | None = typer.Option(None, "--pieces", help="Puzzle tiles, 4, 9... (recipe: 4)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (recipe: 1e-3)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every variant (recipe: 0)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per variant (recipe: 30)."),
    variant: list[str] | None = typer.Option(
        None, "--variant", help="Only these variants (repeatable): baseline, pcl, re, full."
    ),
    device: str = options.device(),
    workers: int | None = typer.Option(None, "--workers", help="Loader worker processes."),
) -> None:
    """Train the baseline, L_cls+L_p-cls, L_cls+L_re and full Puzzle-CAM alike; compare CAMs."""
    from wsss.recipes import pick_variants
    from wsss.stages.ablation import AblationConfig, run

    overrides = {
        key: value
        for key, value in (("re_level", re_level), ("alpha", alpha), ("puzzle_start", puzzle_start),
                           ("init", init), ("output_stride", output_stride), ("epochs", epochs),
                             ("pieces", pieces), ("lr", lr), ("seed", seed))
        if value is not None
    }  # fmt: skip
    run(
        AblationConfig(
            out=out,
            recipe_overrides=overrides,
            variants=pick_variants(variant),
            device=device,
            workers=workers,
        )
    )


@pipeline_app.command("quality")
def quality(
    out: Path = typer.Option(Path("runs/quality"), "--out", help="Suite directory."),
    set_name: str = typer.Option(
        "tuning", "--variant-set", help="tuning (choices are made here), report or smoke."
    ),
    variants: list[str] | None = typer.Option(
        None,
        "--variants",
        help="train-cam ablations to run, repeatable or comma-separated: baseline, pcl, re, "
        "full (default: the demo recipe's pcl).",
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", min=1, help="Runs in parallel (default: from the device and cores)."
    ),
    only: list[str] | None = typer.Option(
        None, "--only", help="Run only these variants of the set (repeatable or comma-separated)."
    ),
    max_seeds: int | None = typer.Option(
        None, "--max-seeds", help="Run the first N seeds of each variant (default: all)."
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="STAGE.OPTION=VALUE on top of the demo recipe, for every run "
        "(a tuning arm: give it its own --out). Repeatable.",
    ),
    device: str = options.device(),
) -> None:
    """The demo recipe on a set of dataset variants x seeds: one table and quality.json."""
    from wsss.stages.suite import SuiteConfig, run

    run(SuiteConfig(out=out, set_name=set_name, ablations=_names(variants), jobs=jobs,
                    device=device, only=_names(only), max_seeds=max_seeds,
                    overrides=tuple(overrides or ())))  # fmt: skip


def _names(items: list[str] | None) -> tuple[str, ...]:
    """Repeatable, comma-separated names as one tuple."""
    return tuple(n.strip() for item in items or [] for n in item.split(",") if n.strip())


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")

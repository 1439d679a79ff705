"""`wsss pipeline run|demo|voc`: every stage in order; re-running continues where it
stopped."""

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


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")

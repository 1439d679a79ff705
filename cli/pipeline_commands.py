"""`wsss pipeline run|demo|voc`: every stage in order; re-running continues where it
stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli import options
from wsss.amp import AMP_DEFAULT
from wsss.amp import AMP_HELP as AMP_CHOICES_HELP
from wsss.configs import common

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


PROFILE_HELP = (
    "wsss (its own defaults) or reference (the official Puzzle-CAM code's choices where they "
    "differ, docs/parity.md); default: the recipe's (voc: reference)."
)
WORKERS_HELP = "Loader and CRF worker processes both (the first release's option)."
DEVICE_HELP = common.DEVICE_HELP
AMP_HELP = AMP_CHOICES_HELP + " Every stage that runs a network."

# The options of a whole run, in `wsss pipeline run`, `demo` and `voc` alike.
RUN: options.Group = {
    "device": (str, lambda: typer.Option("auto", "--device", help=DEVICE_HELP)),
    "amp": (str, lambda: typer.Option(AMP_DEFAULT, "--amp", help=AMP_HELP)),
    "loader_workers": (int | None, lambda: typer.Option(
        None, "--loader-workers", min=0, help="Image loading processes of every stage.")),
    "crf_workers": (int | None, lambda: typer.Option(
        None, "--crf-workers", min=1, help="CRF worker processes (default: all cores).")),
    "workers": (int | None, lambda: typer.Option(None, "--workers", min=0, help=WORKERS_HELP)),
    "random_walk": (bool, lambda: typer.Option(False, "--random-walk", help=RANDOM_WALK_HELP)),
    "variant": (str | None, lambda: typer.Option(
        None, "--loss-variant", "--variant", help=VARIANT_HELP)),
    "overrides": (list[str], lambda: typer.Option([], "--set", help=SET_HELP)),
    "seed": (int | None, lambda: typer.Option(
        None, "--seed", help="Seed of every trainer (default: the recipe's).")),
    "profile": (str | None, lambda: typer.Option(None, "--profile", help=PROFILE_HELP)),
    "seeds": (str | None, lambda: typer.Option(
        None, "--seeds", help="Run once per seed (e.g. 0,1,2) into OUT/seed-N; then each "
        "figure's mean, standard deviation and range in OUT/summary.json.")),
    "tensorboard": (Path | None, lambda: typer.Option(
        None, "--tensorboard", help="TensorBoard event files of every trainer into DIR/<its "
        "folder> (losses, lr, evaluation figures, CAM / prediction pictures) and the run's "
        "figures into DIR/pipeline (pip install 'wsss[tensorboard]').")),
    "dry_run": (bool, lambda: typer.Option(
        False, "--dry-run", help="Print every stage's resolved options and stop.")),
}  # fmt: skip


def _run(shared: dict, **fields: Any) -> None:
    """One pipeline run from the RUN options and the command's own fields."""
    from wsss.stages.pipeline import PipelineConfig, run

    workers = shared.pop("workers")
    if workers is not None:  # --workers: both kinds, unless one is given on its own
        shared["loader_workers"] = (
            workers if shared["loader_workers"] is None else shared["loader_workers"]
        )
        shared["crf_workers"] = shared["crf_workers"] or max(1, workers)
    seeds = shared.pop("seeds")
    config = PipelineConfig(**{**shared, "overrides": tuple(shared["overrides"])}, **fields)
    if seeds is None:
        run(config)
        return
    from wsss.stages.pipeline import run_seeds

    run_seeds(config, _seed_list(seeds))


def _seed_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"a comma list of whole numbers, got '{text}'") from None


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
) -> None:
    """Every stage on a dataset in the toolkit's layout with a recipe by name; no pixel masks
    needed (the background threshold comes from the CAMs, docs/label_free_threshold.md)."""
    from wsss.recipes import get_recipe

    _run(shared, out=out, recipe=get_recipe(recipe), data=data)


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

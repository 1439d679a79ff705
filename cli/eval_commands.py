"""`wsss eval`: mIoU of label PNGs against ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import options


def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Directory of predicted label PNGs."),
    gt: Path = typer.Option(
        ..., "--gt", help="Ground-truth PNG directory, or a dataset root in VOC layout."
    ),
    list_file: Path | None = typer.Option(None, "--list", help="List file of ids to score."),
    split: str | None = typer.Option(
        None,
        "--split",
        help="Split name when --gt is a dataset root (default: the prediction manifest's).",
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Where to write the scores (default: PRED/eval.json)."
    ),
    class_list: Path | None = options.class_list(),
    skip_missing: bool = typer.Option(
        False, "--skip-missing", help="Score the images that have predictions; report the rest."
    ),
) -> None:
    """Confusion matrix, per-class IoU, precision/recall, FP/FN rates and mIoU."""
    from wsss.stages.evaluate import EvalConfig, run
    from wsss.ui import info, print_table, scores_table

    result = run(
        EvalConfig(
            pred=pred,
            gt=gt,
            list_file=list_file,
            split=split,
            json_path=json_path,
            class_list=class_list,
            skip_missing=skip_missing,
        )
    )
    print_table(scores_table(f"{pred} ({result.scores.images} images)", result.scores))
    if result.missing:
        info(f"[yellow]{len(result.missing)} predictions missing[/], skipped", markup=True)
    info(f"scores written to {result.json_path}")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)

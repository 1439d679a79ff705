"""Data commands: `wsss demo-data`, `wsss prepare-voc`."""

from __future__ import annotations

from pathlib import Path

import typer

from cli import options


def demo_data(
    out: Path = typer.Argument(..., help="Directory to write the demo dataset to (VOC layout)."),
    train: int = typer.Option(300, "--train", min=1, help="Number of training images."),
    val: int = typer.Option(100, "--val", min=1, help="Number of validation images."),
    size: int = typer.Option(128, "--size", min=32, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same bytes."),
) -> None:
    """Generate the synthetic demo dataset: large bodies with small discriminative parts."""
    from wsss.data.demo import generate_demo
    from wsss.ui import info

    summary = generate_demo(out, n_train=train, n_val=val, size=size, seed=seed)
    info(
        f"demo dataset: {summary.train} train + {summary.val} val images of {summary.size} px, "
        f"classes {', '.join(summary.classes)} -> {summary.root}"
    )


def prepare_voc(
    voc: Path = typer.Option(..., "--voc", help="VOC 2012 root (VOCdevkit/VOC2012)."),
    sbd: Path | None = typer.Option(
        None, "--sbd", help="SBD root (benchmark_RELEASE/dataset) to build train_aug."
    ),
    class_list: Path | None = typer.Option(
        None, "--class-list", help="Class list file (default: ROOT/classes.txt, else VOC's 20)."
    ),
    check_images: bool = typer.Option(
        True, "--check-images/--no-check-images", help="Decode every image and mask."
    ),
) -> None:
    """Check a VOC tree; convert SBD masks; write the train_aug list and a label cache."""
    from wsss.stages.prepare_voc import PrepareVocConfig, run, summary_rows

    result = run(
        PrepareVocConfig(voc=voc, sbd=sbd, class_list=class_list, check_images=check_images)
    )
    options.print_summary("prepare-voc", summary_rows(result))


def register(app: typer.Typer) -> None:
    app.command("demo-data")(demo_data)
    app.command("prepare-voc")(prepare_voc)

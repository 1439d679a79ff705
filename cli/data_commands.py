"""Data commands: `wsss demo-data`, `wsss prepare-voc`, `wsss prepare-coco`."""

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
    body_evidence: float = typer.Option(
        1.0,
        "--body-evidence",
        min=0.0,
        help="Class evidence in the bodies: 0 none, <1 that share of bodies, >1 narrower spreads.",
    ),
    part_scale: float = typer.Option(
        1.0, "--part-scale", help="Multiplies the part's share of its body (3-6%)."
    ),
    clutter: float = typer.Option(
        1.0, "--clutter", min=0.0, help="Multiplies the small marks (2-5) and background waves."
    ),
    distractors: int = typer.Option(
        2, "--distractors", min=0, help="Most body-like distractors per image (0..N)."
    ),
    min_objects: int = typer.Option(1, "--min-objects", min=1, help="Fewest objects per image."),
    max_objects: int = typer.Option(3, "--max-objects", min=1, help="Most objects per image."),
    object_scale: float = typer.Option(
        1.0, "--object-scale", help="Multiplies each body's share of the image."
    ),
    classes: int = typer.Option(5, "--classes", help="Number of classes (2-20)."),
    shape_variety: float = typer.Option(
        1.0, "--shape-variety", min=0.0, help="Multiplies outline wobble and aspect range."
    ),
    noise: float = typer.Option(
        0.025, "--noise", min=0.0, help="Std of the per-pixel colour noise (values in 0..1)."
    ),
) -> None:
    """Generate the synthetic demo dataset: large bodies with small discriminative parts.

    The knobs (docs/demo.md) make dataset variants; their defaults are the demo itself.
    """
    from wsss.data.demo import generate_demo
    from wsss.ui import info

    summary = generate_demo(
        out, n_train=train, n_val=val, size=size, seed=seed, body_evidence=body_evidence,
        part_scale=part_scale, clutter=clutter, distractors=distractors,
        min_objects=min_objects, max_objects=max_objects, object_scale=object_scale,
        classes=classes, shape_variety=shape_variety, noise=noise,
    )  # fmt: skip
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


def prepare_coco(
    coco: Path = typer.Option(
        ..., "--coco", help="COCO root with train2014/, val2014/ and annotations/."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the toolkit layout (default: into the COCO root)."
    ),
) -> None:
    """Convert COCO 2014 to the toolkit's layout: masks, labels.json, lists, classes.txt."""
    from wsss.stages.prepare_coco import PrepareCocoConfig, run
    from wsss.ui import key_value_table, print_table

    result = run(PrepareCocoConfig(coco=coco, out=out))
    print_table(key_value_table("prepare-coco", result.summary_rows()))


def register(app: typer.Typer) -> None:
    app.command("demo-data")(demo_data)
    app.command("prepare-voc")(prepare_voc)
    app.command("prepare-coco")(prepare_coco)

"""`make quality`: the demo recipe on a set of dataset variants x seeds (docs/quality.md).

python experiments/quality.py --datasets tuning|report|smoke --out runs/quality/tuning
    [--loss-variants pcl,full] [--jobs N] [--only NAME,...] [--max-seeds N] [--set S.O=V ...]
    [--no-bound]

"Variant" meant two things here: the dataset variants of a set and train-cam's loss variants.
They are --datasets (a set of dataset variants; --only picks some) and --loss-variants; the
first spellings, --variant-set and --variants, stay as aliases.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

if __package__ in (None, ""):  # run as a script: make the repository's `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import entry  # noqa: E402
from wsss.amp import AMP_CHOICES, AMP_DEFAULT  # noqa: E402

app = entry.app()


@app.command()
def quality(
    out: Path = typer.Option(Path("runs/quality"), "--out", help="Suite directory."),
    set_name: str = typer.Option(
        "tuning",
        "--datasets",
        "--variant-set",
        help="The set of dataset variants: tuning (choices are made here), report or smoke.",
    ),
    variants: list[str] | None = typer.Option(
        None,
        "--loss-variants",
        "--variants",
        help="train-cam ablations to run, repeatable or comma-separated: baseline, pcl, re, "
        "full (default: the demo recipe's pcl).",
    ),
    jobs: int | None = typer.Option(
        None, "--jobs", min=1, help="Runs in parallel (default: from the device and cores)."
    ),
    only: list[str] | None = typer.Option(
        None,
        "--only",
        help="Run only these dataset variants of the set (repeatable or comma-separated).",
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
    device: str = typer.Option("auto", "--device", help=entry.DEVICE_HELP),
    amp: str = typer.Option(
        AMP_DEFAULT,
        "--amp",
        help=f"Every stage's --amp ({', '.join(AMP_CHOICES)}; default {AMP_DEFAULT}): a run "
        "in another precision is an arm of its own, give it its own --out.",
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        help="A settings profile under the recipe (wsss, reference: the official Puzzle-CAM "
        "code's, docs/parity.md); an arm of its own, give it its own --out.",
    ),
    bound: bool = typer.Option(
        True,
        "--bound/--no-bound",
        help="Train each seed's supervised bound (the segmenter on the masks) after its run; "
        "--no-bound leaves it out (about a third of the set's time). A later run with --bound "
        "adds the bounds, reusing the pipeline runs.",
    ),
) -> None:
    """The demo recipe on a set of dataset variants x seeds: one table and quality.json."""
    from experiments.suite import SuiteConfig, run

    run(SuiteConfig(out=out, set_name=set_name, ablations=entry.names(variants), jobs=jobs,
                    device=device, only=entry.names(only), max_seeds=max_seeds,
                    overrides=tuple(overrides or ()), amp=amp, profile=profile,
                    bound=bound))  # fmt: skip


if __name__ == "__main__":
    entry.main(app)

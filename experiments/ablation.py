"""`make ablation`: train the plain CAM baseline, each Puzzle-CAM loss term alone and the full
loss with identical data, recipe and seed on the demo data, and compare their CAMs
(experiments/puzzle_ablation.py; README, "Puzzle-CAM on the demo data").

    python experiments/ablation.py --out runs/ablation [--variant pcl ...] [--alpha 1] ...
    python experiments/ablation.py --out runs/ablation-reference --profile reference \
        --backbone resnet50 [--seed 1]   # the paper's network (issue #25)
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

if __package__ in (None, ""):  # run as a script: make the repository's `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import entry  # noqa: E402
from wsss.amp import AMP_HELP  # noqa: E402
from wsss.recipes import PROFILES  # noqa: E402

app = entry.app()


@app.command()
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
    backbone: str | None = typer.Option(
        None, "--backbone", help="resnet18|resnet50|... (recipe: resnet18, from scratch)."
    ),
    backbone_dilation: bool | None = typer.Option(
        None,
        "--backbone-dilation/--no-backbone-dilation",
        help="Dilate layer4 of a ResNet-50/101 (row 1 of docs/parity.md; the profile's else).",
    ),
    profile: str = typer.Option(
        "wsss",
        "--profile",
        help=f"{'|'.join(PROFILES)}: the profile's train-cam and make-cam settings.",
    ),
    pieces: int | None = typer.Option(None, "--pieces", help="Puzzle tiles, 4, 9... (recipe: 4)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (recipe: 1e-3)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every variant (recipe: 0)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per variant (recipe: 30)."),
    variant: list[str] | None = typer.Option(
        None, "--variant", help="Only these variants (repeatable): baseline, pcl, re, full."
    ),
    device: str = typer.Option("auto", "--device", help=entry.DEVICE_HELP),
    amp: str = typer.Option(entry.MEASURED_AMP, "--amp", help=AMP_HELP),
    workers: int | None = typer.Option(None, "--workers", help="Loader worker processes."),
) -> None:
    """Train the baseline, L_cls+L_p-cls, L_cls+L_re and full Puzzle-CAM alike; compare CAMs."""
    from experiments.puzzle_ablation import AblationConfig, run
    from wsss.recipes import DEMO, pick_variants, profile_name

    overrides = {
        key: value
        for key, value in (("re_level", re_level), ("alpha", alpha), ("puzzle_start", puzzle_start),
                           ("init", init), ("output_stride", output_stride), ("epochs", epochs),
                           ("pieces", pieces), ("lr", lr), ("seed", seed), ("backbone", backbone),
                           ("backbone_dilation", backbone_dilation))
        if value is not None
    }  # fmt: skip
    run(
        AblationConfig(
            out=out,
            recipe_overrides=overrides,
            variants=pick_variants(variant),
            device=device,
            amp=amp,
            workers=workers,
            profile=profile_name(DEMO, profile),
        )
    )


if __name__ == "__main__":
    entry.main(app)

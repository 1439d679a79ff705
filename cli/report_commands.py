"""`wsss report`: one self-contained HTML page about a run directory."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run_dir: Path = typer.Argument(..., help="Run directory of `wsss pipeline` (or of stages)."),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the page (default: RUN_DIR/report.html)."
    ),
    samples: int = typer.Option(4, "--samples", min=0, help="Sample images per split."),
) -> None:
    """Summary, training curves, CAM threshold curve, per-class IoU and sample grids, as one
    offline HTML file (figures inlined); says what the run lacks."""
    from rich.markup import escape

    from wsss.stages.report import ReportConfig, run
    from wsss.ui import info, key_value_table, print_table

    result = run(ReportConfig(run_dir=run_dir, out=out, samples=samples))
    for line in result.missing:
        info(f"[yellow]not in this run:[/] {escape(line)}")
    print_table(key_value_table("report", result.summary_rows()))


def register(app: typer.Typer) -> None:
    app.command("report")(report)

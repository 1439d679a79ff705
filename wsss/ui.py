"""Terminal output: one progress-bar style and one score table for every stage.

Library code reports through these helpers, so a stage run from Python or under torchrun
prints only on rank 0 and tests can silence it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from wsss.torchrun import env_info

T = TypeVar("T")

console = Console(stderr=False)
err_console = Console(stderr=True)


def is_main_process() -> bool:
    return env_info().is_main


def quiet() -> bool:
    return os.environ.get("WSSS_QUIET") == "1" or not is_main_process()


class RateColumn(TextColumn):
    """Items per second, the number users compare between tools."""

    def __init__(self, unit: str = "img") -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


def make_progress(unit: str = "img") -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet(),
        transient=False,
    )


def track(
    items: Iterable[T], total: int | None, description: str, unit: str = "img"
) -> Iterator[T]:
    """Iterate with a progress bar showing rate and ETA."""
    with make_progress(unit) as progress:
        task = progress.add_task(description, total=total, status="")
        for item in items:
            yield item
            progress.advance(task)


def info(message: str) -> None:
    if not quiet():
        err_console.print(message)


def print_table(table: Table) -> None:
    if not quiet():
        console.print(table)


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def scores_table(title: str, scores) -> Table:
    """Per-class IoU / precision / recall table followed by the mean."""
    table = Table(title=title)
    table.add_column("class")
    for column in ("IoU %", "precision %", "recall %", "FP rate %", "FN rate %"):
        table.add_column(column, justify="right")
    for i, name in enumerate(scores.class_names):
        table.add_row(
            name,
            fmt_pct(scores.iou[i]),
            fmt_pct(scores.precision[i]),
            fmt_pct(scores.recall[i]),
            fmt_pct(scores.fp_rate[i]),
            fmt_pct(scores.fn_rate[i]),
        )
    table.add_section()
    table.add_row("[bold]mIoU", f"[bold]{scores.miou:.2f}", "", "", "", "")
    table.add_row("pixel acc.", f"{scores.pixel_accuracy:.2f}", "", "", "", "")
    return table


def key_value_table(title: str, rows: Sequence[tuple[str, object]]) -> Table:
    table = Table(title=title)
    table.add_column("item")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(str(key), str(value))
    return table

"""Terminal output: one progress-bar style and one score table for every stage.

Library code reports through these helpers, so a stage run from Python or under torchrun
prints only on rank 0 and tests can silence it. Text that can hold user strings (paths,
class names, ids) enters rich only here, and never as markup: `info` prints plain text
unless told otherwise, `warn` escapes its message, tables take their cells as plain `Text`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

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


def info(message: str, markup: bool = False) -> None:
    """A status line on stderr; `markup=True` only for fixed text (no user strings in it)."""
    if not quiet():
        err_console.print(message, markup=markup, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """A warning line on stderr (shown even under WSSS_QUIET, on rank 0)."""
    if is_main_process():
        err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def plain(value: object) -> Text:
    """A table cell shown exactly as it is (a class named `[/]` is not markup)."""
    return value if isinstance(value, Text) else Text(str(value))


def print_table(table: Table) -> None:
    if not quiet():
        console.print(table)


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}"  # None or NaN


def scores_table(title: str, scores) -> Table:
    """Per-class IoU / precision / recall table followed by the mean."""
    table = Table(title=plain(title))
    table.add_column("class")
    for column in ("IoU %", "precision %", "recall %", "FP rate %", "FN rate %"):
        table.add_column(column, justify="right")
    for i, name in enumerate(scores.class_names):
        table.add_row(
            plain(name),
            fmt_pct(scores.iou[i]),
            fmt_pct(scores.precision[i]),
            fmt_pct(scores.recall[i]),
            fmt_pct(scores.fp_rate[i]),
            fmt_pct(scores.fn_rate[i]),
        )
    table.add_section()
    table.add_row("[bold]mIoU", f"[bold]{fmt_pct(scores.miou)}", "", "", "", "")
    table.add_row("pixel acc.", fmt_pct(scores.pixel_accuracy), "", "", "", "")
    return table


def key_value_table(title: str, rows: Sequence[tuple[str, object]]) -> Table:
    table = Table(title=plain(title))
    table.add_column("item")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(plain(key), plain(value))
    return table

"""Terminal output: one progress-bar style and one score table for every stage.

Library code reports through these helpers, so a stage run from Python or under torchrun
prints only on rank 0 and tests can silence it. Text that can hold user strings (paths,
class names, ids) enters rich only here, and never as markup: `info` prints plain text
unless told otherwise, `warn` escapes its message, tables take their cells as plain `Text`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

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


def make_progress(unit: str = "img", every: int | None = None) -> Progress | LineProgress:
    """A live bar on a terminal; plain lines where stderr is a file or a pipe (a batch job's
    log): one every `every` items (a trainer: each epoch), else every tenth of the total."""
    if not err_console.is_terminal and not quiet():
        return LineProgress(unit, every)
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


class LineProgress:
    """Progress as whole lines, for logs: what a rich bar shows (count, share, rate, elapsed,
    ETA, status), printed at the steps it is due and at the end, never cut to a width.
    Also one line at least every `seconds`, so a slow step still shows the job is alive."""

    def __init__(self, unit: str = "img", every: int | None = None, seconds: float = 300.0):
        self.unit, self.every, self.seconds = unit, every, seconds
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks.values():
            if task["completed"] != task["printed"]:
                self._print(task)

    def start(self) -> None:
        """Nothing to restart: lines do not hold the terminal (rich's Progress API)."""

    def stop(self) -> None:
        """Nothing to stop (rich's Progress API)."""

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 status: str = "", **_: Any) -> int:  # fmt: skip
        task_id = len(self.tasks)
        now = time.perf_counter()
        step = self.every or (max(1, math.ceil(total / 10)) if total else None)
        self.tasks[task_id] = {"description": description, "total": total, "step": step,
                               "completed": completed, "started": completed, "status": status,
                               "t0": now, "last": now, "printed": completed}  # fmt: skip
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, advance: float = 0, **fields: Any) -> None:
        task = self.tasks[task_id]
        before = task["completed"]
        task["completed"] = before + advance
        task["status"] = fields.get("status", task["status"])
        step, now = task["step"], time.perf_counter()
        crossed = step is not None and int(task["completed"] // step) > int(before // step)
        done = task["total"] is not None and task["completed"] >= task["total"] > before
        if crossed or done or now - task["last"] >= self.seconds:
            self._print(task)

    def _print(self, task: dict[str, Any]) -> None:
        now = time.perf_counter()
        task["last"], task["printed"] = now, task["completed"]
        elapsed = now - task["t0"]
        done, total = task["completed"], task["total"]
        rate = (done - task["started"]) / elapsed if elapsed > 0 else 0.0
        count = f"{done:g}/{total:g} {self.unit}" if total else f"{done:g} {self.unit}"
        share = f" ({100 * done / total:.0f}%)" if total else ""
        eta = _clock((total - done) / rate) if total and rate > 0 else "-"
        status = f"  {task['status']}" if task["status"] else ""
        line = (f"{task['description']}: {count}{share}  {rate:.1f} {self.unit}/s  "
                f"elapsed {_clock(elapsed)}  eta {eta}{status}")  # fmt: skip
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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

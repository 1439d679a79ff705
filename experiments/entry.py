"""What the experiments' entry points share: a one-command Typer app, and user errors printed
as one line, as `wsss` prints them."""

from __future__ import annotations

import sys

import typer

DEVICE_HELP = "auto (CUDA when available), cpu or cuda."
# The tuning experiments' --amp: their figures in docs/ were measured in fp32 on the CPU
# (gpu: fp32 there), before bf16 became the package's default (wsss.amp.AMP_DEFAULT).
MEASURED_AMP = "gpu"


def app() -> typer.Typer:
    """A one-command Typer app (`python experiments/<name>.py [OPTIONS]`); the command's
    docstring is its help."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def main(typer_app: typer.Typer) -> None:
    """Run the app; a WsssError becomes `error: <problem>` and its exit code, no traceback."""
    from rich.markup import escape

    from wsss.errors import WsssError
    from wsss.ui import err_console

    try:
        typer_app()
    except WsssError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)  # fmt: skip
        sys.exit(exc.exit_code)


def names(items: list[str] | None) -> tuple[str, ...]:
    """Repeatable, comma-separated names as one tuple."""
    return tuple(n.strip() for item in items or [] for n in item.split(",") if n.strip())

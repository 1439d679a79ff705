"""Entry point of the `wsss` command: builds the Typer app and turns user errors into one line."""

from __future__ import annotations

import sys

import typer

import wsss
from cli import commands, pipeline_commands

app = typer.Typer(
    name="wsss",
    help=(
        "Weakly-supervised semantic segmentation with Puzzle-CAM.\n\n"
        "Stages: demo-data/prepare-voc/prepare-coco -> train-cam -> make-cam -> eval-cam "
        "-> make-pseudo -> train-seg -> predict -> eval. Every stage is resumable and writes a "
        "manifest next to its outputs."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wsss {wsss.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Weakly-supervised semantic segmentation with Puzzle-CAM."""


commands.register(app)
pipeline_commands.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become `error: <file>: <problem>` and exit code 2."""
    from rich.markup import escape

    from wsss.errors import WsssError
    from wsss.ui import err_console

    try:
        code = app(args=argv, prog_name="wsss", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into a returned 130 outside standalone mode
            raise KeyboardInterrupt
    except WsssError as exc:
        message = escape(str(exc))  # a path like "runs/[v2]" is not rich markup
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted[/] (outputs written so far are complete; re-run to resume)"
        )
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 1
    except Exception as exc:  # click usage errors and the like
        if isinstance(exc, _usage_error_types()):
            exc.show()  # type: ignore[attr-defined]
            return exc.exit_code  # type: ignore[attr-defined]
        raise
    return 0


def _usage_error_types() -> tuple[type[Exception], ...]:
    """click's ClickException; typer >= 0.29 raises the one of its bundled copy of click."""
    types: list[type[Exception]] = []
    try:
        from typer._click.exceptions import ClickException as BundledClickException

        types.append(BundledClickException)
    except ImportError:  # typer < 0.29 uses click itself
        pass
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # not installed with typer >= 0.29
        pass
    return tuple(types)


if __name__ == "__main__":
    sys.exit(main())

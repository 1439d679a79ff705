"""User-facing errors.

Anything the user can fix (a missing file, a bad option, a corrupt input) is raised as
`WsssError` with a one-line message naming the file and the problem. The CLI prints it
without a traceback and exits non-zero; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class WsssError(Exception):
    """An error caused by the user's input, reported as one line."""

    exit_code = 2

    def __str__(self) -> str:
        # A DataLoader worker's exception is re-raised by torch as `type(text)`, the text
        # holding the worker's whole traceback; its last line is the original message.
        text = super().__str__()
        if text.startswith(f"Caught {type(self).__name__} ") and "\nOriginal Traceback" in text:
            last = text.rstrip().rsplit("\n", 1)[-1]
            return last.split(": ", 1)[-1]
        return text


def file_error(path: str | Path, problem: str) -> WsssError:
    """Build the standard `<file>: <problem>` error."""
    return WsssError(f"{path}: {problem}")


def check_range(name: str, value: float, low: float, high: float) -> float:
    """Reject an option value outside [low, high] with a message naming the option."""
    if not (low <= value <= high):
        raise WsssError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_count(name: str, value: int | None, minimum: int = 1) -> int | None:
    """Reject a count option (batch size, workers, epochs...) below `minimum`, the same way
    for every command; None (the option's automatic default) passes."""
    if value is not None and (isinstance(value, bool) or value < minimum):
        raise WsssError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise WsssError(f"{name} must be one of {'|'.join(map(str, choices))}, got '{value}'")


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise WsssError(f"{name} must be positive, got {value}")

"""The skeleton of a per-image stage (make-cam, make-rw, make-pseudo, predict).

plan -> loop -> finish: `PerImageRun` plans the output folder (what is left, which ids are this
process's, refusal of changed settings; see `wsss.resume`), times the loop behind one progress
bar, and at the end marks the manifest complete and returns a `PerImageResult`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from wsss.errors import file_error
from wsss.resume import finish_outputs, output_path, plan_outputs
from wsss.ui import make_progress


def check_finite_outputs(
    finite: Sequence[bool], ids: Sequence[str], image_path: Any, checkpoint: str | Path
) -> None:
    """One flag per image of a batch (read with the batch, so the check costs no wait for the
    device): a NaN or infinite network output stops the stage naming the image, instead of
    all-NaN CAMs or all-background labels written as if they were results."""
    for image_id, ok in zip(ids, finite, strict=True):
        if not ok:
            raise file_error(
                image_path(image_id),
                f"the network's output for this image is not finite (NaN or inf) with "
                f"{checkpoint}; nothing was written for it (weights that overflow, or a "
                "damaged checkpoint)",
            )


class Advance(Protocol):
    def __call__(self, images: int = 1) -> None: ...


@dataclass
class PerImageResult:
    """What a per-image stage did; `what` names its files in the summary ("CAM files")."""

    out: Path
    total: int
    written: int
    skipped: int
    seconds: float
    files: int
    what: str = "files"
    overlays: list[Path] | None = None  # None: the stage draws no overlays

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def head_rows(self) -> list[tuple[str, object]]:
        return [
            ("images in split", self.total),
            ("written now", self.written),
            ("finished before (skipped)", self.skipped),
            (f"{self.what} present", self.files),
        ]

    def timing_rows(self) -> list[tuple[str, object]]:
        return [("time", f"{self.seconds:.1f} s"), ("images/s", f"{self.images_per_second:.2f}")]

    def summary_rows(self) -> list[tuple[str, object]]:
        rows = self.head_rows() + self.timing_rows()
        if self.overlays is not None:
            rows.append(("overlays", len(self.overlays)))
        return [*rows, ("output", self.out)]


R = TypeVar("R", bound=PerImageResult)


class PerImageRun:
    """One run of a per-image stage over `ids`, writing `<out>/<id><suffix>` files."""

    def __init__(
        self,
        stage: str,
        out: str | Path,
        ids: Sequence[str],
        suffix: str,
        params: dict[str, Any],
        signature: Sequence[str],
    ) -> None:
        self.stage, self.ids, self.suffix = stage, list(ids), suffix
        self.plan = plan_outputs(out, ids, suffix, stage, params, signature)
        self.seconds = 0.0

    @property
    def out(self) -> Path:
        return self.plan.out

    @property
    def todo(self) -> list[str]:
        return self.plan.todo

    def output(self, image_id: str) -> Path:
        return output_path(self.plan.out, image_id, self.suffix)

    @contextmanager
    def loop(self, total: int | None = None) -> Iterator[Advance]:
        """A timed progress bar over `total` items (default: the images left to write)."""
        total = len(self.plan.todo) if total is None else total
        start = time.perf_counter()
        with make_progress() as progress:
            task = progress.add_task(
                self.stage, total=total, status=f"{self.plan.skipped} done before"
            )
            yield lambda images=1: progress.advance(task, images)
        self.seconds = time.perf_counter() - start

    def finish(
        self,
        what: str,
        overlays: list[Path] | None = None,
        result: type[R] = PerImageResult,  # type: ignore[assignment]
        **extra: Any,
    ) -> R:
        """Mark the manifest complete when every file of the split exists; `extra` fills the
        fields of a stage's own `result` class."""
        return result(
            out=self.plan.out,
            total=len(self.ids),
            written=len(self.plan.todo),
            skipped=self.plan.skipped,
            seconds=self.seconds,
            files=finish_outputs(self.plan, self.ids, self.suffix, self.stage),
            what=what,
            overlays=overlays,
            **extra,
        )

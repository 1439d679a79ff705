"""`wsss report`: write RUN_DIR/report.html, one self-contained page about a pipeline run.

The page is assembled by `wsss.report_html` from whatever the run directory holds; this
stage writes it atomically and says what the run lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsss.configs.datasets import ReportConfig
from wsss.errors import WsssError
from wsss.io import atomic_write_bytes
from wsss.report_html import REPORT_NAME, build_report


@dataclass
class ReportResult:
    path: Path
    sections: list[str]
    missing: list[str]
    damaged: list[str]

    def summary_rows(self) -> list[tuple[str, object]]:
        return [
            ("report", self.path),
            ("size", f"{self.path.stat().st_size / 1024:.0f} KiB"),
            ("not in this run", len(self.missing)),
            ("damaged files (left out)", len(self.damaged)),
        ]

    def notes(self) -> list[str]:
        lines = [f"not in this run: {line}" for line in self.missing]
        return lines + [f"damaged: {line}" for line in self.damaged]


def run(config: ReportConfig) -> ReportResult:
    if config.samples < 0:
        raise WsssError(f"--samples must be >= 0, got {config.samples}")
    report = build_report(Path(config.run_dir), samples=config.samples)
    path = Path(config.out) if config.out else Path(config.run_dir) / REPORT_NAME
    atomic_write_bytes(path, report.html.encode("utf-8"))
    return ReportResult(
        path=path, sections=report.sections, missing=report.missing, damaged=report.damaged
    )

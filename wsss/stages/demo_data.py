"""`wsss demo-data`: the synthetic demo dataset (wsss.data.demo) as a stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wsss.configs.datasets import DemoDataConfig, generator_args
from wsss.data.demo import DemoSummary, generate_demo

__all__ = ["DemoDataConfig", "DemoDataResult", "run"]


@dataclass
class DemoDataResult:
    summary: DemoSummary

    def summary_rows(self) -> list[tuple[str, object]]:
        s = self.summary
        return [
            ("images", f"{s.train} train + {s.val} val of {s.size} px"),
            ("classes", ", ".join(s.classes)),
            ("dataset", s.root),
        ]


def run(config: DemoDataConfig) -> DemoDataResult:
    return DemoDataResult(generate_demo(config.out, **generator_args(asdict(config))))

"""Every stage, registered once, by its config class: the class declares the stage's name
(the command and the pipeline step), what it writes, its options (`wsss.option`) and, as its
docstring, the command's help; `wsss.stages.<key>.run(config)` does the work. The CLI makes
one command per entry, the pipeline's `--set` takes the entries' keys, the tests walk it."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Literal

from wsss.configs.checkpoints import ExportConfig, ImportCheckpointConfig
from wsss.configs.datasets import DemoDataConfig, PrepareCocoConfig, PrepareVocConfig, ReportConfig
from wsss.configs.inference import MakeCamConfig, MakeRwConfig, PredictConfig
from wsss.configs.labels import MakePseudoConfig, PickThresholdConfig
from wsss.configs.scoring import EvalCamConfig, EvalConfig
from wsss.configs.trainers import TrainAffConfig, TrainCamConfig, TrainSegConfig
from wsss.errors import WsssError

Output = Literal["dataset", "model", "cams", "labels", "threshold", "scores", "report"]


@dataclass(frozen=True)
class Stage:
    """A stage, as its config class declares it (STAGE, OUTPUT, MODULE, the docstring)."""

    config: type

    @property
    def name(self) -> str:  # "make-cam": the command and the pipeline's step
        return str(self.config.STAGE)  # type: ignore[attr-defined]

    @property
    def key(self) -> str:  # "make_cam": the `--set` stage name
        return self.name.replace("-", "_")

    @property
    def output(self) -> Output:
        return self.config.OUTPUT  # type: ignore[attr-defined,no-any-return]

    @property
    def module(self) -> str:  # holds `run(config) -> result`
        return getattr(self.config, "MODULE", f"wsss.stages.{self.key}")

    @property
    def help(self) -> str:
        return inspect.cleandoc(self.config.__doc__ or "")

    def run(self, config: Any) -> Any:
        """The stage's `run`, imported only now (most stages load torch)."""
        return importlib.import_module(self.module).run(config)


# In the order of a run, as `wsss --help` lists them.
STAGES: tuple[Stage, ...] = tuple(map(Stage, (
    DemoDataConfig, PrepareVocConfig, PrepareCocoConfig, TrainCamConfig, MakeCamConfig,
    EvalCamConfig, PickThresholdConfig, MakePseudoConfig, TrainAffConfig, MakeRwConfig,
    TrainSegConfig, PredictConfig, EvalConfig, ReportConfig, ImportCheckpointConfig, ExportConfig,
)))  # fmt: skip
BY_KEY: dict[str, Stage] = {stage.key: stage for stage in STAGES}


def stage(key: str) -> Stage:
    """A stage by its key ("make_cam") or name ("make-cam")."""
    found = BY_KEY.get(key.replace("-", "_"))
    if found is None:
        raise WsssError(f"unknown stage '{key}' (stages: {', '.join(BY_KEY)})")
    return found

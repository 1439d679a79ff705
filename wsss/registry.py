"""Every stage, registered once: its name (the command and the pipeline step), its config
class (its options, `wsss.option`), the module whose `run(config)` does the work, what it
writes, and its one-paragraph help. The CLI makes one command per entry, the pipeline's `--set`
takes the entries' keys, and the tests walk the list."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from wsss.configs.datasets import DemoDataConfig, PrepareCocoConfig, PrepareVocConfig, ReportConfig
from wsss.configs.inference import MakeCamConfig, MakeRwConfig, PredictConfig
from wsss.configs.labels import MakePseudoConfig, PickThresholdConfig
from wsss.configs.scoring import EvalCamConfig, EvalConfig
from wsss.configs.trainers import TrainAffConfig, TrainCamConfig, TrainSegConfig
from wsss.errors import WsssError

Output = Literal["dataset", "model", "cams", "labels", "threshold", "scores", "report"]


@dataclass(frozen=True)
class Stage:
    name: str  # "make-cam": the command; its key "make_cam" is the `--set` stage name
    config: type
    module: str  # holds `run(config) -> result`
    output: Output
    help: str

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")

    def run(self, config: Any) -> Any:
        """The stage's `run`, imported only now (most stages load torch)."""
        return importlib.import_module(self.module).run(config)


STAGES: tuple[Stage, ...] = (
    Stage("demo-data", DemoDataConfig, "wsss.stages.demo_data", "dataset",
          "Generate the synthetic demo dataset: large bodies with small discriminative parts.\n\n"
          "The knobs (docs/demo.md) make dataset variants; their defaults are the demo itself."),
    Stage("prepare-voc", PrepareVocConfig, "wsss.stages.prepare_voc", "dataset",
          "Check a VOC tree; convert SBD masks; write the train_aug list and a label cache."),
    Stage("prepare-coco", PrepareCocoConfig, "wsss.stages.prepare_coco", "dataset",
          "Convert COCO 2014 to the toolkit's layout: masks, labels.json, lists, classes.txt."),
    Stage("train-cam", TrainCamConfig, "wsss.stages.train_cam", "model",
          "Train the Puzzle-CAM classifier from image-level labels (--pieces 1 --alpha 0: "
          "plain CAM)."),
    Stage("make-cam", MakeCamConfig, "wsss.stages.make_cam", "cams",
          "Multi-scale + flip CAMs, one file per image (keys, cam at stride 4, hr_cam)."),
    Stage("eval-cam", EvalCamConfig, "wsss.stages.eval_cam", "scores",
          "Sweep the background threshold: best threshold, its mIoU, per-class IoU, the curve."),
    Stage("pick-threshold", PickThresholdConfig, "wsss.stages.pick_threshold", "threshold",
          "The background threshold from the CAMs alone (no masks): the mean of the strongest "
          "labelled-class CAM over the split's pixels; recorded in "
          "CAMS/label_free_threshold.json."),
    Stage("make-pseudo", MakePseudoConfig, "wsss.stages.make_pseudo", "labels",
          "CAMs -> pseudo label PNGs (VOC palette, 255 = ignore): threshold, dense CRF, scores."),
    Stage("train-aff", TrainAffConfig, "wsss.stages.train_aff", "model",
          "Learn pixel affinities from confident-region labels (AffinityNet / IRN)."),
    Stage("make-rw", MakeRwConfig, "wsss.stages.make_rw", "cams",
          "Refine CAMs by a random walk over learned affinities; writes CAM files for eval-cam."),
    Stage("train-seg", TrainSegConfig, "wsss.stages.train_seg", "model",
          "Train DeepLabv3+ on pseudo labels (cross-entropy, 255 ignored)."),
    Stage("predict", PredictConfig, "wsss.stages.predict", "labels",
          "Segment a split with a trained DeepLab: palette PNGs, then score them with "
          "`wsss eval`."),
    Stage("eval", EvalConfig, "wsss.stages.evaluate", "scores",
          "Confusion matrix, per-class IoU, precision/recall, FP/FN rates and mIoU."),
    Stage("report", ReportConfig, "wsss.stages.report", "report",
          "Summary, training curves, CAM threshold curve, per-class IoU and sample grids, as one "
          "offline HTML file (figures inlined); says what the run lacks."),
)  # fmt: skip

BY_KEY: dict[str, Stage] = {stage.key: stage for stage in STAGES}


def stage(key: str) -> Stage:
    """A stage by its key ("make_cam") or name ("make-cam")."""
    found = BY_KEY.get(key.replace("-", "_"))
    if found is None:
        raise WsssError(f"unknown stage '{key}' (stages: {', '.join(BY_KEY)})")
    return found

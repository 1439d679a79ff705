"""`wsss pick-threshold`: the background threshold of a CAM folder, from the CAMs alone.

No pixel ground truth is read: the rule (`wsss.cam_threshold`) uses the CAM files of the
split's images and their image-level labels only. The choice is recorded in
`<cams>/label_free_threshold.json`, which `make-pseudo --threshold auto` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsss.cam_threshold import RULES, ThresholdChoice, pick_and_record
from wsss.configs.labels import PickThresholdConfig
from wsss.data.voc import VocDataset
from wsss.errors import file_error


@dataclass
class PickThresholdResult:
    choice: ThresholdChoice
    json_path: Path | None  # None: the CAM folder takes no file, nothing recorded

    def summary_rows(self) -> list[tuple[str, object]]:
        return [
            ("threshold", f"{self.choice.threshold:.4f}"),
            ("rule", f"{self.choice.rule}: {RULES[self.choice.rule].text}"),
            ("images with CAMs", self.choice.images),
            ("JSON", self.json_path or "not recorded (the CAM folder is read-only)"),
        ]


def run(config: PickThresholdConfig) -> PickThresholdResult:
    cams = Path(config.cams)
    if not cams.is_dir():
        raise file_error(cams, "CAM directory not found")
    voc = VocDataset.open(config.data, config.class_list)
    ids = voc.split_ids(config.split)
    choice, recorded = pick_and_record(cams, ids, voc.num_classes, rule=config.threshold_rule)
    return PickThresholdResult(choice=choice, json_path=recorded.path)

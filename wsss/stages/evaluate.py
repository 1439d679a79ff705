"""`wsss eval`: score label PNGs against ground truth with the one confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsss.configs.scoring import EvalConfig
from wsss.data.classes import class_names_with_background
from wsss.data.groundtruth import GroundTruth
from wsss.data.palette import read_label_png
from wsss.data.voc import check_mask, read_id_list
from wsss.errors import WsssError, file_error
from wsss.io import MANIFEST_NAME, read_manifest, safe_child, write_json
from wsss.metrics import ConfusionMatrix, SegmentationScores, reference_note
from wsss.resume import check_made_for
from wsss.ui import Table, scores_table, track


@dataclass
class EvalResult:
    scores: SegmentationScores
    json_path: Path
    missing: list[str]

    def summary_rows(self) -> list[tuple[str, object]]:
        return []

    def tables(self) -> list[Table]:
        return [scores_table(f"{self.json_path.parent} ({self.scores.images} images)", self.scores)]

    def notes(self) -> list[str]:
        missing = [f"{len(self.missing)} predictions missing, skipped"] if self.missing else []
        return [*missing, reference_note(self.scores), f"scores written to {self.json_path}"]


def run(config: EvalConfig) -> EvalResult:
    pred_dir = Path(config.pred)
    if not pred_dir.is_dir():
        raise file_error(pred_dir, "prediction directory not found")
    gt = GroundTruth(Path(config.gt), config.class_list)
    manifest = read_manifest(pred_dir)
    if manifest is not None and (gt.dataset is not None or config.class_list is not None):
        check_made_for(pred_dir / MANIFEST_NAME, manifest["params"], gt.classes, "labels")
    ids = _resolve_ids(config, gt, pred_dir)
    classes = class_names_with_background(gt.classes)
    matrix = ConfusionMatrix(len(classes), classes)
    missing: list[str] = []
    for image_id in track(ids, len(ids), "eval"):
        pred_path = safe_child(pred_dir, image_id, ".png")
        if not pred_path.is_file():
            if config.skip_missing:
                missing.append(image_id)
                continue
            raise file_error(
                pred_path,
                f"prediction for '{image_id}' not found (use --skip-missing to score the rest)",
            )
        target = gt.mask(image_id)
        pred = read_label_png(pred_path)
        if pred.shape != target.shape:
            raise file_error(
                pred_path,
                f"size {pred.shape[1]}x{pred.shape[0]} differs from ground truth "
                f"{target.shape[1]}x{target.shape[0]}",
            )
        check_mask(pred, pred_path, len(gt.classes))
        matrix.update(target, pred, name=str(pred_path), ignore_pred=True)
    if matrix.images == 0:
        raise WsssError(f"{pred_dir}: no prediction evaluated")
    scores = matrix.compute()
    scores.extra["missing"] = missing
    json_path = Path(config.json_path) if config.json_path else pred_dir / "eval.json"
    write_json(json_path, scores.to_json())
    return EvalResult(scores=scores, json_path=json_path, missing=missing)


def _resolve_ids(config: EvalConfig, gt: GroundTruth, pred_dir: Path) -> list[str]:
    if config.list_file is not None:
        return read_id_list(config.list_file)
    if config.split is not None:
        if gt.dataset is None:
            raise WsssError("--split needs --gt to be a dataset root; pass --list FILE instead")
        return gt.dataset.split_ids(config.split)
    manifest = read_manifest(pred_dir)
    split = (manifest or {}).get("params", {}).get("split")
    if gt.dataset is not None and split:
        return gt.dataset.split_ids(split)
    return gt.default_ids()

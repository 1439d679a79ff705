"""The Puzzle-CAM loss terms, each switched on alone, same everything (`make ablation`,
experiments/ablation.py).

Every variant is trained with identical data, recipe and seed, then measured three ways:
CAM mIoU at the best background threshold (train), classification mAP (val), and how the
normalised CAM of each object spreads over it — its mean inside the small discriminative
part vs over the rest of the body (the demo generator writes the part masks). A plain CAM
concentrates on the part; the puzzle module is meant to spread it over the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.entry import MEASURED_AMP
from wsss.camfile import find_cam_file, load_cam_file
from wsss.configs.datasets import generator_args
from wsss.data.demo import PART_DIR, ensure_demo
from wsss.data.palette import read_label_png
from wsss.data.voc import VocDataset
from wsss.engine.finished import train_unless_finished
from wsss.io import ensure_dir, read_json, safe_child, write_json
from wsss.recipes import DEMO, PROFILES, VARIANTS
from wsss.ui import print_table


@dataclass
class AblationConfig:
    out: Path
    recipe_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"re_level": "cam"}
    variants: tuple[str, ...] = tuple(VARIANTS)
    device: str = "auto"
    amp: str = MEASURED_AMP  # every network stage's --amp
    workers: int | None = None
    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    # the reference's settings under the recipe's (docs/parity.md, "The reference profile")
    profile: str = "wsss"

    def train_cam_options(self) -> dict[str, Any]:
        """train-cam's settings: the profile's under the recipe's under the overrides."""
        profile = PROFILES[self.profile].get("train_cam", {})
        return {**profile, **DEMO.train_cam, **self.recipe_overrides}

    def make_cam_options(self) -> dict[str, Any]:
        """make-cam's settings besides the scales: the profile's (its resize)."""
        return dict(PROFILES[self.profile].get("make_cam", {}))


@dataclass
class AblationResult:
    rows: list[dict[str, Any]]
    json_path: Path


def run(config: AblationConfig) -> AblationResult:
    out = ensure_dir(config.out)
    data = ensure_demo(out / "data", generator_args(DEMO.demo or {}))
    voc = VocDataset.open(data)
    for name in config.variants:
        result_path = out / _slug(name) / "result.json"
        if not result_path.is_file():  # finished variants are not trained again
            write_json(result_path, _run_variant(name, config, data, voc, out / _slug(name)))
    rows = [
        read_json(out / _slug(name) / "result.json")
        for name in VARIANTS
        if (out / _slug(name) / "result.json").is_file()
    ]
    summary = {"recipe": config.train_cam_options(), "profile": config.profile,
               "make_cam": config.make_cam_options(), "rows": rows}  # fmt: skip
    json_path = write_json(out / "ablation.json", summary)
    from wsss.report import cam_comparison_figure

    cam_dirs = {row["variant"]: out / _slug(row["variant"]) / "cams" for row in rows}
    cam_comparison_figure(out / "cams.png", data, cam_dirs, voc.split_ids(DEMO.cam_eval_split)[:6])
    print_table(_table(rows))
    return AblationResult(rows=rows, json_path=json_path)


def _run_variant(
    name: str, config: AblationConfig, data: Path, voc: VocDataset, out: Path
) -> dict[str, Any]:
    from wsss.stages.eval_cam import EvalCamConfig
    from wsss.stages.eval_cam import run as eval_cam
    from wsss.stages.make_cam import MakeCamConfig
    from wsss.stages.make_cam import run as make_cam
    from wsss.stages.train_cam import TrainCamConfig
    from wsss.stages.train_cam import run as train_cam

    options = {**config.train_cam_options(), **VARIANTS[name]}
    extra = {"loader_workers": config.workers} if config.workers is not None else {}
    checkpoint = train_unless_finished(
        train_cam,
        TrainCamConfig(data=data, out=out / "cam_model", split=DEMO.cam_split, resume=True,
                       device=config.device, amp=config.amp, **options, **extra),
    )  # fmt: skip
    cams = out / "cams"
    make_cam(MakeCamConfig(checkpoint=checkpoint, data=data, split=DEMO.cam_split, out=cams,
                           scales=config.scales, device=config.device, amp=config.amp,
                           **config.make_cam_options()))  # fmt: skip
    sweep = eval_cam(EvalCamConfig(cams=cams, gt=data, split=DEMO.cam_eval_split)).sweep
    inside, outside = part_body_means(voc, cams, voc.split_ids(DEMO.cam_eval_split))
    return {
        "variant": name,
        "options": VARIANTS[name],
        "overrides": {key: str(value) for key, value in config.recipe_overrides.items()},
        "profile": config.profile,
        "amp": config.amp,
        # both picked on ground truth: a comparison of CAMs at their best, an oracle figure
        "cam_miou": sweep.best_miou,
        "best_threshold": sweep.best_threshold,
        "threshold_choice": "oracle",
        "val_map": classification_map(checkpoint, voc, voc.split_ids("val"), config.device),
        "cam_in_part": inside,
        "cam_in_body_outside_part": outside,
    }


def part_body_means(voc: VocDataset, cam_dir: Path, ids: list[str]) -> tuple[float, float]:
    """Mean normalised CAM of each object's class inside its part vs over the rest of its body."""
    sums = np.zeros(2)
    counts = np.zeros(2)
    for image_id in ids:
        record = load_cam_file(find_cam_file(cam_dir, image_id), voc.num_classes)
        gt = voc.load_mask(image_id)
        part = read_label_png(safe_child(voc.root / PART_DIR, image_id, ".png"))
        for k, key in enumerate(record.keys[1:]):
            in_part = part == key
            in_body = (gt == key) & ~in_part
            cam = record.hr_cam[k]
            sums += (cam[in_part].sum(), cam[in_body].sum())
            counts += (in_part.sum(), in_body.sum())
    means = sums / np.maximum(counts, 1)
    return float(means[0]), float(means[1])


def classification_map(checkpoint: Path, voc: VocDataset, ids: list[str], device: str) -> float:
    """Mean average precision (percent) of the classifier's GAP logits, single scale."""
    import torch

    from wsss.checkpoints import load_model
    from wsss.data.loader import image_loader
    from wsss.engine.device import resolve_device
    from wsss.inference import Predictor
    from wsss.metrics import average_precision
    from wsss.models.classifier import CamClassifier

    torch_device = resolve_device(device)
    model, _ = load_model(checkpoint, CamClassifier.KIND, voc.classes)
    predictor = Predictor.prepare(model, torch_device)
    scores = np.zeros((len(ids), voc.num_classes), dtype=np.float32)
    with torch.inference_mode():
        for batch in image_loader(voc, ids, 16, 0, torch_device):
            logits = CamClassifier.logits(predictor(predictor.to_device(batch["image"])))
            scores[batch["index"]] = logits.float().cpu().numpy()
    targets = np.stack([voc.image_labels(i) for i in ids])
    return float(np.nanmean(average_precision(scores, targets)))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def _table(rows: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title="Puzzle-CAM ablation on the demo data")
    for column in ("variant", "CAM mIoU % (train, oracle)", "oracle threshold", "val mAP %",
                   "CAM in part", "CAM in rest of body"):  # fmt: skip
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(
            row["variant"],
            f"{row['cam_miou']:.2f}",
            f"{row['best_threshold']:.2f}",
            f"{row['val_map']:.2f}",
            f"{row['cam_in_part']:.3f}",
            f"{row['cam_in_body_outside_part']:.3f}",
        )
    return table

"""Segmenter levers on finished quality-suite runs: what closes the gap to its labels?

Each arm trains the run's segmenter recipe again (from the run's CAM classifier, as the
pipeline does) on other labels or with one recipe value changed, predicts val (1 + flip)
and scores it; `--diagnose` scores the run's own segmenter on its training images (against
the masks and against its labels) and on val, each also restricted to the image's true
classes. docs/quality.md ("Segmenter levers") holds the results.

    python benchmarks/segmenter_levers.py RUN [RUN ...] --arms base,seed1,b8 [--diagnose]

RUN is a suite run folder (`OUT/runs/<variant>/seed<S>/pcl`). Arms write into
`RUN/lever_<arm>_*` and resume; the results go to RUN/levers.json.

Label arms: consensus (CRF labels where the confident labels agree, 255 elsewhere), self
(the segmenter's own train predictions restricted to each image's labels: one
self-training round), selfcrf (CRF labels where that prediction agrees, 255 elsewhere).
Recipe arms: base (the run's recipe again: reproduces the run), seed1, b8 (batch 8),
lr2 (lr 2e-3), e30 (30 epochs), e30s1 (30 epochs, seed 1), aspp123 (ASPP rates 1, 2, 3
instead of 6, 12, 18).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.checkpoints import load_model
from wsss.data.palette import IGNORE, read_label_png, save_label_png
from wsss.data.transforms import to_chw_uint8
from wsss.data.voc import VocDataset
from wsss.inference import Predictor, TtaConfig, segment_probs
from wsss.metrics import ConfusionMatrix
from wsss.models.deeplab import DeepLabV3Plus
from wsss.stages.evaluate import EvalConfig
from wsss.stages.evaluate import run as evaluate
from wsss.stages.predict import PredictConfig
from wsss.stages.predict import run as predict
from wsss.stages.train_seg import TrainSegConfig
from wsss.stages.train_seg import run as train_seg

RECIPE_ARMS: dict[str, dict[str, Any]] = {
    "base": {},
    "seed1": {"seed": 1},
    "b8": {"batch_size": 8},
    "lr2": {"lr": 2e-3},
    "e30": {"epochs": 30},
    "e30s1": {"epochs": 30, "seed": 1},
    "aspp123": {},
}
LABEL_ARMS = ("consensus", "self", "selfcrf")
TTA = TtaConfig(scales=(1.0,), flip=True)  # the demo recipe's predict


def scaled_aspp_rates(rates: tuple[int, ...]) -> None:
    """DeepLab's ASPP rates are for a 32 x 32 map (512 px crops at stride 16); on a 96 px
    crop's 6 x 6 map every dilated tap falls in the padding. Patched for this process."""
    init = DeepLabV3Plus.__init__

    @functools.wraps(init)
    def scaled(self: DeepLabV3Plus, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "aspp_rates": rates})

    DeepLabV3Plus.__init__ = scaled  # type: ignore[method-assign]


def segment(
    run: Path, voc: VocDataset, split: str, model: str
) -> dict[str, tuple[np.ndarray, ...]]:
    """Per image: the segmenter's labels, unrestricted and restricted to the image's classes."""
    net, _ = load_model(run / model / "final.pt", DeepLabV3Plus.KIND, voc.classes)
    predictor = Predictor.prepare(net, torch.device("cpu"))
    out = {}
    for image_id in voc.split_ids(split):
        image = to_chw_uint8(voc.load_image(image_id))[None]
        with torch.no_grad():
            probs = segment_probs(predictor, predictor.to_device(image), TTA)[0].clone()
        free = probs.argmax(0).to(torch.uint8).numpy()
        absent = torch.ones(probs.shape[0], dtype=torch.bool)
        absent[[0, *(c + 1 for c in voc.image_classes(image_id))]] = False
        probs[absent] = -1.0
        out[image_id] = (free, probs.argmax(0).to(torch.uint8).numpy())
    return out


def miou(voc: VocDataset, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """mIoU % of (reference, labels) pairs; labels' 255 pixels are left out."""
    matrix = ConfusionMatrix(voc.num_classes + 1)
    for reference, labels in pairs:
        matrix.update(reference, labels, ignore_pred=True)
    return float(matrix.compute().miou)


def diagnose(run: Path, voc: VocDataset) -> dict[str, float]:
    train = segment(run, voc, "train", "seg_model")
    val = segment(run, voc, "val", "seg_model")
    labels = {i: read_label_png(run / "pseudo" / f"{i}.png") for i in train}
    masks = {i: voc.load_mask(i) for i in [*train, *val]}
    return {
        "train_vs_masks": miou(voc, [(masks[i], p[0]) for i, p in train.items()]),
        "train_vs_masks_true_classes": miou(voc, [(masks[i], p[1]) for i, p in train.items()]),
        "train_vs_its_labels": miou(voc, [(labels[i], p[0]) for i, p in train.items()]),
        "val_vs_masks": miou(voc, [(masks[i], p[0]) for i, p in val.items()]),
        "val_vs_masks_true_classes": miou(voc, [(masks[i], p[1]) for i, p in val.items()]),
    }


def arm_labels(run: Path, voc: VocDataset, arm: str) -> Path:
    """The label folder an arm trains on (made once)."""
    if arm not in LABEL_ARMS:
        return run / "pseudo"
    folder = run / f"lever_{arm}_labels"
    if (folder / "done").exists():
        return folder
    folder.mkdir(exist_ok=True)
    ids = voc.split_ids("train")
    crf = {i: read_label_png(run / "pseudo" / f"{i}.png") for i in ids}
    if arm == "consensus":
        confident = {i: read_label_png(run / "pseudo_confident" / f"{i}.png") for i in ids}
        new = {i: np.where(crf[i] == confident[i], crf[i], IGNORE) for i in ids}
    else:
        own = {i: p[1] for i, p in segment(run, voc, "train", "seg_model").items()}
        agreeing = {i: np.where(crf[i] == own[i], crf[i], IGNORE) for i in ids}
        new = own if arm == "self" else agreeing
    for image_id, label in new.items():
        save_label_png(folder / f"{image_id}.png", label.astype(np.uint8))
    (folder / "done").write_text("")
    return folder


def run_arm(
    run: Path, voc: VocDataset, recipe: dict[str, Any], arm: str, amp: str = "gpu"
) -> dict[str, float]:
    """One lever's segmenter on a quality-suite run, in the run's precision `amp` (its spec
    holds it where not gpu, the fp32 these arms were measured in: docs/quality.md)."""
    labels = arm_labels(run, voc, arm)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe["train_seg"].items()}
    options |= RECIPE_ARMS.get(arm, {})
    model = run / f"lever_{arm}_seg"
    if not (model / "final.pt").exists():
        train_seg(
            TrainSegConfig(
                data=run / "data",
                out=model,
                split="train",
                labels=labels,
                resume=True,
                device="cpu",
                amp=amp,
                init=run / "cam_model" / "final.pt",
                **options,
            )
        )
    pred = run / f"lever_{arm}_pred"
    predict(PredictConfig(checkpoint=model / "final.pt", data=run / "data", split="val",
                          out=pred, scales=tuple(recipe["predict"]["scales"]),
                          flip=recipe["predict"]["flip"], device="cpu",
                          amp=amp))  # fmt: skip
    ids = voc.split_ids("train")
    pairs = [(voc.load_mask(i), read_label_png(labels / f"{i}.png")) for i in ids]
    ignored = np.mean([np.mean(label == IGNORE) for _, label in pairs])
    return {
        "labels_train_miou": miou(voc, pairs),
        "labels_ignored": float(ignored),
        "seg_val_miou": evaluate(EvalConfig(pred=pred, gt=run / "data", split="val")).scores.miou,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--arms", default="", help="comma-separated arms")
    parser.add_argument("--diagnose", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="the suite's: cores / jobs")
    args = parser.parse_args()
    arms = [arm for arm in args.arms.split(",") if arm]
    unknown = set(arms) - set(RECIPE_ARMS) - set(LABEL_ARMS)
    if unknown:
        parser.error(f"unknown arms: {', '.join(sorted(unknown))}")
    if "aspp123" in arms and len(arms) > 1:
        parser.error("aspp123 patches the model for the whole process: run it alone")
    if "aspp123" in arms:
        scaled_aspp_rates((1, 2, 3))
    torch.set_num_threads(args.threads)
    for run in args.runs:
        if not (run / "quality_run.json").is_file():
            parser.error(f"{run}: not a quality-suite run folder (no quality_run.json)")
        voc = VocDataset.open(run / "data")
        spec = json.loads((run / "quality_run.json").read_text())
        recipe, amp = spec["recipe"], spec.get("amp", "gpu")
        record = run / "levers.json"
        results = json.loads(record.read_text()) if record.is_file() else {}
        if args.diagnose:
            results["diagnosis"] = diagnose(run, voc)
        for arm in arms:
            results[arm] = run_arm(run, voc, recipe, arm, amp)
        record.write_text(json.dumps(results, indent=1) + "\n")
        print(run, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

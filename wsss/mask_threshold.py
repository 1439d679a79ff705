"""The background threshold picked on the pseudo labels of the few images that have masks.

Where the label-free rule misses (few objects much smaller than the image), masks drawn for
a few images choose better. They choose on the labels, not on the CAMs: the pseudo labels'
best threshold is not the CAMs' (the CRF moves it), and on the tuning set the CAM sweep's t
on 20 masked images left the labels worse than the label-free rule on 8 runs of 11, while
their own curve on 20 masked images came within 1.44 points of the all-mask best on average
on every run (docs/label_free_threshold.md, "A few masks").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsss.camfile import CamRecord, find_cam_file, load_cam_file
from wsss.crf import CrfParams
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import dir_writable, read_json, write_json
from wsss.metrics import ConfusionMatrix
from wsss.pseudo import PseudoParams, pseudo_label
from wsss.ui import info, track

# The thresholds tried: the pseudo labels' best lay in 0.15-0.55 on every tuning run
# (docs/label_free_threshold.md); a step of 0.05 keeps the CRFs to 14 per masked image.
MASK_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 15))
MASK_RULE = "masks"
# The pick, kept in the CAM folder: its CRFs cost a few seconds per masked image, and the
# pipeline resolves the threshold more than once (the summary, make-pseudo, each process).
RECORD = "mask_threshold.json"


@dataclass(frozen=True)
class MaskPick:
    threshold: float
    miou: float  # the labels' mIoU % there, on the masked images
    curve: list[tuple[float, float]]
    images: int

    def to_json(self) -> dict:
        return {"rule": MASK_RULE, "threshold": self.threshold, "miou": self.miou,
                "curve": [[t, miou if np.isfinite(miou) else None] for t, miou in self.curve],
                "images": self.images}  # fmt: skip

    def source(self, split: str) -> str:
        return (f"masks: the best pseudo-label mIoU ({self.miou:.2f}) of t = "
                f"{MASK_GRID[0]:g}...{MASK_GRID[-1]:g} on the {self.images} images of split "
                f"{split} with masks, picked on ground truth")  # fmt: skip


def label_matrices(
    image: np.ndarray,
    cam: CamRecord,
    gt: np.ndarray,
    num_classes: int,
    crf: CrfParams | None,
    bg_power: float | None,
    grid: Sequence[float] = MASK_GRID,
) -> np.ndarray:
    """T x N x N: one image's pseudo labels at each t of `grid` (threshold + `crf`) against
    its mask, as confusion matrices (rows ground truth)."""
    out = np.zeros((len(grid), num_classes + 1, num_classes + 1), np.int64)
    for k, t in enumerate(grid):
        matrix = ConfusionMatrix(num_classes + 1)
        matrix.update(gt, pseudo_label(image, cam, PseudoParams(t, crf, bg_power)))
        out[k] = matrix.matrix
    return out


def pick_on_masks(
    cam_dir: Path,
    voc: VocDataset,
    ids: Sequence[str],
    crf: CrfParams | None,
    bg_power: float | None,
    grid: Sequence[float] = MASK_GRID,
) -> MaskPick:
    """Label the images of `ids` that have masks at every t of `grid` (threshold + the run's
    CRF), score each t on those masks and keep the best (the lowest of ties). The pick is
    recorded in `cam_dir` (RECORD) and read back while the masked images, their masks, the
    CRF, bg_power and the grid are the same (a CAM folder belongs to one checkpoint)."""
    masked = [image_id for image_id in ids if voc.has_mask(image_id)]
    if not masked:
        raise WsssError(
            f"--threshold masks needs ground-truth masks of some of the {len(ids)} images; "
            f"{voc.root / 'SegmentationClass'} holds none of them"
        )
    key = _pick_key(voc, masked, crf, bg_power, grid)
    record = Path(cam_dir) / RECORD
    saved = _saved_pick(record, key)
    if saved is not None:
        info(f"threshold on masks: {saved.threshold:g}, as recorded in {record}")
        return saved
    pick = _pick(cam_dir, voc, masked, crf, bg_power, grid)
    if dir_writable(Path(cam_dir)):
        write_json(record, {**pick.to_json(), "key_sha1": key})
    return pick


def _pick_key(voc: VocDataset, masked: Sequence[str], crf: CrfParams | None,
              bg_power: float | None, grid: Sequence[float]) -> str:  # fmt: skip
    """What the pick depends on besides the CAMs: the masked images and their masks' bytes
    (a mask drawn or redrawn picks again), the CRF, bg_power and the grid."""
    digest = hashlib.sha1()
    for image_id in masked:
        digest.update(image_id.encode() + b"\0" + voc.mask_path(image_id).read_bytes())
    settings = {"crf": None if crf is None else dataclasses.asdict(crf),
                "bg_power": bg_power, "grid": list(grid)}  # fmt: skip
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _saved_pick(record: Path, key: str) -> MaskPick | None:
    try:
        saved = read_json(record) if record.is_file() else None
    except WsssError:
        return None  # a damaged record is made again, not trusted
    if not isinstance(saved, dict) or saved.get("key_sha1") != key:
        return None
    try:
        curve = [(float(t), -np.inf if miou is None else float(miou))
                 for t, miou in saved["curve"]]  # fmt: skip
        return MaskPick(float(saved["threshold"]), float(saved["miou"]), curve,
                        int(saved["images"]))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None  # a damaged record is made again, not trusted


def _pick(
    cam_dir: Path,
    voc: VocDataset,
    masked: Sequence[str],
    crf: CrfParams | None,
    bg_power: float | None,
    grid: Sequence[float],
) -> MaskPick:
    total = np.zeros((len(grid), voc.num_classes + 1, voc.num_classes + 1), np.int64)
    for image_id in track(masked, len(masked), "threshold on masks"):
        record = load_cam_file(find_cam_file(cam_dir, image_id), voc.num_classes)
        image = np.asarray(voc.load_image(image_id))
        gt = voc.load_mask(image_id)
        total += label_matrices(image, record, gt, voc.num_classes, crf, bg_power, grid)
    curve = [(float(t), _miou(matrix, len(masked))) for t, matrix in zip(grid, total, strict=True)]
    if all(np.isnan(miou) for _, miou in curve):
        raise WsssError(f"--threshold masks: the masks of the {len(masked)} images with masks "
                        "label no pixel (all 255 = ignore)")  # fmt: skip
    curve = [(t, -np.inf if np.isnan(miou) else miou) for t, miou in curve]
    best = max(range(len(curve)), key=lambda k: (curve[k][1], -k))
    return MaskPick(curve[best][0], curve[best][1], curve, len(masked))


def _miou(matrix: np.ndarray, images: int) -> float:
    confusion = ConfusionMatrix(len(matrix))
    confusion.matrix, confusion.images = matrix, images
    return confusion.compute().miou

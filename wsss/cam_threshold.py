"""The background threshold chosen from the CAMs alone, without pixel ground truth.

Rule ("mean-cam"): t = the mean, over every pixel of the split's labelled images, of the
strongest labelled-class CAM. A pixel is foreground when its strongest CAM is above the
CAMs' own average level. Measured against the ground-truth best threshold in
docs/label_free_threshold.md. Images labelled with no class hold no CAM and are left out:
they are background at any threshold.

The confident-region thresholds of the random-walk path derive from the same t.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsss.camfile import EVAL_CAM_RECORD, find_cam_file, load_cam_file
from wsss.errors import WsssError, check_range, file_error
from wsss.io import dir_writable, read_json, write_json
from wsss.ui import track, warn

RULE = "mean-cam"
RULE_TEXT = "mean of the strongest labelled-class CAM over the split's pixels"
# Written into the CAM folder, so make-pseudo --threshold auto and the pipeline share it.
RECORD = "label_free_threshold.json"
CONFIDENT_RULE = "fg = 2 t, bg = t / 2"


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    rule: str
    images: int
    pixels: int

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rule": self.rule,
            "rule_text": RULE_TEXT,
            "images": self.images,
            "pixels": self.pixels,
        }


class MeanCam:
    """Accumulates the strongest CAM of each pixel, image by image."""

    def __init__(self) -> None:
        self.total = 0.0
        self.pixels = 0
        self.images = 0

    def update(self, cams: np.ndarray) -> None:
        """One image's K x H x W CAMs (K may be 0: nothing to add)."""
        if len(cams) == 0:
            return
        top = np.asarray(cams, dtype=np.float32).max(axis=0)
        self.total += float(top.sum(dtype=np.float64))
        self.pixels += int(top.size)
        self.images += 1

    def result(self) -> ThresholdChoice:
        if self.pixels == 0:
            raise WsssError("no image with a labelled class: no CAM to pick a threshold from")
        threshold = round(min(max(self.total / self.pixels, 0.0), 1.0), 4)
        return ThresholdChoice(threshold, RULE, self.images, self.pixels)


def label_free_threshold(cam_dir: Path, ids: Sequence[str], num_classes: int) -> ThresholdChoice:
    """The rule's threshold for the CAM files of `ids` (one pass over them)."""
    mean = MeanCam()
    for image_id in track(ids, len(ids), "pick-threshold"):
        mean.update(load_cam_file(find_cam_file(cam_dir, image_id), num_classes).hr_cam)
    return mean.result()


@dataclass(frozen=True)
class Recorded:
    """Where a threshold's record is (or, `pending`, is still to be written by the stage:
    into its own output folder once it holds it)."""

    path: Path | None
    pending: dict[str, Any] | None = field(default=None, compare=False)


def pick_threshold(cam_dir: Path, ids: Sequence[str], num_classes: int) -> ThresholdChoice:
    """`pick_and_record` without an `elsewhere`: the choice alone."""
    return pick_and_record(cam_dir, ids, num_classes)[0]


def pick_and_record(
    cam_dir: Path, ids: Sequence[str], num_classes: int, elsewhere: Path | None = None
) -> tuple[ThresholdChoice, Recorded]:
    """`label_free_threshold`, recorded in `<cam_dir>/label_free_threshold.json` and read
    back from there when it was made for the same images. A CAM folder that takes no file
    (read-only) gets none: the record goes to `elsewhere` (the stage's own output folder,
    left to the stage to write), else it is not kept (a warning says so)."""
    cam_dir = Path(cam_dir)
    digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()
    places = [cam_dir / RECORD, *([Path(elsewhere) / RECORD] if elsewhere is not None else [])]
    for record in places:
        saved = _saved_choice(record, digest)
        if saved is not None:
            return saved, Recorded(record)
    choice = label_free_threshold(cam_dir, ids, num_classes)
    content = {**choice.to_json(), "ids_sha1": digest, "ids": len(ids)}
    if dir_writable(cam_dir):
        return choice, Recorded(write_json(cam_dir / RECORD, content))
    if elsewhere is not None:
        return choice, Recorded(Path(elsewhere) / RECORD, pending=content)
    warn(f"{cam_dir}: takes no file (read-only?): the threshold is not recorded in {RECORD}")
    return choice, Recorded(None)


def _saved_choice(record: Path, digest: str) -> ThresholdChoice | None:
    if not record.is_file():
        return None
    saved = read_json(record)
    same = isinstance(saved, dict) and saved.get("ids_sha1") == digest
    if same and saved.get("rule") == RULE:
        try:
            return ThresholdChoice(
                float(saved["threshold"]), RULE, int(saved["images"]), int(saved["pixels"])
            )
        except (KeyError, TypeError, ValueError):
            pass  # a damaged record is made again, not trusted
    return None


@dataclass(frozen=True)
class ThresholdSetting:
    """The background threshold a run uses: its value, the rule that gave it (mean-cam,
    fixed or oracle) and a line saying where it came from."""

    value: float
    rule: str
    source: str
    # A label-free record the stage writes into its own folder (the CAM folder is read-only).
    pending: tuple[Path, dict[str, Any]] | None = field(default=None, compare=False)


def resolve_threshold(
    cam_dir: Path,
    setting: float | str,
    ids: Sequence[str],
    num_classes: int,
    elsewhere: Path | None = None,
) -> ThresholdSetting:
    """make-pseudo's `--threshold` (a number, 'auto' or 'oracle') as a number; the pipeline
    reads the threshold of its make-pseudo step through this too. `elsewhere`: where the
    label-free record goes when the CAM folder is read-only (`pick_threshold`)."""
    cam_dir = Path(cam_dir)
    if setting == "auto":
        choice, recorded = pick_and_record(cam_dir, ids, num_classes, elsewhere)
        pending = (recorded.path, recorded.pending) if recorded.pending is not None else None
        source = f"label-free rule {RULE} ({RULE_TEXT})"
        return ThresholdSetting(choice.threshold, RULE, source, pending)  # type: ignore[arg-type]
    if setting == "oracle":
        value, source = _oracle(cam_dir / EVAL_CAM_RECORD)
        return ThresholdSetting(value, "oracle", source)
    if isinstance(setting, (str, bool)):
        raise WsssError(
            f"--threshold must be a number in [0, 1], 'auto' or 'oracle', got {setting!r}"
        )
    check_range("--threshold", setting, 0.0, 1.0)
    return ThresholdSetting(float(setting), "fixed", "--threshold")


def _oracle(record: Path) -> tuple[float, str]:
    """eval-cam's best threshold, picked on ground truth."""
    if not record.is_file():
        raise file_error(record, "not found: --threshold oracle needs `wsss eval-cam` first")
    content = read_json(record)
    best = content.get("best_threshold") if isinstance(content, dict) else None
    if best is None and isinstance(content, dict) and "best_threshold" in content:
        why = str(content.get("undefined") or "the sweep recorded none")[:200]
        raise file_error(
            record,
            f"no best threshold: {why}; --threshold oracle needs masks with labelled pixels "
            "(use --threshold auto or a number)",
        )
    if isinstance(best, bool) or not isinstance(best, int | float) or not 0.0 <= best <= 1.0:
        raise file_error(record, f"'best_threshold' must be a number in [0, 1], got {best!r}")
    source = f"oracle: best of {record}, picked on ground truth"
    if best == _lowest_swept(content.get("curve")):
        source += "; the lowest eval-cam tried, the CAMs may be best below it (--thresholds)"
    return float(best), source


def _lowest_swept(curve: object) -> float | None:
    """The smallest threshold of eval-cam's curve ([[t, miou], ...]) when it swept several."""
    if not isinstance(curve, list) or len(curve) < 2:
        return None
    points = [p[0] for p in curve if isinstance(p, list) and p and isinstance(p[0], int | float)]
    return min(points) if len(points) == len(curve) else None


def confident_thresholds(threshold: float) -> tuple[float, float]:
    """The random-walk path's confident-label thresholds (fg, bg) from the background threshold.

    Fixed thresholds (the reference's 0.40 / 0.10) must bracket the CAMs' own threshold, else
    whole objects become confident background (docs/random_walk.md). fg is capped at 1.
    """
    return min(1.0, 2 * threshold), threshold / 2


# -- the thresholds eval-cam sweeps ---------------------------------------------------------

DEFAULT_THRESHOLDS_TEXT = "0.05:0.95:0.05"


# Finer steps than 0.001 change no reported digit but cost time and JSON size per step.
MAX_THRESHOLDS = 1001


def parse_thresholds(text: str) -> tuple[float, ...]:
    """'0.05:0.95:0.05' (start:stop:step, stop included) or '0.1,0.2,0.3'."""
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(np.floor((stop - start) / step + 1e-9)) + 1
            if count > MAX_THRESHOLDS:
                _too_many(count)
            values = [round(start + i * step, 6) for i in range(count)]
        else:
            values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise WsssError(
            f"--thresholds must be start:stop:step or a comma list, got '{text}'"
        ) from None
    return check_thresholds(values)


def check_thresholds(values: Sequence[float]) -> tuple[float, ...]:
    if not values:
        raise WsssError("--thresholds needs at least one threshold")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise WsssError(f"--thresholds must be in [0, 1], got {bad[0]}")
    unique = tuple(sorted({float(v) for v in values}))
    if len(unique) > MAX_THRESHOLDS:
        _too_many(len(unique))
    return unique


def _too_many(count: int) -> None:
    raise WsssError(
        f"--thresholds gives {count} thresholds, at most {MAX_THRESHOLDS} "
        "(a step of 0.001 over [0, 1]); use a coarser step"
    )


DEFAULT_THRESHOLDS = parse_thresholds(DEFAULT_THRESHOLDS_TEXT)

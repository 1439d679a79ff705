"""The background threshold chosen from the CAMs alone, without pixel ground truth.

Rules (docs/label_free_threshold.md measures them against the ground-truth best threshold):
"lifted-median": the strongest labelled-class CAM's quantile at level 0.5 + q10, q10 its own
10th percentile, over the split's pixels: half of the pixels are background, and more where
the CAMs are blurred over the background (a high floor); "mean-cam": the mean of the
strongest labelled-class CAM; "blend" (the default): the average of the two. Images labelled
with no class hold no CAM and are left out: they are background at any threshold.

The confident-region thresholds of the random-walk path derive from the same t.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsss.camfile import EVAL_CAM_RECORD, find_cam_file, load_cam_file
from wsss.errors import WsssError, check_choice, check_range, file_error
from wsss.io import dir_writable, read_json, write_json
from wsss.ui import track, warn

RULE = "blend"  # the default rule (RULES below; chosen in docs/label_free_threshold.md)
RECORD = "label_free_threshold.json"  # in the CAM folder: make-pseudo and the pipeline share it
CONFIDENT_RULE = "fg = 2 t, bg = t / 2"
HIST_BINS = 1000  # the strongest-CAM histogram's bins over [0, 1]: rules read t to 0.001


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
            "rule_text": RULES[self.rule].text,
            "images": self.images,
            "pixels": self.pixels,
        }


class TopStats:
    """The strongest labelled-class CAM of every pixel, image by image: its exact sum and a
    histogram, which is all a rule reads."""

    def __init__(self) -> None:
        self.total = 0.0
        self.pixels = 0
        self.images = 0
        self.hist = np.zeros(HIST_BINS, np.int64)

    def update(self, cams: np.ndarray) -> None:
        """One image's K x H x W CAMs (K may be 0: nothing to add)."""
        if len(cams) == 0:
            return
        top = np.asarray(cams, dtype=np.float32).max(axis=0)
        self.total += float(top.sum(dtype=np.float64))
        self.pixels += int(top.size)
        self.images += 1
        bins = np.clip((top * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
        self.hist += np.bincount(bins.ravel(), minlength=HIST_BINS)

    @property
    def mean(self) -> float:
        return self.total / self.pixels

    def quantile(self, q: float) -> float:
        """The value below which a share q of the pixels lie, to the histogram's bin (the
        bin's upper edge: a pixel exactly at it counts as below, as thresholds do)."""
        below = np.cumsum(self.hist)
        index = int(np.searchsorted(below, q * self.pixels, side="left"))
        return min(index + 1, HIST_BINS) / HIST_BINS

    def result(self, rule: str = RULE) -> ThresholdChoice:
        if self.pixels == 0:
            raise WsssError("no image with a labelled class: no CAM to pick a threshold from")
        check_rule(rule)
        threshold = round(min(max(RULES[rule].pick(self), 0.0), 1.0), 4)
        return ThresholdChoice(threshold, rule, self.images, self.pixels)


@dataclass(frozen=True)
class Rule:
    text: str  # what the rule does, in a line (records and summaries)
    pick: Callable[[TopStats], float]


def lifted_median(stats: TopStats) -> float:
    """The quantile 0.5 + q10 of the strongest CAM (q10: its 10th percentile): half the pixels
    background, more where even the weakest tenth of the pixels holds activation (CAMs
    blurred over the background), at most 95 %."""
    return stats.quantile(min(0.95, 0.5 + stats.quantile(0.1)))


def blend(stats: TopStats) -> float:
    """The average of lifted-median and mean-cam: on the tuning set their errors mostly lie
    on opposite sides of the best threshold (docs/label_free_threshold.md)."""
    return (lifted_median(stats) + stats.mean) / 2


RULES: dict[str, Rule] = {
    "blend": Rule("the average of the lifted-median and mean-cam thresholds", blend),
    "lifted-median": Rule(
        "the strongest labelled-class CAM's quantile 0.5 + q10 over the split's pixels "
        "(q10: its 10th percentile)",
        lifted_median,
    ),
    "mean-cam": Rule(
        "mean of the strongest labelled-class CAM over the split's pixels", lambda s: s.mean
    ),
}


def check_rule(rule: str) -> None:
    check_choice("--threshold-rule", rule, tuple(RULES))


def label_free_threshold(
    cam_dir: Path, ids: Sequence[str], num_classes: int, rule: str = RULE
) -> ThresholdChoice:
    """The rule's threshold for the CAM files of `ids` (one pass over them)."""
    check_rule(rule)
    stats = TopStats()
    for image_id in track(ids, len(ids), "pick-threshold"):
        stats.update(load_cam_file(find_cam_file(cam_dir, image_id), num_classes).hr_cam)
    return stats.result(rule)


@dataclass(frozen=True)
class Recorded:
    """Where a threshold's record is (or, `pending`, is still to be written by the stage:
    into its own output folder once it holds it)."""

    path: Path | None
    pending: dict[str, Any] | None = field(default=None, compare=False)


def pick_threshold(
    cam_dir: Path, ids: Sequence[str], num_classes: int, rule: str = RULE
) -> ThresholdChoice:
    """`pick_and_record` without an `elsewhere`: the choice alone."""
    return pick_and_record(cam_dir, ids, num_classes, rule=rule)[0]


def pick_and_record(
    cam_dir: Path,
    ids: Sequence[str],
    num_classes: int,
    elsewhere: Path | None = None,
    rule: str = RULE,
) -> tuple[ThresholdChoice, Recorded]:
    """`label_free_threshold`, recorded in `<cam_dir>/label_free_threshold.json` and read
    back from there when it was made for the same images. A CAM folder that takes no file
    (read-only) gets none: the record goes to `elsewhere` (the stage's own output folder,
    left to the stage to write), else it is not kept (a warning says so). A record holds one
    rule's choice: another rule's is made anew (and replaces it)."""
    check_rule(rule)
    cam_dir = Path(cam_dir)
    digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()
    places = [cam_dir / RECORD, *([Path(elsewhere) / RECORD] if elsewhere is not None else [])]
    for record in places:
        saved = _saved_choice(record, digest, rule)
        if saved is not None:
            return saved, Recorded(record)
    choice = label_free_threshold(cam_dir, ids, num_classes, rule)
    content = {**choice.to_json(), "ids_sha1": digest, "ids": len(ids)}
    if dir_writable(cam_dir):
        return choice, Recorded(write_json(cam_dir / RECORD, content))
    if elsewhere is not None:
        return choice, Recorded(Path(elsewhere) / RECORD, pending=content)
    warn(f"{cam_dir}: takes no file (read-only?): the threshold is not recorded in {RECORD}")
    return choice, Recorded(None)


def _saved_choice(record: Path, digest: str, rule: str) -> ThresholdChoice | None:
    if not record.is_file():
        return None
    saved = read_json(record)
    same = isinstance(saved, dict) and saved.get("ids_sha1") == digest
    if same and saved.get("rule") == rule:
        try:
            return ThresholdChoice(
                float(saved["threshold"]), rule, int(saved["images"]), int(saved["pixels"])
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
    rule: str = RULE,
) -> ThresholdSetting:
    """make-pseudo's `--threshold` (a number, 'auto' or 'oracle') as a number; the pipeline
    reads the threshold of its make-pseudo step through this too. `elsewhere`: where the
    label-free record goes when the CAM folder is read-only (`pick_threshold`); `rule`: the
    label-free rule of 'auto' (RULES)."""
    cam_dir = Path(cam_dir)
    if setting == "auto":
        choice, recorded = pick_and_record(cam_dir, ids, num_classes, elsewhere, rule)
        pending = (recorded.path, recorded.pending) if recorded.pending is not None else None
        source = f"label-free rule {rule} ({RULES[rule].text})"
        return ThresholdSetting(choice.threshold, rule, source, pending)  # type: ignore[arg-type]
    if setting == "oracle":
        value, source = _oracle(cam_dir / EVAL_CAM_RECORD)
        return ThresholdSetting(value, "oracle", source)
    if isinstance(setting, (str, bool)):
        raise WsssError(
            f"--threshold must be a number in [0, 1], 'auto', 'oracle' or 'masks', got {setting!r}"
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
    images = content.get("images")
    counted = f" ({images} images)" if isinstance(images, int) else ""
    source = f"oracle: best of {record}{counted}, picked on ground truth"
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

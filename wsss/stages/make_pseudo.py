"""`wsss make-pseudo`: CAMs -> pseudo label PNGs (threshold, dense CRF, confident regions).

One palette PNG per image (VOC colour map, 0..C, 255 = ignore), written atomically, so a
resumed run skips finished files. The CRF runs in a pool of worker processes, each loading
its own image and CAM file and writing its own output; the parent only hands out image ids
and collects a few numbers per image (and, when the split has ground truth, a small
confusion matrix, summed here into the pseudo labels' mIoU). Under torchrun each process
takes its own shard of the split and the scores are summed over processes at the end.

The background threshold defaults to the label-free rule of `wsss.cam_threshold`
(`--threshold auto`), the same stand-alone and in the pipeline; `--threshold oracle` takes the
best one `wsss eval-cam` recorded for these CAMs (picked on ground truth); `--threshold masks`
the one whose pseudo labels score best on the split's images that have masks
(`wsss.mask_threshold`: a few masks where the rule misses). The manifest says which.
Confident mode's two thresholds derive from the same threshold unless given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsss.cam_threshold import (
    CONFIDENT_RULE,
    ThresholdSetting,
    confident_thresholds,
    resolve_threshold,
)
from wsss.camfile import (
    CamRecord,
    cam_folder_params,
    find_cam_file,
    load_cam_file,
)
from wsss.configs.labels import MakePseudoConfig
from wsss.crf import CrfParams, crf_preset, densecrf_module
from wsss.data.classes import class_names_with_background
from wsss.data.palette import IGNORE, read_label_png, save_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError, check_count, file_error
from wsss.io import note_runtime, write_json
from wsss.mask_threshold import MASK_RULE, pick_on_masks
from wsss.metrics import ConfusionMatrix, SegmentationScores
from wsss.perimage import PerImageResult, PerImageRun
from wsss.pool import default_workers, map_in_processes, peak_rss_mb
from wsss.pseudo import (
    PseudoParams,
    pseudo_label,
)
from wsss.resume import output_path, shard
from wsss.torchrun import env_info
from wsss.ui import Table, scores_table

STAGE = "make-pseudo"
LABEL_SUFFIX = ".png"
EVAL_NAME = "eval.json"
# Resuming into a folder made with other values of these would mix two kinds of labels.
SIGNATURE = ("cams", "split", "mode", "threshold", "fg_threshold", "bg_threshold", "bg_power",
             "crf", "classes")  # fmt: skip


@dataclass(kw_only=True)
class MakePseudoResult(PerImageResult):
    workers: int
    threshold: float | None
    threshold_source: str
    peak_rss_mb: float  # this process
    worker_peak_rss_mb: float  # the largest worker (this process when --workers 1)
    pixels: int = 0
    ignored_pixels: int = 0
    scores: SegmentationScores | None = None
    eval_path: Path | None = None
    rule: str = ""  # how the background threshold was chosen: a label-free rule, fixed or oracle
    confident: tuple[float, float] | None = None  # (fg, bg) in confident mode

    def tables(self) -> list[Table]:
        if self.scores is None:
            return []
        return [scores_table(f"pseudo labels ({self.scores.images} images)", self.scores)]

    @property
    def ignored_fraction(self) -> float:
        """Share of 255 pixels in the labels this run made or scored."""
        return self.ignored_pixels / self.pixels if self.pixels else 0.0

    def summary_rows(self) -> list[tuple[str, object]]:
        threshold = "-" if self.threshold is None else f"{self.threshold:.2f}"
        rows: list[tuple[str, object]] = [
            *self.head_rows(),
            ("background threshold", f"{threshold} ({self.threshold_source})"),
            ("workers", self.workers),
            *self.timing_rows(),
            ("peak memory", f"{self.peak_rss_mb:.0f} MB, workers {self.worker_peak_rss_mb:.0f} MB"),
        ]
        if self.ignored_pixels:
            rows.append(("ignored (255) pixels", f"{100 * self.ignored_fraction:.1f} %"))
        if self.scores is not None:
            rows.append(("pseudo-label mIoU %", f"{self.scores.miou:.2f}"))
            classes = len(self.scores.class_names)
            rows.append((f"  reference convention ({classes} classes) %",
                         f"{self.scores.miou_reference:.2f}"))  # fmt: skip
            rows.append(("scores", self.eval_path))
        rows.append(("output", self.out))
        return rows


def run(config: MakePseudoConfig) -> MakePseudoResult:
    cams = Path(config.cams)
    if not cams.is_dir():
        raise file_error(cams, "CAM directory not found")
    check_count("--crf-workers", config.crf_workers)
    note_runtime({"device": "cpu", "amp": "off"})  # the CRF runs on the CPU, whatever ran before
    voc = VocDataset.open(config.data, config.class_list)
    cam_folder_params(cams, voc.classes)
    ids = voc.split_ids(config.split)
    params, threshold = _pseudo_params(config, cams, voc, ids)
    if params.crf is not None:
        densecrf_module()  # a missing pydensecrf fails now, not in every worker
    manifest_params = {
        "cams": str(cams.resolve()),
        "data": str(config.data),
        "split": config.split,
        **params.to_json(),
        "crf_preset": config.crf_preset if params.crf is not None else None,
        "threshold_source": threshold.source,
        "classes": list(voc.classes),
    }
    outputs = PerImageRun(STAGE, config.out, ids, LABEL_SUFFIX, manifest_params, SIGNATURE)
    if threshold.pending is not None:  # the CAM folder is read-only: beside the labels
        write_json(*threshold.pending)
    mine = shard(ids)
    evaluate = _should_evaluate(voc, mine, config.score)
    voc.check_image_ids(outputs.todo)
    for image_id in outputs.todo:
        find_cam_file(cams, image_id)  # the first missing CAM file fails before any work
    todo = set(outputs.todo)
    # Finished labels are re-read only to be scored, so the mIoU always covers the split.
    tasks = outputs.todo + ([i for i in mine if i not in todo] if evaluate else [])
    job = PseudoJob(voc.root, cams, outputs.out, params, evaluate, config.class_list)
    workers = min(config.crf_workers or default_workers(), max(1, len(tasks)))

    names = class_names_with_background(voc.classes)
    tally = _Tally(ConfusionMatrix(len(names), names))
    with outputs.loop(total=len(tasks)) as advance:
        for image in label_images(job, tasks, workers):
            tally.add(image)
            advance()
    if env_info().distributed:
        tally.sum_over_processes()

    result = outputs.finish(
        "label files",
        result=MakePseudoResult,
        workers=workers,
        threshold=None if params.confident else params.threshold,
        threshold_source=threshold.source,
        rule=threshold.rule,
        confident=params.confident,
        peak_rss_mb=peak_rss_mb(),
        worker_peak_rss_mb=tally.worker_rss_mb,
        pixels=tally.pixels,
        ignored_pixels=tally.ignored,
    )
    if evaluate and tally.matrix.images:
        result.scores = tally.matrix.compute()
        if params.confident:
            result.scores.extra["ignored_fraction"] = result.ignored_fraction
        result.eval_path = outputs.out / EVAL_NAME
        if env_info().is_main:
            write_json(result.eval_path, result.scores.to_json())
    return result


@dataclass
class _Tally:
    """What the parent keeps of the workers' results: sums, never label maps."""

    matrix: ConfusionMatrix
    pixels: int = 0
    ignored: int = 0
    worker_rss_mb: float = 0.0

    def add(self, image: ImageResult) -> None:
        if image.matrix is not None:
            self.matrix.merge(image.matrix)
        self.pixels += image.pixels
        self.ignored += image.ignored
        self.worker_rss_mb = max(self.worker_rss_mb, image.peak_rss_mb)

    def sum_over_processes(self) -> None:
        """Under torchrun: wait for every shard, then sum over processes (gloo, CPU only)."""
        import torch

        from wsss.engine import distributed

        cpu = torch.device("cpu")
        created = distributed.init_distributed(cpu)
        try:
            self.matrix.reduce_from_all_processes()
            pixels, ignored = distributed.all_reduce_sum([self.pixels, self.ignored], cpu)
            self.pixels, self.ignored = int(pixels), int(ignored)
            distributed.barrier()
        finally:
            if created:
                distributed.cleanup()


def label_images(job: PseudoJob, ids: list[str], workers: int) -> Iterator[ImageResult]:
    """Label `ids` in `workers` processes (in this process when 1), yielding as they finish."""
    return map_in_processes(ImageLabeler, job, ids, workers)


# -- one image, files in and file out (runs in the worker processes) ----------------------


@dataclass(frozen=True)
class PseudoJob:
    """Everything a worker needs, sent once: paths and parameters, never arrays."""

    data: Path
    cams: Path
    out: Path
    params: PseudoParams
    evaluate: bool = False
    class_list: Path | None = None


@dataclass
class ImageResult:
    """What a worker sends back for one image: a few numbers and, with ground truth, a
    (C+1) x (C+1) confusion matrix."""

    image_id: str
    pixels: int
    ignored: int
    matrix: ConfusionMatrix | None
    peak_rss_mb: float


class ImageLabeler:
    """Makes (or, when it exists, re-reads for scoring) one image's pseudo label file."""

    def __init__(self, job: PseudoJob) -> None:
        self.job = job
        self.voc = VocDataset.open(job.data, job.class_list)
        self.names = class_names_with_background(self.voc.classes)

    def __call__(self, image_id: str) -> ImageResult:
        target = output_path(self.job.out, image_id, LABEL_SUFFIX)
        labels = read_label_png(target) if target.is_file() else self._make(image_id, target)
        matrix = None
        if self.job.evaluate:
            matrix = ConfusionMatrix(len(self.names), self.names)
            gt = self.voc.load_mask(image_id, (labels.shape[1], labels.shape[0]))
            matrix.update(gt, labels, name=str(target), ignore_pred=True)
        return ImageResult(
            image_id=image_id,
            pixels=int(labels.size),
            ignored=int(np.count_nonzero(labels == IGNORE)),
            matrix=matrix,
            peak_rss_mb=peak_rss_mb(),
        )

    def _make(self, image_id: str, target: Path) -> np.ndarray:
        image = np.asarray(self.voc.load_image(image_id))
        path = find_cam_file(self.job.cams, image_id)
        cam = load_cam_file(path, self.voc.num_classes, image.shape[:2])
        self._check_classes(cam, image_id, path)
        labels = pseudo_label(image, cam, self.job.params)
        save_label_png(target, labels)
        return labels

    def _check_classes(self, cam: CamRecord, image_id: str, path: Path) -> None:
        """CAMs of classes the image is not labelled with come from another dataset."""
        try:
            labelled = {c + 1 for c in self.voc.image_classes(image_id)}
        except WsssError:
            return  # no image-level labels to compare with (e.g. an unannotated image)
        extra = [int(k) for k in cam.labels if int(k) not in labelled]
        if extra:
            names = ", ".join(self.voc.classes[k - 1] for k in extra)
            raise file_error(
                path,
                f"holds CAMs of {names}, which image '{image_id}' is not labelled with "
                "(CAMs made for another dataset or class list?)",
            )


def _pseudo_params(
    config: MakePseudoConfig, cams: Path, voc: VocDataset, ids: list[str]
) -> tuple[PseudoParams, ThresholdSetting]:
    """The labelling parameters, and the background threshold with where it came from."""
    crf = crf_params(config)
    if config.fg_threshold is not None and config.bg_threshold is not None:
        given = ThresholdSetting(config.bg_threshold, "fixed", "--fg-threshold / --bg-threshold")
        confident = (config.fg_threshold, config.bg_threshold)
        return PseudoParams(crf=crf, bg_power=config.bg_power, confident=confident), given
    threshold = threshold_setting(config, cams, voc, ids)
    if not config.confident_mode:
        return PseudoParams(threshold.value, crf, config.bg_power), threshold
    derived = confident_thresholds(threshold.value)
    fg = derived[0] if config.fg_threshold is None else config.fg_threshold
    bg = derived[1] if config.bg_threshold is None else config.bg_threshold
    params = PseudoParams(crf=crf, bg_power=config.bg_power, confident=(fg, bg))
    source = f"{CONFIDENT_RULE} from t = {threshold.value:g} ({threshold.source})"
    return params, ThresholdSetting(threshold.value, threshold.rule, source, threshold.pending)


def threshold_setting(
    config: MakePseudoConfig, cams: Path, voc: VocDataset, ids: list[str]
) -> ThresholdSetting:
    """`--threshold` as a number and where it came from; the pipeline reads it here too."""
    if config.threshold == MASK_RULE:
        pick = pick_on_masks(cams, voc, ids, crf_params(config), config.bg_power)
        return ThresholdSetting(pick.threshold, MASK_RULE, pick.source(config.split))
    return resolve_threshold(
        cams, config.threshold, ids, voc.num_classes, Path(config.out), config.threshold_rule
    )


def crf_params(config: MakePseudoConfig) -> CrfParams | None:
    """The dense CRF's parameters: the preset's, each option given replacing its value (None
    with --no-crf)."""
    if not config.crf:
        return None
    names = {f.name: f.name for f in dataclasses.fields(CrfParams)} | {"iterations": "crf_iters"}
    return crf_preset(config.crf_preset, **{key: getattr(config, n) for key, n in names.items()})


def _should_evaluate(voc: VocDataset, ids: list[str], gt: bool | None) -> bool:
    if gt is False:
        return False
    if gt:
        voc.require_masks(ids, "ground truth not found (--no-score skips scoring)")
        return True
    return not voc.missing_masks(ids)

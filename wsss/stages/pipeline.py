"""`wsss pipeline`: every stage in order, on any dataset in the toolkit's layout.

The pipeline decides no option: `wsss.recipes.resolve` gives every stage's options (stage
default < recipe < variant < --seed < --set), the pipeline adds what only the run knows
(paths, device, the previous stage's output) and calls the stage's `run`. The resolved
options are written into summary.json; `dry_run` prints them and stops.
Resuming is the stages' own job (per-image stages skip finished files, trainers continue
from `last.pt`), so re-running an interrupted pipeline continues where it stopped; a
trainer whose `final.pt` exists is not run again.

No step needs pixel ground truth: the background threshold comes from the CAMs alone
(`wsss.cam_threshold`). Where a split has masks, the CAMs, pseudo labels and predictions
are scored too, and eval-cam's best threshold is reported beside, marked "oracle".

With `random_walk`, the random-walk path (docs/random_walk.md) runs after the CRF path in
the same run directory and shares its CAMs: confident labels -> train-aff -> make-rw ->
pseudo labels from the walked maps -> the label-free walk check (`wsss.walk_check`) -> the
segmenter on the walked labels where the check keeps them, each into its own folder.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from wsss.amp import AMP_DEFAULT
from wsss.cam_threshold import (
    CONFIDENT_RULE,
    DEFAULT_THRESHOLDS,
    RULE,
    ThresholdSetting,
    resolve_threshold,
)
from wsss.configs.datasets import generator_args
from wsss.data.demo import ensure_demo
from wsss.data.voc import VocDataset
from wsss.engine.finished import train_unless_finished
from wsss.engine.tensorboard import require_tensorboard
from wsss.errors import WsssError
from wsss.io import atomic_write_bytes, ensure_dir, write_json
from wsss.mask_threshold import MASK_RULE
from wsss.metrics import REFERENCE_CONVENTION
from wsss.pool import worker_cpu_seconds
from wsss.recipes import COCO, DEMO, RECIPES, VOC, Recipe, Resolved, resolve
from wsss.torchrun import env_info
from wsss.ui import info, key_value_table, plain, print_table
from wsss.walk_check import RECORD as WALK_RECORD
from wsss.walk_check import WalkCheck, check_walk

__all__ = ["COCO", "DEMO", "RECIPES", "VOC", "PipelineConfig", "PipelineResult", "Recipe", "run"]


@dataclass
class PipelineConfig:
    out: Path
    recipe: Recipe
    data: Path | None = None  # dataset root; without it the demo recipe generates one
    sbd: Path | None = None
    prepare_voc: bool = False  # run prepare-voc on `data` (and `sbd`) first
    device: str = "auto"
    amp: str = AMP_DEFAULT  # every network stage's --amp
    loader_workers: int | None = None
    crf_workers: int | None = None
    variant: str | None = None  # ablation variant of train-cam (default: the recipe's)
    random_walk: bool = False  # also run the random-walk path
    overrides: tuple[str, ...] = ()  # "stage.option=value"
    seed: int | None = None  # every trainer's seed
    dry_run: bool = False  # print the resolved options, run nothing
    profile: str | None = None  # wsss.recipes.PROFILES (default: the recipe's)
    tensorboard: Path | None = None  # event files: DIR/<trainer's folder>, DIR/pipeline


@dataclass
class PipelineResult:
    summary: dict[str, Any]
    summary_path: Path


@dataclass
class Splits:
    """Which list each step reads: the recipe's name where the dataset has that list, else
    train (and val for predictions); `scored` holds the splits whose every image has a mask."""

    cam: str
    cam_eval: str
    seg: str
    predict: str
    scored: set[str] = field(default_factory=set)


def resolve_run(config: PipelineConfig) -> Resolved:
    """Every stage's options for this run (errors before any work)."""
    if config.tensorboard is not None:
        require_tensorboard()
    demo_data = config.data is None and config.recipe.demo is not None
    resolved = resolve(config.recipe, config.variant, config.overrides, config.seed,
                       config.random_walk, demo_data, config.profile)  # fmt: skip
    check_stage_options(resolved)
    return resolved


def check_stage_options(resolved: Resolved) -> None:
    """Every stage's resolved options checked as its own command checks them (bounds,
    choices, the trainers' `validate`, backbone names), before the first stage starts: a
    mistake in the last stage's `--set` is not found after hours of the first ones. The
    options the run sets itself (data, out, the previous stage's output) are left out."""
    from wsss import registry
    from wsss.option import check_config, options
    from wsss.recipes import RUN_STAGES

    for key, values in resolved.stages.items():
        config_type = registry.stage(RUN_STAGES[key]).config
        unset = {opt.name: Path(".") for opt in options(config_type)
                 if opt.required and opt.name not in values}  # fmt: skip
        config = config_type(**unset, **values)
        check_config(config)
        if callable(getattr(config, "validate", None)):
            config.validate()
        if isinstance(values.get("backbone"), str):
            check_backbone_name(values["backbone"], f"{key}.backbone")


def check_backbone_name(name: str, key: str) -> None:
    """A backbone the model factory knows, without building it (no weights fetched)."""
    from wsss.models.backbone import BACKBONES, TIMM_PREFIX

    if name.startswith(TIMM_PREFIX):
        try:
            import timm
        except ImportError:
            raise WsssError(f"{key}={name}: timm backbones need: pip install timm") from None
        if not timm.is_model(name[len(TIMM_PREFIX) :]):
            raise WsssError(f"{key}={name}: timm has no model '{name[len(TIMM_PREFIX) :]}'")
        return
    if name not in BACKBONES:
        raise WsssError(
            f"{key}: unknown backbone '{name}': choose from {', '.join(BACKBONES)} or timm:<name>"
        )


def cpu_seconds() -> float:
    """CPU seconds of this process, its finished children (loader workers) and the CRF
    pool's workers: what a run costs on a shared machine, where its wall time says little."""
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    return own + worker_cpu_seconds()


def run(config: PipelineConfig) -> PipelineResult | None:
    resolved = resolve_run(config)
    if config.dry_run:
        print_table(resolved_table(resolved))
        return None
    out = ensure_dir(config.out)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def step(name: str, action: Callable[[], Any]) -> Any:
        info(f"[bold cyan]== {name}[/]", markup=True)
        start, cpu_start = time.perf_counter(), cpu_seconds()
        value = action()
        timings[name] = round(time.perf_counter() - start, 1)
        cpu[name] = round(cpu_seconds() - cpu_start, 1)
        return value

    data = step("data", lambda: _prepare_data(config, resolved, out))
    steps = Steps(config, resolved, data, out, step)
    cam_model = steps.cam_model = step("train-cam", steps.train_cam)
    step("make-cam", lambda: steps.make_cam(cam_model))
    crf = steps.cams_to_segmenter(out / "cams")
    rw = steps.random_walk(cam_model, crf) if config.random_walk else None

    splits = steps.splits
    summary = {
        "recipe": resolved.recipe.name,
        "variant": config.variant or resolved.recipe.variant or "full",
        "profile": resolved.profile,
        "overrides": list(config.overrides),
        **({"seed": config.seed} if config.seed is not None else {}),
        "data": str(data),
        **crf,
        "miou_reference_convention": REFERENCE_CONVENTION,  # the *_miou_reference figures
        "cam_split": splits.cam_eval if splits.cam_eval in splits.scored else splits.cam,
        "pseudo_split": splits.cam,
        "seg_split": splits.predict,
        **({"random_walk": rw} if rw is not None else {}),
        "skipped": steps.skipped,
        "seconds": timings,
        "total_seconds": round(sum(timings.values()), 1),
        "cpu_seconds": cpu,
        "total_cpu_seconds": round(sum(cpu.values()), 1),
        "resolved": resolved.to_json(),
    }
    summary_path = write_json(out / "summary.json", summary)
    if config.tensorboard is not None and env_info().is_main:
        log_figures(config.tensorboard / "pipeline", summary)
    if {splits.cam, splits.predict} <= splits.scored:
        from wsss.report import pipeline_figures

        pipeline_figures(out, data, splits.cam, splits.predict)
    from wsss.stages.report import ReportConfig
    from wsss.stages.report import run as write_report

    # A plain status line: no markup, so no escaping that would print as a backslash.
    info(f"report: {write_report(ReportConfig(run_dir=out)).path}")
    print_table(summary_table(summary))
    return PipelineResult(summary=summary, summary_path=summary_path)


def log_figures(folder: Path, summary: dict[str, Any]) -> None:
    """The run's figures as TensorBoard scalars (pipeline/<key>, the random-walk path's as
    pipeline/rw_<key>), one point each: runs side by side (seeds, variants) compare there."""
    from wsss.engine.tensorboard import TensorBoardLog

    keys = (*SEED_FIGURES, "pseudo_miou_reference", "seg_miou_reference")
    figures = {key: summary.get(key) for key in keys}
    walk = summary.get("random_walk") or {}
    figures.update({f"rw_{key.removeprefix('rw_')}": walk.get(key)
                    for key in ("rw_miou", "pseudo_miou", "seg_miou")})  # fmt: skip
    board = TensorBoardLog(folder, purge_step=0)  # a re-run's figures replace the last ones
    board.scalars("pipeline", {k: v for k, v in figures.items() if v is not None}, 0)
    board.close()


def resolved_table(resolved: Resolved) -> Table:
    """Every stage's options as the run would use them (`--dry-run`)."""
    table = Table(title=f"wsss pipeline {resolved.recipe.name}: resolved options")
    for column in ("stage", "option", "value"):
        table.add_column(column)
    for stage, values in resolved.to_json().items():
        for name, value in values.items():
            table.add_row(stage, name, plain(str(value)))
        table.add_section()
    return table


class Steps:
    """The stages of one run, each a call with its resolved options and the run's paths."""

    def __init__(self, config: PipelineConfig, resolved: Resolved, data: Path, out: Path,
                 step: Callable[..., Any]) -> None:  # fmt: skip
        self.config, self.resolved, self.data, self.out, self.step = (
            config, resolved, data, out, step)  # fmt: skip
        self.recipe = resolved.recipe
        self.options = resolved.stages
        self.switches = resolved.switches
        self.voc = VocDataset.open(data)
        self.splits = resolve_splits(self.recipe, self.voc)
        self.skipped: dict[str, str] = {}
        self.device = {"device": config.device, "amp": config.amp}
        if config.loader_workers is not None:
            self.device["loader_workers"] = config.loader_workers
        self.cam_model: Path | None = None  # train-cam's final.pt, once trained

    def board(self, folder: str) -> dict[str, Path]:
        """A trainer's `tensorboard` option: its own folder under the run's, if any."""
        board = self.config.tensorboard
        return {} if board is None else {"tensorboard": board / folder}

    def train_cam(self, folder: str = "cam_model") -> Path:
        from wsss.stages.train_cam import TrainCamConfig
        from wsss.stages.train_cam import run as train

        return train_unless_finished(train, TrainCamConfig(
            data=self.data, out=self.out / folder, split=self.splits.cam, resume=True,
            **self.device, **self.board(folder), **self.options["train_cam"]))  # fmt: skip

    def make_cam(self, checkpoint: Path, out: Path | None = None) -> None:
        from wsss.stages.make_cam import MakeCamConfig
        from wsss.stages.make_cam import run as make_cam

        make_cam(MakeCamConfig(
            checkpoint=checkpoint, data=self.data, split=self.splits.cam,
            out=out or self.out / "cams", **self.device, **self.options["make_cam"]))  # fmt: skip

    def cams_to_segmenter(self, cams: Path, tag: str = "") -> dict[str, Any]:
        """pick-threshold -> eval-cam (where masks) -> make-pseudo -> train-seg -> predict ->
        eval (where masks), for one folder of CAM files; `tag` names the steps and suffixes
        the folders."""
        labels = self.cams_to_labels(cams, tag)
        return {**labels, **self.labels_to_segmenter(tag)}

    def cams_to_labels(self, cams: Path, tag: str = "") -> dict[str, Any]:
        """pick-threshold -> eval-cam (where masks) -> make-pseudo into pseudo[_tag]."""
        splits = self.splits
        name = _namer(tag)
        setting = self.options["make_pseudo"]["threshold"]
        scored = self._scored(name("eval-cam"), splits.cam_eval)
        cam_eval = None
        if setting == "oracle":  # the threshold comes from eval-cam's sweep
            images = splits.cam_eval if scored else self._masked_list(splits.cam_eval)
            cam_eval = self.step(name("eval-cam"), lambda: self.eval_cam(cams, None, images))
        labels = self.out / f"pseudo{_suffix(tag)}"
        threshold = self.step(name("pick-threshold"),
                              lambda: self.threshold(cams, setting, labels))  # fmt: skip
        if scored and cam_eval is None:
            cam_eval = self.step(name("eval-cam"), lambda: self.eval_cam(cams, threshold.value))
        if cam_eval is not None and setting == "oracle":
            cam_eval["miou"] = cam_eval["best_miou"]
        self._scored(name("make-pseudo scores"), splits.cam)
        pseudo = self.step(name("make-pseudo"), lambda: self.make_pseudo(cams, labels))
        return {
            "cam_threshold": threshold.value,
            "cam_threshold_rule": threshold.rule,
            "cam_miou": cam_eval["miou"] if cam_eval else None,
            "cam_threshold_oracle": cam_eval["best_threshold"] if cam_eval else None,
            "cam_miou_oracle": cam_eval["best_miou"] if cam_eval else None,
            # the images the CAM figures are of: fewer than the split's where the oracle
            # threshold was picked on the images with masks alone
            "cam_eval_images": cam_eval.get("images") if cam_eval else None,
            "pseudo_miou": pseudo.scores.miou if pseudo.scores is not None else None,
            "pseudo_miou_reference": pseudo.scores.miou_reference if pseudo.scores else None,
        }

    def labels_to_segmenter(self, tag: str = "") -> dict[str, Any]:
        """train-seg on pseudo[_tag] -> predict -> eval (where masks)."""
        suffix, name = _suffix(tag), _namer(tag)
        labels = self.out / f"pseudo{suffix}"
        seg_model = self.step(name("train-seg"), lambda: self.train_seg(labels, suffix))
        pred_dir = self.out / f"pred_{self.splits.predict}{suffix}"
        self.step(name("predict"), lambda: self.predict(seg_model, pred_dir))
        seg_eval = None
        if self._scored(name("eval"), self.splits.predict):
            seg_eval = self.step(name("eval"), lambda: self.evaluate(pred_dir))
        return {"seg_miou": seg_eval["miou"] if seg_eval else None,
                "seg_miou_reference": seg_eval["miou_reference"] if seg_eval else None}  # fmt: skip

    def random_walk(self, cam_model: Path, crf: dict[str, Any]) -> dict[str, Any]:
        """Confident labels -> train-aff -> make-rw -> labels from the walked maps -> the walk
        check (label-free) -> the segmenter on the walked labels, if the check keeps them."""
        confident = self.out / "pseudo_confident"
        cams = self.out / "cams"
        labelled = self.step("make-pseudo (confident)",
                             lambda: self.make_pseudo(cams, confident, confident=True))  # fmt: skip
        fg, bg = labelled.confident
        aff_model = self.step("train-aff", lambda: self.train_aff(cam_model, confident))
        self.step("make-rw", lambda: self.make_rw(aff_model, cams, self.out / "rw"))
        walked = self.cams_to_labels(self.out / "rw", tag="rw")
        check = self.step("walk-check", self.walk_check)
        enforced = self.switches["walk_check"]
        keep = check.keep_walk or not enforced
        if keep:
            walked.update(self.labels_to_segmenter(tag="rw"))
        else:
            walked["seg_miou"] = walked["seg_miou_reference"] = None
            self.skipped["train-seg (rw)"] = (
                f"the walk check dropped the walked labels (they agree {check.agreement:.1f} "
                f"mIoU with the CRF labels, under {check.min_agreement:g}); the CRF labels "
                "are the run's labels"
            )
            info(f"walk check: {self.skipped['train-seg (rw)']}")
        return {
            "rw_miou": walked["cam_miou"],
            "rw_threshold": walked["cam_threshold"],
            "rw_threshold_rule": walked["cam_threshold_rule"],
            "rw_miou_oracle": walked["cam_miou_oracle"],
            "rw_threshold_oracle": walked["cam_threshold_oracle"],
            "confident_fg": fg,
            "confident_bg": bg,
            "confident_rule": CONFIDENT_RULE,
            "pseudo_miou": walked["pseudo_miou"],
            "seg_miou": walked["seg_miou"],
            "pseudo_miou_reference": walked["pseudo_miou_reference"],
            "seg_miou_reference": walked["seg_miou_reference"],
            "walk_check": {**check.to_json(), "enforced": enforced},
            "kept": keep,
        }

    def walk_check(self) -> WalkCheck:
        """The label-free check of the walked labels, saved as walk_check.json."""
        ids = self.voc.split_ids(self.splits.cam)
        check = check_walk(self.out / "pseudo", self.out / "pseudo_rw", ids, self.voc.num_classes)
        write_json(self.out / WALK_RECORD, check.to_json())
        return check

    # -- one stage each ------------------------------------------------------------------

    def threshold(self, cams: Path, setting: float | str, labels: Path) -> ThresholdSetting:
        """make-pseudo's background threshold, the way make-pseudo itself resolves it."""
        ids = self.voc.split_ids(self.splits.cam)
        if setting == MASK_RULE:  # needs the CRF settings: make-pseudo's own function
            from wsss.stages.make_pseudo import threshold_setting

            return threshold_setting(self._pseudo_config(cams, labels), cams, self.voc, ids)
        rule = self.options["make_pseudo"].get("threshold_rule", RULE)
        return resolve_threshold(cams, setting, ids, self.voc.num_classes, rule=rule)

    def _masked_list(self, split: str) -> str:
        """A list of the images of `split` that have masks, for the oracle threshold where
        only some do (a few masks pick it well: docs/label_free_threshold.md); its path."""
        ids = self.voc.split_ids(split)
        masked = [image_id for image_id in ids if self.voc.has_mask(image_id)]
        if not masked:
            raise WsssError(f"make_pseudo.threshold=oracle needs ground-truth masks of some "
                            f"images of split {split}; it has none")  # fmt: skip
        path = self.out / f"masked_{split}.txt"
        atomic_write_bytes(path, "".join(f"{image_id}\n" for image_id in masked).encode())
        info(f"threshold=oracle: picked on the {len(masked)} of {len(ids)} images of split "
             f"{split} that have masks ({path.name})")  # fmt: skip
        return str(path)

    def eval_cam(self, cams: Path, threshold: float | None,
                 split: str | None = None) -> dict[str, Any]:  # fmt: skip
        """The sweep (of `split`, default the CAM evaluation split) with the chosen threshold
        among its points: mIoU there, and the best (oracle) threshold of the sweep."""
        from wsss.stages.eval_cam import EvalCamConfig
        from wsss.stages.eval_cam import run as eval_cam

        extra = set() if threshold is None else {threshold}
        thresholds = tuple(sorted({*DEFAULT_THRESHOLDS, *extra}))
        sweep = eval_cam(EvalCamConfig(cams=cams, gt=self.data,
                                       split=split or self.splits.cam_eval,
                                       thresholds=thresholds)).sweep  # fmt: skip
        at = (
            0
            if threshold is None
            else min(
                range(len(sweep.thresholds)), key=lambda i: abs(sweep.thresholds[i] - threshold)
            )
        )
        return {"miou": sweep.scores[at].miou, "best_miou": sweep.best_miou,
                "best_threshold": sweep.best_threshold, "images": sweep.best.images}  # fmt: skip

    def make_pseudo(self, cams: Path, out: Path, confident: bool = False) -> Any:
        """Pseudo labels; the confident thresholds apply to the confident labels only."""
        from wsss.stages.make_pseudo import run as make_pseudo

        return make_pseudo(self._pseudo_config(cams, out, confident))

    def _pseudo_config(self, cams: Path, out: Path, confident: bool = False) -> Any:
        from wsss.stages.make_pseudo import MakePseudoConfig

        options = dict(self.options["make_pseudo"])
        if not confident:
            options.update(fg_threshold=None, bg_threshold=None)
        workers = self.config.crf_workers
        return MakePseudoConfig(
            cams=cams, data=self.data, split=self.splits.cam, out=out, crf_workers=workers,
            confident=confident, **options)  # fmt: skip

    def train_seg(self, labels: Path | None, suffix: str) -> Path:
        """DeepLab on these pseudo labels (None: on the ground-truth masks)."""
        from wsss.stages.train_seg import TrainSegConfig
        from wsss.stages.train_seg import run as train

        init = self.cam_model if self.switches["seg_init"] else None
        return train_unless_finished(train, TrainSegConfig(
            data=self.data, out=self.out / f"seg_model{suffix}", split=self.splits.seg,
            labels=labels, init=init, resume=True, **self.device,
            **self.board(f"seg_model{suffix}"), **self.options["train_seg"]))  # fmt: skip

    def train_aff(self, cam_model: Path, labels: Path, out: Path | None = None) -> Path:
        from wsss.stages.train_aff import TrainAffConfig
        from wsss.stages.train_aff import run as train

        init = cam_model if self.switches["aff_init"] else None
        return train_unless_finished(train, TrainAffConfig(
            data=self.data, out=out or self.out / "aff_model", split=self.splits.cam, labels=labels,
            init=init, resume=True, **self.device, **self.board("aff_model"),
            **self.options["train_aff"]))  # fmt: skip

    def make_rw(self, checkpoint: Path, cams: Path, out: Path) -> None:
        from wsss.stages.make_rw import MakeRwConfig
        from wsss.stages.make_rw import run as make_rw

        make_rw(MakeRwConfig(
            checkpoint=checkpoint, cams=cams, data=self.data, split=self.splits.cam, out=out,
            **self.device, **self.options["make_rw"]))  # fmt: skip

    def predict(self, checkpoint: Path, out: Path) -> None:
        from wsss.stages.predict import PredictConfig
        from wsss.stages.predict import run as predict

        predict(PredictConfig(
            checkpoint=checkpoint, data=self.data, split=self.splits.predict, out=out,
            **self.device, **self.options["predict"]))  # fmt: skip

    def evaluate(self, pred_dir: Path) -> dict[str, Any]:
        from wsss.stages.evaluate import EvalConfig
        from wsss.stages.evaluate import run as evaluate

        config = EvalConfig(pred=pred_dir, gt=self.data, split=self.splits.predict)
        return evaluate(config).scores.to_json()

    def _scored(self, step: str, split: str) -> bool:
        """Whether `split` has masks; if not, the step is recorded as skipped."""
        if split in self.splits.scored:
            return True
        ids = self.voc.split_ids(split)
        masked = sum(self.voc.has_mask(image_id) for image_id in ids)
        self.skipped[step] = (
            f"no ground-truth masks for split {split}"
            if not masked
            else f"masks for only {masked} of the {len(ids)} images of split {split} "
            "(make_pseudo.threshold=oracle picks the threshold on those)"
        )
        info(f"{step} skipped: {self.skipped[step]}")
        return False


def _suffix(tag: str) -> str:
    return f"_{tag}" if tag else ""


def _namer(tag: str) -> Callable[[str], str]:
    """A step's name, with the path's tag: "train-seg (rw)"."""
    return lambda stage: f"{stage} ({tag})" if tag else stage


def resolve_splits(recipe: Recipe, voc: VocDataset) -> Splits:
    lists = {path.stem for path in voc.split_path("train").parent.glob("*.txt")}

    def pick(name: str, fallback: str) -> str:
        return name if name in lists else fallback

    cam = pick(recipe.cam_split, "train")
    voc.split_ids(cam)  # a dataset without the list fails here, naming the lists it has
    splits = Splits(
        cam=cam,
        cam_eval=pick(recipe.cam_eval_split, cam),
        seg=pick(recipe.seg_split, cam),
        predict=pick(recipe.seg_eval_split, pick("val", cam)),
    )
    for split in {splits.cam, splits.cam_eval, splits.predict}:
        if all(voc.has_mask(image_id) for image_id in voc.split_ids(split)):
            splits.scored.add(split)
    return splits


def _prepare_data(config: PipelineConfig, resolved: Resolved, out: Path) -> Path:
    if config.prepare_voc:
        if config.data is None:
            raise WsssError("the VOC pipeline needs --voc ROOT")
        from wsss.stages.prepare_voc import PrepareVocConfig
        from wsss.stages.prepare_voc import run as prepare

        prepare(PrepareVocConfig(voc=config.data, sbd=config.sbd, check_images=False))
        return config.data
    if config.data is not None:
        return VocDataset.open(config.data).root
    if "demo" in resolved.stages:
        return ensure_demo(out / "data", generator_args(resolved.stages["demo"]))
    raise WsssError(
        f"the {resolved.recipe.name} recipe needs --data ROOT (a dataset in VOC layout)"
    )


# -- the summary -----------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cam_split_text(summary: dict[str, Any]) -> str:
    """The CAM figures' split, and their image count where it is part of the split."""
    images = summary.get("cam_eval_images")
    if images is not None and summary.get("cam_threshold_rule") == "oracle":
        return f"{summary['cam_split']}: the {images} images with masks"
    return summary["cam_split"]


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, object]]:
    """The CRF path's results, one row each (the table without the random-walk path)."""
    split = _cam_split_text(summary)
    rows: list[tuple[str, object]] = [
        (f"CAMs ({split}, threshold {summary['cam_threshold']:.2f}, "
         f"{summary['cam_threshold_rule']})", _pct(summary["cam_miou"])),
    ]  # fmt: skip
    if summary.get("cam_miou_oracle") is not None:
        rows.append((f"CAMs ({split}, oracle: threshold {summary['cam_threshold_oracle']:.2f} "
                     "picked on ground truth)", _pct(summary["cam_miou_oracle"])))  # fmt: skip
    rows += [
        (f"pseudo labels ({summary['pseudo_split']})", _pct(summary["pseudo_miou"])),
        (f"segmenter ({summary['seg_split']})", _pct(summary["seg_miou"])),
    ]
    rows += [(f"{step}: skipped", reason) for step, reason in summary.get("skipped", {}).items()]
    rows.append(("time this run", _time_text(summary)))
    return rows


def summary_table(summary: dict[str, Any]) -> Table:
    """The summary; with the random-walk path, both paths side by side."""
    title = f"wsss pipeline {summary['recipe']}: mIoU %"
    rw = summary.get("random_walk")
    if rw is None:
        return key_value_table(title, summary_rows(summary))
    table = Table(title=title)
    for column in ("", "CRF path", "random-walk path"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        plain(
            f"CAMs / random-walk maps ({_cam_split_text(summary)}, {summary['cam_threshold_rule']})"
        ),
        f"{_pct(summary['cam_miou'])} (t {summary['cam_threshold']:.2f})",
        f"{_pct(rw['rw_miou'])} (t {rw['rw_threshold']:.2f})",
    )
    if summary.get("cam_miou_oracle") is not None:
        table.add_row(
            "  oracle: threshold picked on ground truth",
            f"{_pct(summary['cam_miou_oracle'])} (t {summary['cam_threshold_oracle']:.2f})",
            f"{_pct(rw['rw_miou_oracle'])} (t {rw['rw_threshold_oracle']:.2f})",
        )
    table.add_row(
        "confident labels for train-aff",
        "-",
        f"fg {rw['confident_fg']:g} / bg {rw['confident_bg']:g} ({rw['confident_rule']})",
    )
    table.add_row(plain(f"pseudo labels ({summary['pseudo_split']})"), _pct(summary["pseudo_miou"]),
                  _pct(rw["pseudo_miou"]))  # fmt: skip
    if "walk_check" in rw:
        check = rw["walk_check"]
        verdict = "kept" if rw["kept"] else "dropped: the CRF labels are the run's"
        table.add_row(
            "walk check (no ground truth): agreement with the CRF labels",
            "-",
            f"{check['agreement_miou']:.1f} (min {check['min_agreement']:g}) -> {verdict}",
        )
    table.add_row(plain(f"segmenter ({summary['seg_split']})"), _pct(summary["seg_miou"]),
                  _pct(rw["seg_miou"]))  # fmt: skip
    for step, reason in summary.get("skipped", {}).items():
        table.add_row(f"{step}: skipped", reason, "")
    table.add_section()
    table.add_row("time this run (both paths)", _time_text(summary), "")
    return table


def _time_text(summary: dict[str, Any]) -> str:
    """Wall seconds, and CPU seconds where recorded (summaries before them have none)."""
    text = f"{summary['total_seconds']:.0f} s"
    if summary.get("total_cpu_seconds") is not None:
        text += f" ({summary['total_cpu_seconds']:.0f} CPU s)"
    return text


# -- several seeds ---------------------------------------------------------------------------

# The figures a multi-seed run summarises, where each run has them.
SEED_FIGURES = ("cam_miou", "cam_miou_oracle", "pseudo_miou", "seg_miou")


def run_seeds(config: PipelineConfig, seeds: Sequence[int]) -> dict[str, Any]:
    """The pipeline once per seed into OUT/seed-N (each resumable, a finished one reused),
    then each figure's mean, standard deviation (n - 1) and range over the seeds, saved as
    OUT/summary.json and printed as a table."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise WsssError(f"--seeds must name distinct seeds, got {','.join(map(str, seeds))}")
    if config.seed is not None:
        raise WsssError("give --seed or --seeds, not both")
    out = ensure_dir(config.out)
    runs: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        info(f"[bold cyan]=== seed {seed}[/]", markup=True)
        board = None if config.tensorboard is None else config.tensorboard / f"seed-{seed}"
        result = run(
            dataclasses.replace(config, out=out / f"seed-{seed}", seed=seed, tensorboard=board)
        )
        if result is not None:
            runs[str(seed)] = result.summary
    if config.dry_run:
        return {}
    figures = {key: _spread([s[key] for s in runs.values() if s.get(key) is not None])
               for key in SEED_FIGURES}  # fmt: skip
    walks = [s["random_walk"] for s in runs.values() if "random_walk" in s]
    rw = {name: _spread([w[key] for w in walks if w.get(key) is not None])
          for key, name in (("rw_miou", "rw_miou"), ("pseudo_miou", "rw_pseudo_miou"),
                            ("seg_miou", "rw_seg_miou"))}  # fmt: skip
    summary = {
        "recipe": config.recipe.name,
        "seeds": list(seeds),
        "runs": {seed: f"seed-{seed}/summary.json" for seed in runs},
        "figures": {key: value for key, value in {**figures, **rw}.items() if value},
    }
    write_json(out / "summary.json", summary)
    from wsss.stages.report import ReportConfig
    from wsss.stages.report import run as write_report

    info(f"report: {write_report(ReportConfig(run_dir=out)).path}")
    print_table(seeds_table(summary))
    return summary


def _spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def seeds_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"wsss pipeline {summary['recipe']}, seeds "
                  f"{', '.join(map(str, summary['seeds']))}: mIoU %")  # fmt: skip
    for column in ("figure", "mean", "std", "range", "per seed"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for key, spread in summary["figures"].items():
        table.add_row(key, f"{spread['mean']:.2f}", f"{spread['std']:.2f}",
                      f"{spread['min']:.2f} - {spread['max']:.2f}",
                      " / ".join(f"{v:.2f}" for v in spread["values"]))  # fmt: skip
    return table

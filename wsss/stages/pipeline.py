"""`wsss pipeline`: every stage in order, on the demo data or on PASCAL VOC 2012.

The pipeline holds no stage logic: it builds each stage's config from a `Recipe` and calls
the stage's `run`. Resuming is the stages' own job (per-image stages skip finished files,
trainers continue from `last.pt`), so re-running an interrupted pipeline continues where it
stopped; a trainer whose `final.pt` exists is not run again.

With `random_walk`, the random-walk path (docs/random_walk.md) runs after the CRF path in
the same run directory and shares its CAMs: confident labels -> train-aff -> make-rw ->
eval-cam -> make-pseudo -> train-seg -> predict -> eval, each into its own folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from wsss.errors import WsssError
from wsss.io import ensure_dir, read_json, write_json
from wsss.ui import info, key_value_table, plain, print_table

FINAL = "final.pt"


@dataclass(frozen=True)
class Recipe:
    """Per-stage settings of one reproduction; everything else is each stage's default."""

    name: str
    cam_split: str  # images the classifier trains on and pseudo labels are made for
    cam_eval_split: str  # images whose CAMs are scored (VOC: train, 1,464)
    seg_split: str
    seg_eval_split: str
    train_cam: dict[str, Any]
    make_cam: dict[str, Any]
    make_pseudo: dict[str, Any]
    train_seg: dict[str, Any]
    predict: dict[str, Any]
    demo: dict[str, Any] | None = None  # demo-data arguments, for the demo recipe
    # The random-walk path. train-aff takes backbone and pretrained from `train_cam`;
    # `aff_init` starts its backbone from the trained CAM classifier (train-aff --init).
    train_aff: dict[str, Any] = field(default_factory=dict)
    aff_init: bool = False
    make_rw: dict[str, Any] = field(default_factory=dict)
    # The ablation variant train-cam runs (`wsss.stages.ablation.VARIANTS`: baseline, pcl,
    # re, full) on top of `train_cam`, which holds the paper's full Puzzle-CAM settings.
    variant: str | None = None


DEMO = Recipe(
    name="demo",
    cam_split="train",
    cam_eval_split="train",
    seg_split="train",
    seg_eval_split="val",
    demo={"n_train": 300, "n_val": 100, "size": 128, "seed": 0},
    # From scratch at 128 px the paper's SGD lr 0.1 recipe does not learn (issue 3); this is
    # the AdamW recipe that does. `train_cam` holds the paper's full Puzzle-CAM settings (the
    # ablation's base); the demo trains the "pcl" variant, L_cls + L_p-cls without L_re: the
    # only setting measured that beat the plain CAM on the demo data, on both seeds tried
    # (CAM mIoU 56.3 / 56.8 vs 54.4 / 55.8), while L_re shrank the maps onto the parts at
    # every alpha, start and warm start tried (README "Puzzle-CAM on the demo data").
    variant="pcl",
    train_cam={
        "backbone": "resnet18",
        "pretrained": "none",
        "output_stride": 16,
        "epochs": 30,
        "batch_size": 32,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "warmup_epochs": 2,
        "schedule": "cosine",
        "augment": "resized-crop",
        "crop": 128,
        "pieces": 4,
        "alpha": 4.0,
        "re_level": "feature",
    },
    make_cam={"scales": (0.5, 1.0, 1.5, 2.0), "flip": True, "overlays": 8},
    make_pseudo={},
    train_seg={
        "backbone": "resnet18",
        "pretrained": "none",
        "output_stride": 16,
        "epochs": 15,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "warmup_epochs": 1,
        "schedule": "cosine",
        "crop": 128,
        "scale_range": (96, 160),
    },
    predict={"scales": (0.5, 1.0, 1.5), "flip": True},
    # docs/random_walk.md: with no ImageNet weights, start from the CAM classifier and train
    # the backbone too (55.6 -> 60.3 CAM mIoU there); 15 epochs at the demo's image size.
    train_aff={
        "freeze_backbone": False,
        "epochs": 15,
        "batch_size": 16,
        "crop": 128,
        "scale_range": (96, 160),
    },
    aff_init=True,
)

# SPEC sections 4-7: the paper's recipe for an ImageNet-pretrained ResNet-50 on VOC 2012.
VOC = Recipe(
    name="voc",
    cam_split="train_aug",
    cam_eval_split="train",
    seg_split="train_aug",
    seg_eval_split="val",
    train_cam={"backbone": "resnet50", "pretrained": "imagenet", "epochs": 15, "batch_size": 32},
    make_cam={"scales": (0.5, 1.0, 1.5, 2.0), "flip": True, "overlays": 16},
    make_pseudo={},
    train_seg={"backbone": "resnet50", "pretrained": "imagenet", "epochs": 50, "batch_size": 32},
    predict={"scales": (0.5, 1.0, 1.5, 2.0), "flip": True},
)

RECIPES = {"demo": DEMO, "voc": VOC}


def train_cam_options(config: PipelineConfig) -> dict[str, Any]:
    """The recipe's train-cam options under its variant (or `--variant`, which replaces it,
    never stacks on it)."""
    variant = variant_options(config.variant or config.recipe.variant)
    return {**config.recipe.train_cam, **variant}


def variant_options(variant: str | None) -> dict[str, Any]:
    """train-cam options of an ablation variant (`--variant`), none for the recipe's own."""
    if variant is None:
        return {}
    from wsss.stages.ablation import VARIANTS, pick_variants

    (name,) = pick_variants([variant])
    return dict(VARIANTS[name])


@dataclass
class PipelineConfig:
    out: Path
    recipe: Recipe
    data: Path | None = None  # dataset root; the demo recipe generates it under OUT/data
    sbd: Path | None = None
    device: str = "auto"
    workers: int | None = None
    variant: str | None = None  # ablation variant of train-cam (default: the recipe's)
    random_walk: bool = False  # also run the random-walk path


@dataclass
class PipelineResult:
    summary: dict[str, Any]
    summary_path: Path


def run(config: PipelineConfig) -> PipelineResult:
    out = ensure_dir(config.out)
    recipe = config.recipe
    timings: dict[str, float] = {}

    def step(name: str, action: Callable[[], Any]) -> Any:
        info(f"[bold cyan]== {name}[/]", markup=True)
        start = time.perf_counter()
        value = action()
        timings[name] = round(time.perf_counter() - start, 1)
        return value

    data = step("data", lambda: _prepare_data(config, out))
    variant = config.variant or recipe.variant
    cam_options = train_cam_options(config)
    cam_model = step(
        "train-cam",
        lambda: train_classifier(data, out / "cam_model", recipe.cam_split, cam_options,
                                 config.device, config.workers),
    )  # fmt: skip
    step("make-cam", lambda: _make_cam(config, data, cam_model, out / "cams"))
    crf = _cams_to_segmenter(config, data, out, out / "cams", step)
    rw = None
    if config.random_walk:
        rw = _random_walk_path(config, data, out, cam_model, cam_options, crf, step)

    summary = {
        "recipe": recipe.name,
        "variant": variant or "full",
        "data": str(data),
        "cam_miou": crf["cam_miou"],
        "cam_threshold": crf["cam_threshold"],
        "cam_split": recipe.cam_eval_split,
        "pseudo_miou": crf["pseudo_miou"],
        "pseudo_split": recipe.cam_split,
        "seg_miou": crf["seg_miou"],
        "seg_split": recipe.seg_eval_split,
        **({"random_walk": rw} if rw is not None else {}),
        "seconds": timings,
        "total_seconds": round(sum(timings.values()), 1),
    }
    summary_path = write_json(out / "summary.json", summary)
    from wsss.report import pipeline_figures

    pipeline_figures(out, data, recipe.cam_split, recipe.seg_eval_split)
    from rich.markup import escape

    from wsss.stages.report import ReportConfig
    from wsss.stages.report import run as write_report

    info(f"report: {escape(str(write_report(ReportConfig(run_dir=out)).path))}")
    print_table(summary_table(summary))
    return PipelineResult(summary=summary, summary_path=summary_path)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, object]]:
    """The CRF path's results, one row each (the table without the random-walk path)."""
    return [
        (f"CAMs ({summary['cam_split']}, threshold {summary['cam_threshold']:.2f})",
         _pct(summary["cam_miou"])),
        (f"pseudo labels ({summary['pseudo_split']})", _pct(summary["pseudo_miou"])),
        (f"segmenter ({summary['seg_split']})", _pct(summary["seg_miou"])),
        ("time this run", f"{summary['total_seconds']:.0f} s"),
    ]  # fmt: skip


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
        plain(f"CAMs / random-walk maps ({summary['cam_split']})"),
        f"{_pct(summary['cam_miou'])} (t {summary['cam_threshold']:.2f})",
        f"{_pct(rw['rw_miou'])} (t {rw['rw_threshold']:.2f})",
    )
    table.add_row(
        "confident labels for train-aff",
        "-",
        f"fg {rw['confident_fg']:g} / bg {rw['confident_bg']:g} ({rw['confident_rule']})",
    )
    table.add_row(plain(f"pseudo labels ({summary['pseudo_split']})"), _pct(summary["pseudo_miou"]),
                  _pct(rw["pseudo_miou"]))  # fmt: skip
    table.add_row(plain(f"segmenter ({summary['seg_split']})"), _pct(summary["seg_miou"]),
                  _pct(rw["seg_miou"]))  # fmt: skip
    table.add_section()
    table.add_row("time this run (both paths)", f"{summary['total_seconds']:.0f} s", "")
    return table


CONFIDENT_RULE = "fg = 2 t*, bg = t*/2"


def confident_thresholds(best_threshold: float) -> tuple[float, float]:
    """train-aff's confident-label thresholds from eval-cam's best threshold t*.

    docs/random_walk.md: fixed thresholds (the SPEC's 0.40 / 0.10) must bracket the CAMs'
    own best threshold, else whole objects become confident background. fg is capped at 1.
    """
    return min(1.0, 2 * best_threshold), best_threshold / 2


def _cams_to_segmenter(
    config: PipelineConfig, data: Path, out: Path, cams: Path, step: Callable[..., Any],
    tag: str = "",
) -> dict[str, Any]:  # fmt: skip
    """eval-cam -> make-pseudo (CRF, eval-cam's best threshold) -> train-seg -> predict ->
    eval, for one folder of CAM files; `tag` names the steps and suffixes the folders."""
    recipe = config.recipe
    suffix = f"_{tag}" if tag else ""

    def name(stage: str) -> str:
        return f"{stage} ({tag})" if tag else stage

    cam_eval = step(name("eval-cam"), lambda: _eval_cam(data, cams, recipe.cam_eval_split))
    labels = out / f"pseudo{suffix}"
    pseudo = step(name("make-pseudo"), lambda: _make_pseudo(config, data, cams, labels))
    seg_model = step(
        name("train-seg"),
        lambda: train_segmenter(data, out / f"seg_model{suffix}", recipe.seg_split, labels,
                                recipe.train_seg, config.device, config.workers),
    )  # fmt: skip
    pred_dir = out / f"pred_{recipe.seg_eval_split}{suffix}"
    step(name("predict"), lambda: _predict(config, data, seg_model, pred_dir))
    seg_eval = step(name("eval"), lambda: _evaluate(data, pred_dir, recipe.seg_eval_split))
    return {
        "cam_miou": cam_eval["best_miou"],
        "cam_threshold": cam_eval["best_threshold"],
        "pseudo_miou": pseudo.get("miou") if pseudo else None,
        "seg_miou": seg_eval["miou"],
    }


def _random_walk_path(
    config: PipelineConfig, data: Path, out: Path, cam_model: Path, cam_options: dict[str, Any],
    crf: dict[str, Any], step: Callable[..., Any],
) -> dict[str, Any]:  # fmt: skip
    """Confident labels -> train-aff -> make-rw, then the CRF path's steps on the walked maps."""
    recipe = config.recipe
    fg, bg = confident_thresholds(crf["cam_threshold"])
    confident = out / "pseudo_confident"
    step(
        "make-pseudo (confident)",
        lambda: _make_pseudo(config, data, out / "cams", confident, confident=(fg, bg)),
    )
    aff_options = {
        "backbone": cam_options["backbone"],
        "pretrained": cam_options["pretrained"],
        **({"init": cam_model} if recipe.aff_init else {}),
        **recipe.train_aff,
    }
    aff_model = step(
        "train-aff",
        lambda: train_affinity(data, out / "aff_model", recipe.cam_split, confident, aff_options,
                               config.device, config.workers),
    )  # fmt: skip
    step("make-rw", lambda: _make_rw(config, data, aff_model, out / "cams", out / "rw"))
    walked = _cams_to_segmenter(config, data, out, out / "rw", step, tag="rw")
    return {
        "rw_miou": walked["cam_miou"],
        "rw_threshold": walked["cam_threshold"],
        "confident_fg": fg,
        "confident_bg": bg,
        "confident_rule": CONFIDENT_RULE,
        "pseudo_miou": walked["pseudo_miou"],
        "seg_miou": walked["seg_miou"],
    }


# -- steps ---------------------------------------------------------------------------------


def ensure_demo_data(root: Path, demo_args: dict[str, Any]) -> Path:
    """Generate the demo dataset unless a complete one with the same arguments is there."""
    from wsss.data.demo import generate_demo

    done = Path(root) / "demo_complete.json"
    if not (done.is_file() and read_json(done) == demo_args):
        generate_demo(root, **demo_args)
        write_json(done, demo_args)
    return Path(root)


def train_classifier(
    data: Path, out: Path, split: str, options: dict[str, Any], device: str, workers: int | None
) -> Path:
    """Train (or resume, or skip when finished) a CAM classifier; returns its final weights."""
    from wsss.stages.train_cam import TrainCamConfig
    from wsss.stages.train_cam import run as train

    return _train(train, TrainCamConfig, out, workers, data=data, split=split, device=device,
                  **options)  # fmt: skip


def train_segmenter(
    data: Path, out: Path, split: str, labels: Path | None, options: dict[str, Any], device: str,
    workers: int | None,
) -> Path:  # fmt: skip
    """Train (or resume, or skip when finished) DeepLab on pseudo labels (None: the masks)."""
    from wsss.stages.train_seg import TrainSegConfig
    from wsss.stages.train_seg import run as train

    return _train(train, TrainSegConfig, out, workers, data=data, split=split, labels=labels,
                  device=device, **options)  # fmt: skip


def train_affinity(
    data: Path, out: Path, split: str, labels: Path, options: dict[str, Any], device: str,
    workers: int | None,
) -> Path:  # fmt: skip
    """Train (or resume, or skip when finished) the affinity net on confident labels."""
    from wsss.stages.train_aff import TrainAffConfig
    from wsss.stages.train_aff import run as train

    return _train(train, TrainAffConfig, out, workers, data=data, split=split, labels=labels,
                  device=device, **options)  # fmt: skip


def _train(
    train: Callable[[Any], Any], config_type: Callable[..., Any], out: Path,
    workers: int | None, **options: Any,
) -> Path:  # fmt: skip
    """Run a trainer stage with resume on, unless its final.pt (made with the same options:
    a changed recipe must not reuse an old model) exists; returns final.pt."""
    from wsss.engine.checkpoint import load_checkpoint
    from wsss.engine.trainer import check_same_args

    extra = {"workers": workers} if workers is not None else {}
    config = config_type(out=out, resume=True, **options, **extra)
    final = out / FINAL
    if final.is_file():
        check_same_args(final, load_checkpoint(final).get("args", {}), config.args())
        info(f"{final} exists: skipped")
        return final
    return Path(train(config).final)


def _prepare_data(config: PipelineConfig, out: Path) -> Path:
    recipe = config.recipe
    if recipe.demo is not None:
        return ensure_demo_data(out / "data", dict(recipe.demo))
    if config.data is None:
        raise WsssError("the VOC pipeline needs --voc ROOT")
    from wsss.stages.prepare_voc import PrepareVocConfig
    from wsss.stages.prepare_voc import run as prepare

    prepare(PrepareVocConfig(voc=config.data, sbd=config.sbd, check_images=False))
    return config.data


def _make_cam(config: PipelineConfig, data: Path, checkpoint: Path, out: Path) -> None:
    from wsss.stages.make_cam import MakeCamConfig
    from wsss.stages.make_cam import run as make_cam

    extra = {"workers": config.workers} if config.workers is not None else {}
    make_cam(
        MakeCamConfig(
            checkpoint=checkpoint,
            data=data,
            split=config.recipe.cam_split,
            out=out,
            device=config.device,
            **config.recipe.make_cam,
            **extra,
        )
    )


def _eval_cam(data: Path, cams: Path, split: str) -> dict[str, Any]:
    from wsss.stages.eval_cam import EvalCamConfig
    from wsss.stages.eval_cam import run as eval_cam

    result = eval_cam(EvalCamConfig(cams=cams, gt=data, split=split))
    return {"best_miou": result.sweep.best_miou, "best_threshold": result.sweep.best_threshold}


def _make_pseudo(
    config: PipelineConfig, data: Path, cams: Path, out: Path, **options: Any
) -> dict[str, Any]:
    from wsss.stages.make_pseudo import MakePseudoConfig
    from wsss.stages.make_pseudo import run as make_pseudo

    result = make_pseudo(
        MakePseudoConfig(
            cams=cams,
            data=data,
            split=config.recipe.cam_split,
            out=out,
            # loader "0 workers" (in-process) is one CRF worker
            workers=None if config.workers is None else max(1, config.workers),
            **{**config.recipe.make_pseudo, **options},
        )
    )
    return result.scores.to_json() if result.scores is not None else {}


def _make_rw(config: PipelineConfig, data: Path, checkpoint: Path, cams: Path, out: Path) -> None:
    from wsss.stages.make_rw import MakeRwConfig
    from wsss.stages.make_rw import run as make_rw

    extra = {"workers": config.workers} if config.workers is not None else {}
    make_rw(
        MakeRwConfig(
            checkpoint=checkpoint,
            cams=cams,
            data=data,
            split=config.recipe.cam_split,
            out=out,
            device=config.device,
            **config.recipe.make_rw,
            **extra,
        )
    )


def _predict(config: PipelineConfig, data: Path, checkpoint: Path, out: Path) -> None:
    from wsss.stages.predict import PredictConfig
    from wsss.stages.predict import run as predict

    extra = {"workers": config.workers} if config.workers is not None else {}
    predict(
        PredictConfig(
            checkpoint=checkpoint,
            data=data,
            split=config.recipe.seg_eval_split,
            out=out,
            device=config.device,
            **config.recipe.predict,
            **extra,
        )
    )


def _evaluate(data: Path, pred_dir: Path, split: str) -> dict[str, Any]:
    from wsss.stages.evaluate import EvalConfig
    from wsss.stages.evaluate import run as evaluate

    return evaluate(EvalConfig(pred=pred_dir, gt=data, split=split)).scores.to_json()

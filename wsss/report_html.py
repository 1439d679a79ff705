"""`report.html`: one self-contained page that shows a pipeline run to a person.

The page is assembled from what the run directory holds, found through the stages' own
manifests rather than fixed folder names: summary.json, each trainer's metrics.jsonl, the
eval-cam sweeps, the eval JSONs of pseudo labels and predictions, and sample grids drawn
from the CAM and label files. Every part is optional; what is absent is said on the page.
Figures are PNGs inlined as data URIs and the CSS is inline, so the file opens anywhere,
offline, and can be mailed or archived as one file. Every string that comes from the user
(paths, class names, split names) goes through `html.escape`.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import wsss
from wsss.camfile import EVAL_CAM_RECORD
from wsss.data.palette import voc_colormap
from wsss.data.voc import VocDataset
from wsss.errors import WsssError, file_error
from wsss.io import MANIFEST_NAME, read_json, read_manifest, read_text_lines
from wsss.mask_threshold import RECORD as MASK_RECORD
from wsss.overlay import curves_png, figure_png
from wsss.report import Column, sample_grid

REPORT_NAME = "report.html"
TILE = 160  # px: sample pictures of any size are fitted into squares of this side
METRICS = "metrics.jsonl"
EVAL_JSON = "eval.json"
# metrics.jsonl keys that are bookkeeping, not loss terms
NOT_LOSSES = frozenset(
    {"epoch", "iterations", "lr", "images", "images_per_s", "seconds", "alpha", "eval"}
)
TRAINERS = ("train-cam", "train-seg", "train-aff")
PIPELINE = ("train-cam", "make-cam", "make-pseudo", "train-seg", "predict")  # the CRF path
CAM_MAKERS = ("make-cam", "make-rw")
LABEL_MAKERS = ("make-pseudo", "predict")
WHAT = {
    "train-cam": "CAM classifier",
    "train-seg": "segmenter",
    "train-aff": "affinity net",
    "make-cam": "CAMs",
    "make-rw": "random-walk maps",
    "make-pseudo": "pseudo labels",
    "predict": "predictions",
}


@dataclass
class Folder:
    """A stage's output folder in the run directory, as its manifest describes it."""

    path: Path
    stage: str
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.get("params", {})

    @property
    def label(self) -> str:
        return f"{self.name} ({WHAT.get(self.stage, self.stage)})"


@dataclass
class Report:
    html: str
    sections: list[str]
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # "<file>: <problem>", one per file


def build_report(run_dir: Path, samples: int = 4) -> Report:
    """The page for `run_dir`; `missing` lists, one line each, what the run lacks, and
    `damaged` each file that could not be read or shown (the page shows the rest)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise file_error(
            run_dir, "not a directory" if run_dir.exists() else "run directory not found"
        )
    missing: list[str] = []
    damaged: list[str] = []
    folders = discover(run_dir, damaged)
    summary = _read_summary(run_dir, missing, damaged)
    if summary is None and not folders:
        raise file_error(run_dir, "not a wsss run directory (no summary.json, no stage manifests)")
    if summary is not None and "seeds" in summary and not folders:
        return _report(run_dir, [("Seeds", seeds_section(run_dir, summary, damaged))], [], damaged)
    made = {folder.stage for folder in folders}
    missing += [f"{WHAT[stage]}: {stage} has not run" for stage in PIPELINE if stage not in made]
    if not made & {"train-aff", "make-rw"}:
        missing.append("random-walk path: not run (wsss pipeline ... --random-walk adds it)")
    parts = [
        ("Summary", summary_section(summary, folders)),
        ("Training curves", training_section(folders, missing, damaged)),
        ("CAM threshold", threshold_section(folders, missing, damaged)),
        ("Per-class IoU", iou_section(folders, missing, damaged)),
        ("Samples", samples_section(run_dir, summary, folders, samples, missing, damaged)),
        ("What next", next_section(run_dir, folders)),
    ]
    return _report(run_dir, parts, missing, damaged)


def _report(
    run_dir: Path, parts: list[tuple[str, str]], missing: list[str], damaged: list[str]
) -> Report:
    """The page of these sections, with the lists of damaged files and of what is missing."""
    body = [f"<h1>wsss run report</h1><p class=path>{escape(str(run_dir.resolve()))}</p>"]
    if damaged:
        items = "".join(f"<li>{escape(line)}</li>" for line in damaged)
        body.append(
            "<div class=damaged><b>Damaged files</b> (left out; the rest of the page is shown)"
            f"<ul>{items}</ul></div>"
        )
    if missing:
        items = "".join(f"<li>{escape(line)}</li>" for line in missing)
        body.append(f"<div class=missing><b>Not in this run</b><ul>{items}</ul></div>")
    for title, html in parts:
        body.append(f"<h2>{escape(title)}</h2>{html}")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body.append(f"<p class=foot>written by wsss {escape(wsss.__version__)}, {stamp}</p>")
    page = PAGE.format(title=escape(f"wsss report: {run_dir.name}"), body="\n".join(body))
    damaged[:] = dict.fromkeys(damaged)  # a file read by two sections is named once
    sections = [title for title, _ in parts]
    return Report(html=page, sections=sections, missing=missing, damaged=damaged)


def next_section(run_dir: Path, folders: Sequence[Folder]) -> str:
    """What to do with the run's segmenter: segment new images, take it out of wsss."""
    segmenters = sorted(
        folder.path / "final.pt" for folder in folders if folder.stage == "train-seg"
    )
    model = segmenters[0] if segmenters else run_dir / "seg_model" / "final.pt"
    ready = model.is_file()
    commands = (
        f"wsss predict --checkpoint {model} --images PHOTOS --out {run_dir / 'photos'} --overlay\n"
        f"wsss export --checkpoint {model} --format onnx --out {run_dir / 'segmenter.onnx'}"
    )
    state = "" if ready else " once train-seg has written it"
    return (
        f"<p>Segment new images with the segmenter{escape(state)} (no labels, lists or VOC "
        "layout needed: folders, globs or files, any size; label maps mirror the folders, "
        "classes.csv gives each image's pixel share per class), and export it to run "
        "without wsss (TorchScript or ONNX; docs/export.md):</p>"
        f"<pre>{escape(commands)}</pre>"
    )


# -- reading the run directory ----------------------------------------------------------------


def discover(run_dir: Path, damaged: list[str]) -> list[Folder]:
    """The run's stage folders (one level down), in the order they were made."""
    folders = []
    for path in sorted(p for p in run_dir.iterdir() if (p / MANIFEST_NAME).is_file()):
        try:
            manifest = read_manifest(path)
        except WsssError as exc:  # a corrupt manifest hides one folder, not the report
            damaged.append(str(exc))
            continue
        assert manifest is not None
        folders.append(Folder(path, str(manifest["stage"]), manifest))
    return sorted(folders, key=lambda f: (str(f.manifest.get("created", "")), f.name))


def by_kind(folders: Sequence[Folder], stages: Sequence[str]) -> list[Folder]:
    """The folders of `stages`, grouped in that order (CAMs, then pseudo labels, then
    predictions), each group in the order made."""
    return sorted((f for f in folders if f.stage in stages), key=lambda f: stages.index(f.stage))


def _read_summary(run_dir: Path, missing: list[str], damaged: list[str]) -> dict[str, Any] | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        missing.append("summary.json: the pipeline has not finished (or was run stage by stage)")
    return _read_optional_json(path, damaged)


def _read_optional_json(path: Path, damaged: list[str]) -> dict[str, Any] | None:
    """A JSON object, or None when absent; a corrupt file (or one that is not an object)
    is noted in `damaged`."""
    if not path.is_file():
        return None
    try:
        content = read_json(path)
    except WsssError as exc:
        damaged.append(str(exc))
        return None
    if not isinstance(content, dict):
        damaged.append(f"{path}: expected a JSON object, got {_json_kind(content)}")
        return None
    return content


def _json_kind(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _number(value: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    """A JSON number (not true/false) within [low, high]: what a damaged file lacks."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _percent_or_null(value: Any) -> bool:
    return value is None or _number(value, 0.0, 100.0)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The epoch records of a metrics.jsonl; a torn last line (a kill mid-write) is skipped."""
    records = []
    for line in read_text_lines(path, "metrics file"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "epoch" in record:
            records.append(record)
    return records


# A loss or metric beyond this is no training's value but a damaged file (and beyond ~1e307
# matplotlib cannot even draw it).
PLOTTABLE = 1e30


def check_metrics(path: Path, records: Sequence[dict[str, Any]]) -> str | None:
    """What makes a metrics file unplottable (a non-integer epoch, a loss of 1e308, a
    periodic evaluation that is not a number), or None."""
    for record in records:
        epoch = record.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            return f"{path}: epoch {epoch!r:.40} is not an integer"
        for key, value in record.items():
            if key in NOT_LOSSES or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if not _number(value, -PLOTTABLE, PLOTTABLE):
                return f"{path}: epoch {epoch}: '{key}' is {value!r:.40} (not a plottable value)"
        evaluation = record.get("eval")
        if isinstance(evaluation, dict) and not _number(
            evaluation.get("metric"), -PLOTTABLE, PLOTTABLE
        ):
            metric = evaluation.get("metric")
            return f"{path}: epoch {epoch}: eval metric {metric!r:.40} is not a number"
    return None


# -- sections ---------------------------------------------------------------------------------


def summary_section(summary: dict[str, Any] | None, folders: Sequence[Folder]) -> str:
    """summary.json as a table (nested objects as groups), then what each stage folder holds."""
    html = []
    if summary is None:
        html.append(note("No summary.json: the values below come from each stage's own files."))
    else:
        rows, timing = [], None
        for key, value in summary.items():
            if key == "seconds" and isinstance(value, dict):
                timing = value
            elif isinstance(value, dict):
                rows.append(f"<tr><th colspan=2 class=group>{escape(key)}</th></tr>")
                rows += [_row(k, v, indent=True) for k, v in value.items()]
            else:
                rows.append(_row(key, value))
        html.append(f"<table class=kv><caption>summary.json</caption>{''.join(rows)}</table>")
        if timing:
            rows = [_row(k, v) for k, v in timing.items()]
            html.append(
                f"<table class=kv><caption>seconds per step</caption>{''.join(rows)}</table>"
            )
    if folders:
        rows = [_stage_row(folder) for folder in folders]
        html.append(
            "<table><caption>stage folders</caption><tr><th>folder</th><th>stage</th>"
            f"<th>state</th></tr>{''.join(rows)}</table>"
        )
    return "".join(html)


def seeds_section(run_dir: Path, summary: dict[str, Any], damaged: list[str]) -> str:
    """A multi-seed run (`pipeline run --seeds`): each figure's mean, standard deviation,
    range and per-seed values, then a link to each seed's own report."""
    figures = summary.get("figures")
    seeds = summary.get("seeds")
    if not isinstance(figures, dict) or not isinstance(seeds, list):
        damaged.append(f"{run_dir / 'summary.json'}: a seeds summary without figures or seeds")
        return note("The seeds summary could not be read.")
    rows = []
    for key, spread in figures.items():
        values = spread.get("values") if isinstance(spread, dict) else None
        numbers = [spread.get(k) for k in ("mean", "std", "min", "max")] if values else []
        if not numbers or not all(map(_number, numbers + list(values))):
            damaged.append(f"{run_dir / 'summary.json'}: figure {key} is not numbers")
            continue
        mean, std, low, high = numbers
        cells = [f"{mean:.2f}", f"{std:.2f}", f"{low:.2f} - {high:.2f}",
                 " / ".join(f"{v:.2f}" for v in values)]  # fmt: skip
        rows.append(f"<tr><td>{escape(str(key))}</td>"
                    + "".join(f"<td class=num>{c}</td>" for c in cells) + "</tr>")  # fmt: skip
    seed_list = ", ".join(escape(str(seed)) for seed in seeds)
    html = [
        f"<table><caption>mIoU % over seeds {seed_list} (standard deviation: n - 1)</caption>"
        "<tr><th>figure</th><th>mean</th><th>std</th><th>range</th><th>per seed</th></tr>"
        f"{''.join(rows)}</table>"
    ]
    links = []
    for seed in seeds:
        page = run_dir / f"seed-{seed}" / REPORT_NAME
        name = escape(f"seed-{seed}/{REPORT_NAME}")
        links.append(f'<li><a href="{name}">{name}</a></li>' if page.is_file() else
                     f"<li>{name}: not written yet</li>")  # fmt: skip
    html.append(f"<p>Each seed's own report:</p><ul>{''.join(links)}</ul>")
    return "".join(html)


def _row(key: str, value: Any, indent: bool = False) -> str:
    cls = " class=sub" if indent else ""
    return f"<tr><td{cls}>{escape(key)}</td><td class=num>{escape(_fmt(value))}</td></tr>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.2f}"
    if value is None:
        return "n/a"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _stage_row(folder: Folder) -> str:
    return (
        f"<tr><td>{escape(folder.name)}</td><td>{escape(folder.stage)}</td>"
        f"<td>{escape(stage_state(folder))}</td></tr>"
    )


def stage_state(folder: Folder) -> str:
    """A trainer's epochs and whether final.pt exists; a per-image stage's file count."""
    if folder.stage in TRAINERS:
        done = len(read_metrics(folder.path / METRICS)) if (folder.path / METRICS).is_file() else 0
        planned = folder.params.get("epochs", "?")
        finished = (folder.path / "final.pt").is_file()
        return f"{done} of {planned} epochs" + (", finished" if finished else ", not finished")
    if "complete" in folder.manifest:
        files = folder.manifest.get("files", "?")
        return f"{files} files, " + ("complete" if folder.manifest["complete"] else "incomplete")
    return "done"


def training_section(folders: Sequence[Folder], missing: list[str], damaged: list[str]) -> str:
    html = []
    for folder in folders:
        if folder.stage not in TRAINERS:
            continue
        path = folder.path / METRICS
        try:
            records = read_metrics(path) if path.is_file() else []
        except WsssError as exc:  # not text (a binary file in its place)
            damaged.append(str(exc))
            continue
        if not records:
            missing.append(f"{folder.name}/{METRICS}: no finished epoch yet")
            continue
        problem = check_metrics(path, records)
        if problem is not None:
            damaged.append(problem)
            continue
        caption = f"{folder.label}: {stage_state(folder)}"
        html.append(figure(training_png(records, folder.name), caption))
    if not html:
        return note("No training curves: no trainer has finished an epoch.")
    return "".join(html)


def training_png(records: Sequence[dict[str, Any]], title: str) -> bytes:
    """Loss terms per epoch; beside them the periodic evaluation's metric when there is one."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in records]
    terms = sorted({k for r in records for k, v in r.items()
                    if k not in NOT_LOSSES and isinstance(v, int | float)})  # fmt: skip
    evals = [(r["epoch"], r["eval"]) for r in records if isinstance(r.get("eval"), dict)]
    figure = Figure(figsize=(9 if evals else 5, 3.2), dpi=100)
    axes = figure.subplots(1, 2 if evals else 1, squeeze=False)[0]
    for term in terms:
        values = [r.get(term, float("nan")) for r in records]
        width = 2.2 if term == "loss" else 1.2
        axes[0].plot(epochs, values, marker="o", markersize=3, linewidth=width, label=term)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss (epoch mean)")
    axes[0].set_title(title)
    axes[0].legend(fontsize="small")
    if evals:
        name = str(evals[-1][1].get("name", "eval"))
        axes[1].plot([e for e, _ in evals], [v.get("metric") for _, v in evals], marker="o",
                     color="tab:green")  # fmt: skip
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel(name)
        axes[1].set_title("periodic evaluation")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return figure_png(figure)


def _valid_curve(curve: Any) -> bool:
    """[[threshold in [0, 1], mIoU % or null], ...], as eval-cam and the masks pick write it."""
    return isinstance(curve, list) and all(
        isinstance(p, list) and len(p) == 2 and _number(p[0], 0.0, 1.0) and _percent_or_null(p[1])
        for p in curve
    )


def check_sweep(path: Path, record: dict[str, Any]) -> str | None:
    """What makes an eval-cam record unusable here, or None. A sweep without a best
    threshold (masks that are all ignore: `best_threshold` null) is valid and shown so."""
    curve = record.get("curve")
    if not _valid_curve(curve):
        return f"{path}: 'curve' must be [[threshold, mIoU %], ...], got {curve!r:.60}"
    if not (record.get("best_threshold") is None or _number(record["best_threshold"], 0.0, 1.0)):
        return f"{path}: 'best_threshold' {record['best_threshold']!r:.40} is not in [0, 1]"
    if not _percent_or_null(record.get("best_miou")):
        return f"{path}: 'best_miou' {record.get('best_miou')!r:.40} is not a percentage"
    return None


def check_mask_pick(path: Path, record: dict[str, Any]) -> str | None:
    """What makes a `--threshold masks` record unusable here, or None."""
    curve = record.get("curve")
    if not curve or not _valid_curve(curve):
        return f"{path}: 'curve' must be [[threshold, mIoU %], ...], got {curve!r:.60}"
    if not _number(record.get("threshold"), 0.0, 1.0):
        return f"{path}: 'threshold' {record.get('threshold')!r:.40} is not in [0, 1]"
    if not _number(record.get("miou"), 0.0, 100.0):
        return f"{path}: 'miou' {record.get('miou')!r:.40} is not a percentage"
    images = record.get("images")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        return f"{path}: 'images' {images!r:.40} is not a count of images"
    return None


def _records(
    folders: Sequence[Folder],
    name: str,
    check: Callable[[Path, dict[str, Any]], str | None],
    damaged: list[str],
    missing: list[str] | None = None,
    why_missing: str = "",
) -> dict[str, dict[str, Any]]:
    """The usable `name` records of the folders that have one, by folder label; a damaged
    one is noted in `damaged`, an absent one in `missing` (when given) with `why_missing`."""
    records = {}
    for folder in folders:
        path = folder.path / name
        if not path.is_file():
            if missing is not None:
                missing.append(f"{folder.name}/{name}: {why_missing}")
            continue
        record = _read_optional_json(path, damaged)
        if record is None:
            continue
        problem = check(path, record)
        if problem is not None:
            damaged.append(problem)
            continue
        records[folder.label] = record
    return records


def threshold_section(folders: Sequence[Folder], missing: list[str], damaged: list[str]) -> str:
    cam_folders = [f for f in folders if f.stage in CAM_MAKERS]
    if not cam_folders:
        return note("No CAMs in this run yet.")
    picks = {f"{label}: pseudo labels (--threshold masks)": record for label, record in
             _records(cam_folders, MASK_RECORD, check_mask_pick, damaged).items()}  # fmt: skip
    sweeps = _records(cam_folders, EVAL_CAM_RECORD, check_sweep, damaged, missing,
                      "not scored (eval-cam has not run on these maps, or their split has no "
                      "pixel masks)")  # fmt: skip
    if not sweeps and not picks:
        return note("No threshold sweep: eval-cam needs ground-truth masks of the CAM split.")
    curves = {label: ([(t, math.nan if m is None else m) for t, m in r["curve"]],
                      (r["best_threshold"], r["best_miou"]))
              for label, r in sweeps.items()
              if r["best_threshold"] is not None and r["best_miou"] is not None}  # fmt: skip
    curves |= {label: ([(t, math.nan if m is None else m) for t, m in r["curve"]],
                       (r["threshold"], r["miou"])) for label, r in picks.items()}  # fmt: skip
    png = curves_png(curves, "mIoU vs background threshold") if curves else None
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td>{escape(str(r.get('split', '?')))}</td>"
        f"<td class=num>{escape(_fmt(r.get('images', '?')))}</td>"
        f"<td class=num>{escape(_fmt(r['best_threshold']))}</td>"
        f"<td class=num>{escape(_fmt(r['best_miou']))}</td></tr>"
        for label, r in sweeps.items()
    ) + "".join(
        f"<tr><td>{escape(label)}</td><td>the images with masks</td>"
        f"<td class=num>{escape(_fmt(r['images']))}</td>"
        f"<td class=num>{escape(_fmt(r['threshold']))}</td>"
        f"<td class=num>{escape(_fmt(r['miou']))}</td></tr>"
        for label, r in picks.items()
    )
    table = (
        "<table><tr><th>maps</th><th>split</th><th>images</th><th>best threshold (on masks)</th>"
        f"<th>best mIoU % (on masks)</th></tr>{rows}</table>"
    )
    caption = (
        "mIoU of the maps at each background threshold; the star is the best, an oracle picked "
        "on the masks (the run's own threshold is label-free: summary above)"
    )
    if picks:
        caption = (
            "mIoU at each background threshold, scored on the masks; the star is each curve's "
            "best. The pseudo-label curve is the record of --threshold masks: the labels "
            "(threshold + CRF) of the images with masks; a run whose cam_threshold_rule is "
            "masks (summary above) uses its best"
        )
    if png is None:  # every sweep undefined (masks all ignore): no curve to draw
        return note("No threshold has a defined mIoU (the masks are all ignore).") + table
    return figure(png, caption) + table


def check_scores(path: Path, scores: dict[str, Any]) -> str | None:
    """What makes an evaluation JSON's per-class IoU unusable (a value that is not a
    percentage), or None."""
    for key, value in scores["iou"].items():
        if not _percent_or_null(value):
            return f"{path}: IoU of '{key}' is {value!r:.40}, not a percentage"
    if not _percent_or_null(_miou(scores)):
        return f"{path}: the mIoU {_miou(scores)!r:.40} is not a percentage"
    return None


def iou_section(folders: Sequence[Folder], missing: list[str], damaged: list[str]) -> str:
    """One column per evaluated output (CAMs at their best threshold, pseudo labels,
    predictions), one row per class, cells shaded by IoU."""
    columns: dict[str, dict[str, Any]] = {}
    for folder in by_kind(folders, CAM_MAKERS + LABEL_MAKERS):
        name = EVAL_CAM_RECORD if folder.stage in CAM_MAKERS else EVAL_JSON
        path = folder.path / name
        scores = _read_optional_json(path, damaged)
        if scores is None or not isinstance(scores.get("iou"), dict):
            continue
        problem = check_scores(path, scores)
        if problem is not None:
            if not any(line.startswith(f"{path}:") for line in damaged):  # once per file
                damaged.append(problem)
            continue
        columns[folder.label] = scores
    if not columns:
        missing.append("per-class IoU: no evaluation JSON (no pixel masks, or eval has not run)")
        return note(
            "No per-class IoU: nothing in this run was scored against pixel masks (the dataset "
            "has none, or eval has not run). Judge the run by the samples below."
        )
    classes = list(dict.fromkeys(c for scores in columns.values() for c in scores["iou"]))
    head = "".join(f"<th>{escape(label)}</th>" for label in columns)
    rows = []
    for name in classes:
        cells = "".join(_iou_cell(scores["iou"].get(name)) for scores in columns.values())
        rows.append(f"<tr><td>{escape(name)}</td>{cells}</tr>")
    mean = "".join(_iou_cell(_miou(scores)) for scores in columns.values())
    rows.append(f"<tr class=total><td>mIoU</td>{mean}</tr>")
    return f"<table class=iou><tr><th>class</th>{head}</tr>{''.join(rows)}</table>"


def _miou(scores: dict[str, Any]) -> float | None:
    return scores.get("best_miou", scores.get("miou"))


def _iou_cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td class=num>-</td>"
    # white at 0 % to green at 100 %: the eye finds the weak classes without reading numbers
    green = f"hsl(120, 55%, {100 - 0.45 * max(0.0, min(100.0, value)):.0f}%)"
    return f'<td class=num style="background:{green}">{value:.1f}</td>'


def samples_section(
    run_dir: Path, summary: dict[str, Any] | None, folders: Sequence[Folder], count: int,
    missing: list[str], damaged: list[str],
) -> str:  # fmt: skip
    """A grid per split: each image with every CAM / label folder made for that split."""
    per_image = by_kind(folders, CAM_MAKERS + LABEL_MAKERS)
    if not per_image or count <= 0:
        return note("No per-image outputs (CAMs, pseudo labels, predictions) yet.")
    voc = _open_dataset(summary, per_image, missing)
    if voc is None:
        return note("The dataset these outputs were made from is not where the run recorded it.")
    splits: dict[str, list[Folder]] = {}
    for folder in per_image:
        splits.setdefault(str(folder.params.get("split")), []).append(folder)
    html = []
    for split, group in splits.items():
        try:
            ids = voc.split_ids(split)[:count]
        except WsssError as exc:
            missing.append(str(exc))
            continue
        columns = [Column(f.name, f.path, "cam" if f.stage in CAM_MAKERS else "label")
                   for f in group]  # fmt: skip
        grid = sample_grid(voc, ids, columns, tile=TILE, damaged=damaged)
        legend = "; ".join(f"{f.name}: {WHAT.get(f.stage, f.stage)}" for f in group)
        caption = f"split {split}, first {len(ids)} images. Columns: {legend}"
        if not any(voc.has_mask(i) for i in ids):
            caption += " (no ground-truth masks for these images)"
        html.append(figure(png_bytes(grid), caption))
    html.append(class_legend(voc.classes))
    return "".join(html)


def _open_dataset(
    summary: dict[str, Any] | None, folders: Sequence[Folder], missing: list[str]
) -> VocDataset | None:
    """The dataset the outputs were made from. A relative path (`--data data/mine`) is taken
    from the folder the stage ran in, which every manifest records (`cwd`), so the report
    finds it from any working directory."""
    cwds = [f.manifest["cwd"] for f in folders if isinstance(f.manifest.get("cwd"), str)]
    recorded = [(summary.get("data"), None)] if summary else []
    recorded += [(f.params.get("data"), f.manifest.get("cwd")) for f in folders]
    candidates: list[Path] = []
    for data, cwd in recorded:
        if not isinstance(data, str) or not data:
            continue
        if not Path(data).is_absolute():
            bases = [cwd] if isinstance(cwd, str) else cwds  # summary.json: any stage's
            candidates += [Path(base) / data for base in bases]
        candidates.append(Path(data))
    problem = "no dataset recorded in summary.json or the manifests"
    for root in dict.fromkeys(candidates):
        try:
            return VocDataset.open(root)
        except WsssError as exc:
            problem = str(exc)
    missing.append(f"samples: {problem}")
    return None


def class_legend(classes: Sequence[str]) -> str:
    """Each label value's colour in the grids, ignore (255) included: `label_picture` shows it
    white, as on object outlines and in confident labels."""
    colours = [tuple(int(c) for c in rgb) for rgb in voc_colormap(len(classes) + 1)]
    names = ["background", *classes, "ignored (255)"]
    items = "".join(
        f'<span class=swatch style="background:rgb{colour}"></span>{escape(name)} '
        for colour, name in zip([*colours, (255, 255, 255)], names, strict=True)
    )
    return f"<p class=legend>Label colours: {items}</p>"


# -- HTML pieces --------------------------------------------------------------------------------


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def figure(png: bytes, caption: str) -> str:
    """An inlined PNG with its pixel size stated, and an escaped caption."""
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
    data = base64.b64encode(png).decode("ascii")
    text = escape(caption)
    return (
        f'<figure style="width:{width}px"><img src="data:image/png;base64,{data}" '
        f'width={width} height={height} alt="{text}"><figcaption>{text}</figcaption></figure>'
    )


def note(text: str) -> str:
    return f"<p class=note>{escape(text)}</p>"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px;
       padding: 0 16px; color: #222; }}
h1 {{ margin-bottom: 0; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 32px; }}
.path, .foot {{ color: #666; font-family: monospace; word-break: break-all; }}
table {{ border-collapse: collapse; margin: 8px 24px 16px 0; display: inline-table;
        vertical-align: top; }}
caption {{ text-align: left; font-weight: 600; padding-bottom: 4px; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; }} th {{ background: #f4f4f4; }}
th.group {{ text-align: left; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.total td {{ font-weight: 600; }}
figure {{ margin: 12px 24px 20px 0; display: inline-block; vertical-align: top; max-width: 100%; }}
img {{ max-width: 100%; height: auto; }} td.sub {{ padding-left: 20px; }}
figcaption {{ color: #555; font-size: 13px; }}
.note {{ color: #555; font-style: italic; }}
.missing {{ background: #fff8e1; border: 1px solid #f0d58c; padding: 8px 12px; margin: 16px 0; }}
.missing ul, .damaged ul {{ margin: 4px 0 0; }}
.damaged {{ background: #fdecea; border: 1px solid #f5b7b1; padding: 8px 12px; margin: 16px 0; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin: 0 3px 0 8px;
          border: 1px solid #999; vertical-align: -1px; }}
</style></head>
<body>
{body}
</body></html>
"""

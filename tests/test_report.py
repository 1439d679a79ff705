"""`wsss report`: the page of a run directory made of the stages' own files, parsed back.

The fake run holds what the stages write, through the project's own writers: manifests,
metrics.jsonl, CAM files, palette PNGs, eval-cam's sweep and eval's scores of real
confusion matrices. One class name carries HTML and rich markup to check the escaping.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers_tinyvoc import make_tiny_voc
from PIL import Image

from cli.main import main
from wsss.cam_eval import ThresholdSweep
from wsss.camfile import EVAL_CAM_RECORD, CamRecord, save_cam_file
from wsss.data.classes import class_names_with_background
from wsss.data.palette import save_label_png
from wsss.data.voc import VocDataset
from wsss.io import append_jsonl, write_json, write_manifest
from wsss.metrics import ConfusionMatrix
from wsss.report import Column, sample_grid
from wsss.report_html import TILE

SPECIAL = '<b>dog</b> & "[red]x[/]"'
CLASSES = ("cat", SPECIAL)
SIZE = 40
SUMMARY = {
    "recipe": "demo",
    "cam_miou": 41.234,
    "cam_threshold": 0.35,
    "pseudo_miou": 47.891,
    "seg_miou": 12.3456,
    "seg_split": "val",
    "seconds": {"train-cam": 3.25},
}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSSS_QUIET", "1")


def make_run(root: Path, masks: bool = True) -> Path:
    """A small finished-looking run: trained CAM classifier, CAMs, pseudo labels, an
    interrupted segmenter (2 of 5 epochs, no final.pt) and its predictions."""
    data = make_tiny_voc(root / "data", n=4, size=SIZE, classes=CLASSES)
    voc = VocDataset.open(data)
    run = root / "run"
    train, val = voc.split_ids("train"), voc.split_ids("val")
    names = class_names_with_background(CLASSES)

    for folder, stage, epochs, done in (("cam_model", "train-cam", 3, 3),
                                        ("seg_model", "train-seg", 5, 2)):  # fmt: skip
        write_manifest(run / folder, stage, {"data": str(data), "split": "train", "epochs": epochs})
        for epoch in range(1, done + 1):
            record = {
                "epoch": epoch,
                "iterations": 2,
                "loss": 2.0 / epoch,
                "lr": 0.01,
                "seconds": 1,
            }
            if stage == "train-cam":
                record |= {"cls": 1.0 / epoch, "p_cls": 1.0 / epoch, "alpha": 0.0}
                record["eval"] = {"name": "val CAM mIoU", "metric": 30.0 + epoch}
            append_jsonl(run / folder / "metrics.jsonl", record)
    (run / "cam_model" / "final.pt").write_bytes(b"weights")

    sweep = ThresholdSweep(CLASSES, (0.2, 0.4, 0.6))
    pseudo_scores, pred_scores = (ConfusionMatrix(len(names), names) for _ in range(2))
    rng = np.random.default_rng(0)
    for image_id in train:
        gt = voc.load_mask(image_id)
        # the classes from the mask: the XML cannot hold the markup class name unescaped
        labels = np.array([0, *(v for v in np.unique(gt) if v not in (0, 255))])
        hr_cam = rng.random((len(labels) - 1, SIZE, SIZE)).astype(np.float32)
        record = CamRecord(keys=labels, cam=hr_cam[:, ::4, ::4].copy(), hr_cam=hr_cam)
        save_cam_file(run / "cams" / f"{image_id}.npy", record)
        sweep.update(hr_cam, labels[1:], gt)
        pseudo = np.where(gt == 255, 0, gt).astype(np.uint8)
        save_label_png(run / "pseudo" / f"{image_id}.png", pseudo)
        pseudo_scores.update(gt, pseudo)
    for image_id in val:
        gt = voc.load_mask(image_id)
        prediction = np.zeros_like(gt)
        save_label_png(run / "pred_val" / f"{image_id}.png", prediction)
        pred_scores.update(gt, prediction)
    for folder, stage, split in (("cams", "make-cam", "train"), ("pseudo", "make-pseudo", "train"),
                                 ("pred_val", "predict", "val")):  # fmt: skip
        write_manifest(run / folder, stage, {"data": str(data), "split": split}, complete=True,
                       files=len(train if split == "train" else val))  # fmt: skip
    if masks:
        result = sweep.result()
        result.extra = {"split": "train"}
        write_json(run / "cams" / EVAL_CAM_RECORD, result.to_json())
        write_json(run / "pseudo" / "eval.json", pseudo_scores.compute().to_json())
        write_json(run / "pred_val" / "eval.json", pred_scores.compute().to_json())
    else:
        shutil.rmtree(data / "SegmentationClass")
    write_json(run / "summary.json", SUMMARY)
    return run


@dataclass
class Page:
    """What the tests read back from report.html."""

    images: list[dict[str, str]] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    text: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__()
        self.page = page
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.page.tags.add(tag)
        self.page.references += [v for k, v in values.items() if k in ("src", "href")]
        if tag == "img":
            self.page.images.append(values)
        elif tag == "table":
            self.page.tables.append([])
        elif tag == "tr":
            self.page.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.page.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        self.page.text.append(data)
        if self.cell is not None:
            self.cell.append(data)


def read_page(path: Path) -> tuple[Page, str]:
    raw = path.read_text(encoding="utf-8")
    page = Page()
    _Reader(page).feed(raw)
    return page, raw


def decoded_png(image: dict[str, str]) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert image["src"].startswith(prefix), image["src"][:60]
    picture = Image.open(io.BytesIO(base64.b64decode(image["src"][len(prefix) :], validate=True)))
    picture.load()  # a truncated PNG fails here
    return picture


def table_with(page: Page, first_cell: str) -> list[list[str]]:
    (table,) = [t for t in page.tables if any(row and row[0] == first_cell for row in t)]
    return table


def report(run: Path) -> tuple[Page, str]:
    assert main(["report", str(run)]) == 0
    return read_page(run / "report.html")


def test_report_inlines_every_figure_and_shows_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    page, raw = report(run)

    # Every figure is a PNG inside the page, of the size the tag states; nothing external.
    assert len(page.images) == 5  # two trainers' curves, the threshold curve, two grids
    for image in page.images:
        picture = decoded_png(image)
        assert picture.format == "PNG"
        assert picture.size == (int(image["width"]), int(image["height"]))
    assert all(ref.startswith("data:") for ref in page.references)
    assert "http://" not in raw and "https://" not in raw
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}

    # The summary table holds summary.json's values.
    rows = {row[0]: row[1] for row in table_with(page, "recipe") if len(row) == 2}
    assert rows["seg_miou"] == "12.35" and rows["cam_miou"] == "41.23"
    assert rows["cam_threshold"] == "0.35" and rows["recipe"] == "demo"
    assert {row[0]: row[1] for row in table_with(page, "train-cam")}["train-cam"] == "3.25"

    # Stage states: the interrupted segmenter is said to be so.
    states = {row[0]: row[2] for row in table_with(page, "cam_model")}
    assert states["cam_model"] == "3 of 3 epochs, finished"
    assert states["seg_model"] == "2 of 5 epochs, not finished"
    assert states["cams"] == "4 files, complete"
    text = " ".join(page.text)
    assert "random-walk path: not run" in text and "has not run" not in text
    # what to do after the pipeline: the run's own segmenter on new images, and its export
    segmenter = run / "seg_model" / "final.pt"
    assert f"wsss predict --checkpoint {segmenter} --images" in text
    assert f"wsss export --checkpoint {segmenter}" in text

    # Per-class IoU: one row per class (escaped name read back intact), values of the JSONs.
    iou = table_with(page, "background")
    by_class = {row[0]: row[1:] for row in iou[1:]}
    assert iou[0] == ["class", "cams (CAMs)", "pseudo (pseudo labels)", "pred_val (predictions)"]
    assert list(by_class) == ["background", "cat", SPECIAL, "mIoU"]
    pseudo = json.loads((run / "pseudo" / "eval.json").read_text())
    cam = json.loads((run / "cams" / EVAL_CAM_RECORD).read_text())
    pred = json.loads((run / "pred_val" / "eval.json").read_text())
    for name in ("background", "cat", SPECIAL):
        expected = [f"{s['iou'][name]:.1f}" for s in (cam, pseudo, pred)]
        assert by_class[name] == expected
    assert by_class["mIoU"][1] == f"{pseudo['miou']:.1f}"

    # The class name with markup is escaped wherever it appears, never raw.
    assert SPECIAL not in raw and "<b>dog" not in raw
    assert html.escape(SPECIAL) in raw
    assert SPECIAL in "".join(page.text)

    # The sample grids: image, CAMs, pseudo labels, ground truth (train); image, predictions,
    # ground truth (val), each tile TILE px, one caption strip, four and two images.
    grids = sorted((int(i["width"]), int(i["height"])) for i in page.images[-2:])
    assert grids == [(3 * TILE, 14 + 2 * TILE), (4 * TILE, 14 + 4 * TILE)]


def test_report_without_masks_says_so_and_keeps_the_rest(tmp_path: Path) -> None:
    run = make_run(tmp_path, masks=False)
    page, raw = report(run)
    text = " ".join(page.text)
    assert "No per-class IoU" in text and "No threshold sweep" in text
    assert not [t for t in page.tables if any(row and row[0] == "background" for row in t)]
    # curves and grids remain; the grids lose their ground-truth column
    assert len(page.images) == 4
    grids = sorted((int(i["width"]), int(i["height"])) for i in page.images[-2:])
    assert grids == [(2 * TILE, 14 + 2 * TILE), (3 * TILE, 14 + 4 * TILE)]
    for image in page.images:
        assert decoded_png(image).size == (int(image["width"]), int(image["height"]))


def test_interrupted_run_without_summary_or_some_files_still_reports(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / "summary.json").unlink()
    shutil.rmtree(run / "pred_val")
    next(iter(sorted((run / "cams").glob("*.npy")))).unlink()  # make-cam killed mid-way
    with open(run / "seg_model" / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "lo')  # a torn last line
    page, _ = report(run)
    text = " ".join(page.text)
    assert "summary.json: the pipeline has not finished" in text
    assert "predictions: predict has not run" in text
    assert "No summary.json" in text
    assert len(page.images) == 4  # curves of both trainers, threshold curve, the train grid
    grid = page.images[-1]
    assert (int(grid["width"]), int(grid["height"])) == (4 * TILE, 14 + 4 * TILE)
    # the missing CAM is a grey tile: the CAM column's first tile is mostly (224, 224, 224)
    tile = np.asarray(decoded_png(grid).convert("RGB"))[14 : 14 + TILE, TILE : 2 * TILE]
    assert (tile == 224).all(axis=2).mean() > 0.9


def test_sample_grid_without_masks_has_no_ground_truth_column(tmp_path: Path) -> None:
    run = make_run(tmp_path, masks=False)
    voc = VocDataset.open(tmp_path / "data")
    ids = voc.split_ids("train")[:3]
    grid = sample_grid(voc, ids, [Column("CAM", run / "cams", "cam")])
    assert grid.shape == (14 + 3 * SIZE, 2 * SIZE, 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "nope", "run directory not found"),
        (lambda tmp: tmp, "not a wsss run directory"),
        (lambda tmp: write_json(tmp / "summary.json", SUMMARY), "not a directory"),
    ],
)
def test_bad_run_dir_is_one_line_error(tmp_path: Path, capsys, make, message) -> None:
    path = make(tmp_path)
    code = main(["report", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], err
    assert not list(tmp_path.rglob("report.html"))


def test_a_seeds_run_reports_each_figure_over_the_seeds(tmp_path: Path) -> None:
    """`pipeline run --seeds`: OUT's page is the seeds table and a link to each seed's page."""
    from wsss.report_html import build_report

    spread = {"mean": 41.5, "std": 2.1213, "min": 40.0, "max": 43.0, "values": [40.0, 43.0]}
    damaged = {"mean": "x", "values": [1.0]}
    summary = {"recipe": "demo", "seeds": [0, 1], "runs": {"0": "seed-0/summary.json"},
               "figures": {"seg_miou": spread, "cam_miou": damaged}}  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "seed-0" / "report.html").write_text("<html></html>")
    report = build_report(tmp_path)
    assert report.sections == ["Seeds"] and report.missing == []
    row = "<td>seg_miou</td><td class=num>41.50</td><td class=num>2.12</td>"
    assert row + "<td class=num>40.00 - 43.00</td><td class=num>40.00 / 43.00</td>" in report.html
    assert '<a href="seed-0/report.html">' in report.html
    assert "seed-1/report.html: not written yet" in report.html
    assert report.damaged == [f"{tmp_path / 'summary.json'}: figure cam_miou is not numbers"]


def test_the_masks_pick_is_drawn_and_listed(tmp_path: Path) -> None:
    """A run without full masks whose threshold came from `--threshold masks`: no eval-cam
    sweep, but the pick's pseudo-label curve and its row."""
    from wsss.mask_threshold import RECORD, MaskPick

    run = make_run(tmp_path, masks=False)
    curve = [(0.05, 40.0), (0.10, 55.5), (0.15, None)]
    pick = MaskPick(0.10, 55.5, [(t, -math.inf if m is None else m) for t, m in curve], 3)
    write_json(run / "cams" / RECORD, {**pick.to_json(), "key_sha1": "x"})
    page, _ = report(run)
    text = " ".join(page.text)
    assert "No threshold sweep" not in text and "--threshold masks" in text
    assert len(page.images) == 5  # the pick's curve besides the curves and the grids
    rows = [row for row in table_with(page, "maps") if "(--threshold masks)" in row[0]]
    assert [row[1:] for row in rows] == [["the images with masks", "3", "0.10", "55.50"]]
    (run / "cams" / RECORD).write_text(json.dumps({**pick.to_json(), "images": 0}))
    page, _ = report(run)
    text = " ".join(page.text)
    assert "'images' 0 is not a count of images" in text and "No threshold sweep" in text

"""The two user paths README shows, end to end through the CLI: a dataset of images, a class
list and one labels file (no XML, no mask) to a segmenter, its predictions and a report; and
a COCO 2014-format set converted by prepare-coco, then run and scored."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers_tinyvoc import one_torch_thread

from cli.main import main
from wsss.data.palette import read_label_png
from wsss.data.voc import VocDataset
from wsss.io import read_json

# Tiny settings for every trainer (`--set`), so the whole pipeline runs in seconds.
TINY_SETS = (
    "train_cam.epochs=1", "train_cam.batch_size=2", "train_cam.crop=40",
    "train_cam.warmup_epochs=0", "make_cam.scales=1", "make_cam.overlays=0",
    "train_seg.epochs=1", "train_seg.batch_size=2", "train_seg.crop=40",
    "train_seg.warmup_epochs=0", "train_seg.scale_range=36,48", "predict.scales=1",
)  # fmt: skip


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def _run(data: Path, out: Path) -> dict:
    args = ["pipeline", "run", "--data", str(data), "--recipe", "demo", "--out", str(out),
            "--device", "cpu", "--workers", "0"]  # fmt: skip
    args += [part for text in TINY_SETS for part in ("--set", text)]
    with one_torch_thread():
        assert main(args) == 0
    return read_json(out / "summary.json")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_images_classes_and_a_labels_file_give_a_segmenter_predictions_and_a_report(
    labels_only_dataset, tmp_path: Path, monkeypatch, fmt: str
) -> None:
    monkeypatch.setenv("WSSS_QUIET", "1")
    data = labels_only_dataset(fmt=fmt, n=6, size=40)
    assert not (data / "Annotations").exists() and not (data / "SegmentationClass").exists()
    summary = _run(data, tmp_path / "run")

    # label-free: no figure needs a mask, the threshold comes from the CAMs alone
    assert summary["cam_miou"] is None and summary["seg_miou"] is None
    assert 0.0 < summary["cam_threshold"] < 1.0
    assert "oracle" not in str(summary.get("cam_threshold_rule", ""))
    voc = VocDataset.open(data)
    for image_id in voc.split_ids("val"):
        prediction = read_label_png(tmp_path / "run" / "pred_val" / f"{image_id}.png")
        assert prediction.shape == (40, 40) and prediction.max() <= voc.num_classes

    # the report holds its figures inline and says that nothing could be scored
    html = (tmp_path / "run" / "report.html").read_text()
    parser = _Images()
    parser.feed(html)
    assert parser.sources and all(s.startswith("data:image/png;base64,") for s in parser.sources)
    assert "http://" not in html and "https://" not in html


@pytest.mark.slow
def test_prepare_coco_then_pipeline_run_scores_the_converted_set(
    coco_root, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("WSSS_QUIET", "1")
    root, _ = coco_root
    converted = tmp_path / "converted"
    assert main(["prepare-coco", "--coco", str(root), "--out", str(converted)]) == 0
    summary = _run(converted, tmp_path / "run")

    # masks exist: every figure is computed, the oracle one marked beside the label-free one
    for key in ("cam_miou", "cam_miou_oracle", "pseudo_miou", "seg_miou"):
        assert 0.0 <= summary[key] <= 100.0, key
    assert summary["cam_miou_oracle"] >= summary["cam_miou"]
    voc = VocDataset.open(converted)
    assert voc.num_classes == 4
    for image_id in voc.split_ids("val"):
        prediction = read_label_png(tmp_path / "run" / "pred_val" / f"{image_id}.png")
        assert prediction.shape == voc.load_mask(image_id).shape

"""`wsss eval`: scores, JSON contract and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from wsss.data.palette import save_label_png


@pytest.fixture
def gt_and_pred(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    (gt / "classes.txt").parent.mkdir(parents=True)
    (gt / "classes.txt").write_text("cat\ndog\nbird\n")
    a = np.array([[0, 1, 1, 255]], dtype=np.uint8)
    b = np.array([[2, 2, 0, 0]], dtype=np.uint8)
    save_label_png(gt / "a.png", a)
    save_label_png(gt / "b.png", b)
    save_label_png(pred / "a.png", np.array([[0, 1, 0, 3]], dtype=np.uint8))
    save_label_png(pred / "b.png", np.array([[2, 0, 0, 0]], dtype=np.uint8))
    return gt, pred


def test_eval_scores_and_json_contract(gt_and_pred, capsys) -> None:
    gt, pred = gt_and_pred
    assert main(["eval", "--pred", str(pred), "--gt", str(gt)]) == 0
    data = json.loads((pred / "eval.json").read_text())
    # matrix: bg row [3,0,0] (gt 0: a0,b2,b3 -> pred 0,0,0); cat row [1,1,0]; dog row [1,0,1]
    iou_bg = 3 / (3 + 5 - 3)
    assert data["iou"]["background"] == pytest.approx(100 * iou_bg)
    assert data["iou"]["cat"] == pytest.approx(50.0)
    assert data["iou"]["dog"] == pytest.approx(50.0)
    assert data["iou"]["bird"] is None  # absent everywhere: out of the mean
    assert data["miou"] == pytest.approx((100 * iou_bg + 50 + 50) / 3)
    assert "mIoU" in capsys.readouterr().out


def test_eval_with_list_and_dataset_root_json_path(gt_and_pred, tmp_path: Path) -> None:
    gt, pred = gt_and_pred
    listing = tmp_path / "one.txt"
    listing.write_text("b\n")
    out = tmp_path / "scores.json"
    assert (
        main(
            [
                "eval",
                "--pred",
                str(pred),
                "--gt",
                str(gt),
                "--list",
                str(listing),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["images"] == 1


def test_missing_prediction_is_an_error_unless_skipped(gt_and_pred, capsys) -> None:
    gt, pred = gt_and_pred
    (pred / "b.png").unlink()
    assert main(["eval", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "b.png: prediction for 'b' not found" in capsys.readouterr().err
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--skip-missing"]) == 0
    assert json.loads((pred / "eval.json").read_text())["missing"] == ["b"]


def test_size_mismatch_and_out_of_range_values(gt_and_pred, capsys) -> None:
    gt, pred = gt_and_pred
    save_label_png(pred / "a.png", np.zeros((2, 4), dtype=np.uint8))
    assert main(["eval", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "a.png: size 4x2 differs from ground truth 4x1" in capsys.readouterr().err
    save_label_png(pred / "a.png", np.array([[0, 9, 0, 0]], dtype=np.uint8))
    assert main(["eval", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "a.png: label value 9 outside 0..3" in capsys.readouterr().err

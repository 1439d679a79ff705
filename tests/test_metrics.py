"""The confusion matrix against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.errors import WsssError
from wsss.metrics import ConfusionMatrix


def test_hand_computed_iou_with_ignore() -> None:
    gt = np.array([[0, 0, 1], [1, 255, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [2, 0, 2]], dtype=np.uint8)
    cm = ConfusionMatrix(3, ("background", "a", "b"))
    cm.update(gt, pred)
    # rows gt, cols pred; the 255 pixel is ignored
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    scores = cm.compute()
    # bg: tp1 / (gt2 + pred1 - 1) = 1/2; a: 1/(2+2-1)=1/3; b: 1/(1+2-1)=1/2
    assert scores.iou == pytest.approx([50.0, 100 / 3, 50.0])
    assert scores.miou == pytest.approx((50 + 100 / 3 + 50) / 3)
    assert scores.pixel_accuracy == pytest.approx(60.0)
    assert scores.precision == pytest.approx([100.0, 50.0, 50.0])
    assert scores.recall == pytest.approx([50.0, 50.0, 100.0])
    # FP rate = (pred - tp) / union, FN rate = (gt - tp) / union
    assert scores.fp_rate == pytest.approx([0.0, 100 / 3, 50.0])
    assert scores.fn_rate == pytest.approx([50.0, 100 / 3, 0.0])


def test_absent_class_left_out_of_mean() -> None:
    cm = ConfusionMatrix(4)
    cm.update(np.array([[0, 1]]), np.array([[0, 1]]))
    scores = cm.compute()
    assert scores.iou == [100.0, 100.0, None, None]
    assert scores.miou == 100.0
    data = scores.to_json()
    assert data["miou"] == 100.0 and data["iou"]["2"] is None


def test_class_predicted_but_absent_in_gt_counts_zero() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 0]]), np.array([[0, 2]]))
    scores = cm.compute()
    assert scores.iou == [50.0, None, 0.0]
    assert scores.miou == pytest.approx(25.0)


def test_accumulates_over_images_and_merges() -> None:
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(np.array([[1, 1]]), np.array([[1, 0]]))
    b.update(np.array([[0, 1]]), np.array([[0, 1]]))
    a.merge(b)
    assert a.images == 2
    assert a.matrix.tolist() == [[1, 0], [1, 2]]


def test_ignore_pred_counts_instead_of_failing() -> None:
    cm = ConfusionMatrix(2)
    with pytest.raises(WsssError, match="outside"):
        cm.update(np.array([[0, 1]]), np.array([[255, 1]]), name="x.png")
    cm.update(np.array([[0, 1]]), np.array([[255, 1]]), ignore_pred=True)
    assert cm.matrix.sum() == 1 and cm.ignored_predictions == 1


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (np.zeros((2, 2)), np.zeros((2, 3)), "differs"),
        (np.full((1, 1), 7), np.zeros((1, 1)), "label value 7"),
        (np.zeros((1, 1)), np.full((1, 1), 5), "label value 5"),
    ],
)
def test_bad_input_names_the_file(gt, pred, message) -> None:
    with pytest.raises(WsssError, match=message) as info:
        ConfusionMatrix(3).update(gt, pred, name="img_1.png")
    assert "img_1.png" in str(info.value)


def test_average_precision_hand_computed() -> None:
    from wsss.metrics import average_precision

    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.4]])
    targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    ap = average_precision(scores, targets)
    # class 0 ranking: pos, neg, pos, neg -> precisions at positives 1/1 and 2/3
    assert ap[0] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert np.isnan(ap[1])


def test_a_prediction_with_no_confident_pixel_is_counted_not_warned(capsys) -> None:
    matrix = ConfusionMatrix(3)
    gt = np.ones((4, 4), np.uint8)
    matrix.update(gt, np.full((4, 4), 255, np.uint8), "confident.png", ignore_pred=True)
    assert matrix.ignored_predictions == 16 and matrix.matrix.sum() == 0
    assert "warning" not in capsys.readouterr().err
    matrix.update(np.full((4, 4), 255, np.uint8), gt, "all-ignore.png")
    assert "every ground-truth pixel is 255" in capsys.readouterr().err


def test_reference_convention_averages_every_class_absent_ones_zero() -> None:
    """The official code's mIoU beside ours: 4 classes, class 3 absent from both."""
    cm = ConfusionMatrix(4)
    cm.update(np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 2]]))
    scores = cm.compute()
    # bg 1/2, class 1: 1/(2+2-1) = 1/3, class 2: 0/1 = 0, class 3 absent
    assert scores.iou == pytest.approx([50.0, 100 / 3, 0.0, None])
    assert scores.miou == pytest.approx((50 + 100 / 3 + 0) / 3)
    assert scores.iou_reference == pytest.approx([50.0, 100 / 3, 0.0, 0.0])
    assert scores.miou_reference == pytest.approx((50 + 100 / 3) / 4)
    data = scores.to_json()
    assert data["miou_reference"] == pytest.approx(scores.miou_reference)
    assert data["iou_reference"] == {"0": 50.0, "1": pytest.approx(100 / 3), "2": 0.0, "3": 0.0}
    assert set(data["conventions"]) == {"miou", "miou_reference"}


def test_reference_convention_counts_a_predicted_255_as_a_miss() -> None:
    """gt [1 1 1 1 0], pred [1 1 1 255 0]: ours drops the 255 pixel (class 1 IoU 3/3), the
    reference adds it to class 1's ground truth (3/4); a 255 on a 255 pixel counts nowhere."""
    cm = ConfusionMatrix(3)
    gt = np.array([[1, 1, 1, 1, 0, 255]], np.uint8)
    cm.update(gt, np.array([[1, 1, 1, 255, 0, 255]], np.uint8), ignore_pred=True)
    scores = cm.compute()
    assert cm.ignored_by_class.tolist() == [0, 1, 0]
    assert scores.iou == [100.0, 100.0, None] and scores.miou == 100.0
    assert scores.iou_reference == pytest.approx([100.0, 75.0, 0.0])
    assert scores.miou_reference == pytest.approx(175 / 3)


def test_reference_convention_survives_merging_and_reduction(monkeypatch) -> None:
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(np.array([[1, 1]]), np.array([[1, 255]]), ignore_pred=True)
    b.update(np.array([[0, 1]]), np.array([[0, 255]]), ignore_pred=True)
    a.merge(b)
    assert a.ignored_by_class.tolist() == [0, 2] and a.ignored_predictions == 2
    import wsss.engine.distributed as distributed

    monkeypatch.setattr(distributed, "all_reduce_array", lambda values: values * 2)
    a.reduce_from_all_processes()  # as if two processes held the same counts
    assert a.ignored_by_class.tolist() == [0, 4] and a.ignored_predictions == 4
    assert a.images == 4 and a.matrix.tolist() == [[2, 0], [0, 2]]
    assert a.compute().iou_reference == pytest.approx([100.0, 100 * 2 / 6])


def test_nothing_labelled_leaves_both_conventions_undefined() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8), "x.png")
    scores = cm.compute()
    assert np.isnan(scores.miou) and np.isnan(scores.miou_reference)

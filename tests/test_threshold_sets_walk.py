"""threshold_sets.py's walk table decides each walk again at today's bar: rows recorded before
the bar moved carry the old decision (hand-made rows, no runs needed)."""

from __future__ import annotations

from experiments.threshold_sets import walk_decision, walk_table
from wsss.walk_check import MIN_AGREEMENT


def _row(walked: float, crf: float, agreement: float, keep: bool) -> dict[str, object]:
    return {"rw_t": 0.3, "rw_miou": 50.0, "rw_t_oracle": 0.5, "rw_miou_oracle": 55.0,
            "walked_pseudo": walked, "crf_pseudo": crf, "agreement": agreement,
            "keep": keep, "right": keep == (walked >= crf)}  # fmt: skip


def test_a_row_kept_under_the_old_bar_is_dropped_and_right_at_85() -> None:
    # recorded at a bar of 70: kept, and wrong (the walk lost by 5.8)
    row = _row(64.6, 70.4, 76.7, keep=True)
    assert walk_decision(row, 85.0) == (False, True)
    assert walk_decision(row, 70.0) == (True, False)


def test_a_winning_walk_below_the_bar_is_a_wrong_drop() -> None:
    row = _row(78.7, 76.1, 84.5, keep=True)
    assert walk_decision(row, 85.0) == (False, False)
    assert walk_decision(row, 84.0) == (True, True)


def test_the_table_shows_todays_decisions() -> None:
    assert MIN_AGREEMENT == 85.0  # the rows below straddle it
    table = walk_table({"a-1": _row(64.6, 70.4, 76.7, keep=True),
                        "b-2": _row(78.7, 76.1, 84.5, keep=True),
                        "c-3": _row(80.0, 75.0, 90.0, keep=False)})  # fmt: skip
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[-2:] for line in
            table.splitlines()[2:]}  # fmt: skip
    assert rows["a-1"] == ["no", "yes |"]
    assert rows["b-2"] == ["no", "**no** |"]
    assert rows["c-3"] == ["yes", "yes |"]
    assert "kept (>= 85)" in table.splitlines()[0]

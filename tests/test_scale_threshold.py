"""experiments/scale_threshold.py: the area rule and one run's readings on hand-made curves."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.scale_threshold import area_rule, row

GRID = np.array([0.1, 0.2, 0.3, 0.4])


def test_the_area_rule_takes_the_first_t_where_the_merged_area_fits_the_scale2_one() -> None:
    merged = np.array([100.0, 80.0, 50.0, 20.0])
    scale2 = np.array([60.0, 40.0, 30.0, 10.0])
    assert area_rule(merged, scale2, GRID, 0.10) == 0.3  # 50 <= 60, 80 > 60
    assert area_rule(merged, scale2, GRID, 0.20) == 0.4  # 20 <= 40
    assert area_rule(merged, scale2, GRID, 0.12) == 0.3  # t0 read at its nearest grid point
    assert area_rule(merged, np.full(4, 5.0), GRID, 0.10) == 0.4  # nothing fits: the last t
    assert area_rule(np.array([100.0, 60.0, 50.0, 20.0]), scale2, GRID, 0.10) == 0.2  # equal fits


def test_a_runs_readings_come_from_its_curves() -> None:
    record = {
        "grid": GRID.tolist(),
        "miou": [40.0, 50.0, 45.0, 30.0],
        "oracle_t": 0.2,
        "oracle_miou": 50.0,
        "blend_t": 0.31,
        "area1": [100.0, 90.0, 80.0, 70.0],
        "area2": [50.0, 45.0, 20.0, 7.0],
        "area_merged": [100.0, 80.0, 50.0, 20.0],
    }
    r = row(record, 0.10)
    assert r["blend_miou"] == 45.0  # at 0.3, the grid point nearest 0.31
    assert r["ratio_010"] == pytest.approx(0.5)
    assert r["ratio_blend"] == pytest.approx(20 / 80)
    assert (r["rule_t"], r["rule_miou"]) == (0.3, 45.0)

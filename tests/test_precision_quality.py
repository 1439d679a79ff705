"""experiments/precision_quality.py: bf16 against fp32 within the fp32 seed spread, on
hand-made threshold_sets records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.precision_quality import compare


def _folder(path: Path, cams: dict[tuple[str, str], tuple[float, float]],
            labels: dict[str, float]) -> Path:  # fmt: skip
    """rules.json rows with (oracle, blend) CAM mIoU; pseudo.json with blend labels."""
    path.mkdir()
    rows = [{"variant": v, "seed": s, "scores": {"oracle": [0.3, o], "blend (chosen)": [0.28, b]}}
            for (v, s), (o, b) in cams.items()]  # fmt: skip
    (path / "rules.json").write_text(json.dumps(rows))
    pseudo = {key: {"blend": [0.28, value]} for key, value in labels.items()}
    (path / "pseudo.json").write_text(json.dumps(pseudo))
    return path


def test_bf16_is_judged_against_the_fp32_seed_spread(tmp_path: Path) -> None:
    fp32 = _folder(tmp_path / "fp32", {("a", "1"): (50.0, 49.0), ("a", "2"): (54.0, 52.0),
                                       ("b", "1"): (30.0, 30.0)},  # one seed: left out
                   {"a-1": 60.0, "a-2": 61.0})  # fmt: skip
    bf16 = _folder(tmp_path / "bf16", {("a", "1"): (51.0, 45.0), ("a", "2"): (55.0, 48.0),
                                       ("b", "1"): (30.0, 30.0)},
                   {"a-1": 60.5, "a-2": 61.5})  # fmt: skip
    rows = {r["figure"]: r for r in compare(fp32, bf16)}
    assert set(rows) == {"CAMs, oracle t", "CAMs, blend t", "pseudo labels, blend t"}
    oracle = rows["CAMs, oracle t"]  # spread 4, means 52 vs 53: inside
    assert oracle["fp32_seed_spread"] == 4.0 and oracle["bf16_minus_fp32_mean"] == 1.0
    assert oracle["paired"] == [1.0, 1.0] and oracle["within_spread"]
    blend = rows["CAMs, blend t"]  # spread 3, means 50.5 vs 46.5: 4 below, outside
    assert blend["bf16_minus_fp32_mean"] == pytest.approx(-4.0) and not blend["within_spread"]
    assert rows["pseudo labels, blend t"]["within_spread"]  # spread 1, shift 0.5


def test_the_segmenter_is_read_from_run_arms_seg_arm(tmp_path: Path) -> None:
    cams = {("a", "1"): (50.0, 49.0), ("a", "2"): (54.0, 52.0)}
    fp32 = _folder(tmp_path / "fp32", cams, {})
    bf16 = _folder(tmp_path / "bf16", cams, {})
    (fp32 / "arms.json").write_text(json.dumps({"a-1": {"seg": {"seg_miou": 40.0}},
                                                "a-2": {"seg": {"seg_miou": 42.0}}}))  # fmt: skip
    (bf16 / "arms.json").write_text(json.dumps({"a-1": {"seg": {"seg_miou": 37.0}},
                                                "a-2": {"seg": {"seg_miou": 39.0}}}))  # fmt: skip
    seg = {r["figure"]: r for r in compare(fp32, bf16)}["segmenter (val)"]
    assert seg["fp32"] == [40.0, 42.0] and seg["paired"] == [-3.0, -3.0]
    assert seg["fp32_seed_spread"] == 2.0 and not seg["within_spread"]  # 3 below, spread 2

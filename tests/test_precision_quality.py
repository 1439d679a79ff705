"""experiments/precision_quality.py: bf16 against fp32 within the fp32 seed spread, on
hand-made threshold_sets records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.precision_quality import compare, compare_training_seeds


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


def test_bf16_is_judged_against_the_fp32_training_seed_spread(tmp_path: Path) -> None:
    # per precision: seed 0 from the run's own records and the seg-30ep arm, seed 1 from the
    # cam-seed1 / seg-30ep-seed1 arms; the spread is the largest |seed 1 - seed 0| of fp32
    cams = {("a", "1"): (50.0, 49.0), ("a", "2"): (54.0, 52.0), ("b", "1"): (30.0, 30.0)}
    fp32 = _folder(tmp_path / "fp32", cams, {"a-1": 60.0, "a-2": 61.0})
    bf16 = _folder(tmp_path / "bf16", cams, {"a-1": 60.0, "a-2": 61.0})

    def arms(seg0: list[float], seed1: list[tuple[float, float, float, float]]) -> str:
        return json.dumps({
            f"a-{i + 1}": {"seg-30ep": {"seg_miou": s0},
                           "cam-seed1": {"cam_miou_oracle": o, "cam_miou": c, "pseudo_miou": p},
                           "seg-30ep-seed1": {"seg_miou": s1}}
            for i, (s0, (o, c, p, s1)) in enumerate(zip(seg0, seed1, strict=True))})  # fmt: skip

    # fp32 segmenter: 40 / 43 on data seed 1 (3 apart), 42 / 41 on 2 (1): spread 3, mean 41.5
    (fp32 / "arms.json").write_text(arms([40.0, 42.0], [(50.0, 49.0, 60.0, 43.0),
                                                        (54.0, 52.0, 61.0, 41.0)]))  # fmt: skip
    # bf16 segmenter: 39 / 40 and 38 / 39: mean 39, 2.5 below: inside the spread of 3
    (bf16 / "arms.json").write_text(arms([39.0, 38.0], [(52.0, 49.0, 55.0, 40.0),
                                                        (54.0, 52.0, 61.0, 39.0)]))  # fmt: skip
    rows = {r["figure"]: r for r in compare_training_seeds(fp32, bf16)}
    # variant b has no seed arms: left out
    assert set(rows) == {
        "CAMs, oracle t",
        "CAMs, blend t",
        "pseudo labels, blend t",
        "segmenter (val)",
    }
    seg = rows["segmenter (val)"]
    assert seg["fp32"] == [[40.0, 43.0], [42.0, 41.0]] and seg["data_seeds"] == ["1", "2"]
    assert seg["fp32_training_seed_spread"] == 3.0 and seg["bf16_training_seed_spread"] == 1.0
    assert seg["bf16_minus_fp32_mean"] == pytest.approx(-2.5) and seg["within_spread"]
    # fp32's seeds agree on the labels (spread 0): bf16's 55 on one run puts it outside
    labels = rows["pseudo labels, blend t"]
    assert labels["fp32_training_seed_spread"] == 0.0 and not labels["within_spread"]
    assert labels["bf16_minus_fp32_mean"] == pytest.approx(-1.25)
    assert rows["CAMs, oracle t"]["bf16_minus_fp32_mean"] == pytest.approx(0.5)

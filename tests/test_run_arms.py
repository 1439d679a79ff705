"""experiments/run_arms.py: each arm against its base, per run and per variant, on hand-made
arms.json records; and an unknown arm refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.run_arms import (
    ARMS,
    SEG_15,
    _arm_of,
    ablation_rows,
    app,
    by_variant,
    compared,
)
from wsss.recipes import DEMO


def test_arms_are_compared_with_their_base_run_by_run() -> None:
    results = {
        "v-1": {"rw": {"cam_miou": 50.0, "cam_miou_oracle": 55.0, "pseudo_miou": 60.0},
                "rw-8": {"cam_miou": 52.0, "cam_miou_oracle": 54.0, "pseudo_miou": 61.0},
                "seg": {"seg_miou": 40.0}, "predict-logits": {"seg_miou": 39.0}},
        "v-2": {"rw": {"cam_miou": 40.0, "cam_miou_oracle": 45.0, "pseudo_miou": 50.0},
                "rw-8": {"cam_miou": 39.0, "cam_miou_oracle": 46.0, "pseudo_miou": 49.0},
                "seg": {"seg_miou": 30.0}},  # predict-logits not run here: left out
        "w-1": {"rw": {"cam_miou": 20.0, "cam_miou_oracle": 25.0, "pseudo_miou": 30.0},
                "rw-8": {"cam_miou": 26.0, "cam_miou_oracle": 25.0, "pseudo_miou": 30.0}},
    }  # fmt: skip
    rows = {(r["arm"], r["figure"]): r for r in compared(results)}
    blend = rows[("rw-8", "walked maps, blend t")]
    assert blend["runs"] == 3 and blend["mean_diff"] == pytest.approx((2 - 1 + 6) / 3)
    assert blend["arm_wins"] == 2 and (blend["worst"], blend["best"]) == (-1.0, 6.0)
    assert blend["variant_mean_diff"] == {"v": pytest.approx(0.5), "w": pytest.approx(6.0)}
    assert blend["per_run"]["v-1"] == [52.0, 50.0] and blend["row"] == ARMS["rw-8"].row
    # by hand: diffs 2, -1, 6; mean 7/3, sample variance 37/3, t = (7/3) / sqrt(37/9)
    assert blend["paired_t"] == pytest.approx((7 / 3) / (37 / 9) ** 0.5)
    assert rows[("rw-8", "walked labels")]["arm_wins"] == 1  # a tie is not a win
    logits = rows[("predict-logits", "segmenter (val)")]
    assert logits["runs"] == 1 and logits["mean_diff"] == -1.0 and logits["paired_t"] is None
    assert not any(arm == "seg-30ep" for arm, _ in rows)  # no run has it


def test_an_unknown_arm_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "rules.json").write_text(json.dumps([]))
    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path), "--arms", "seg,rw-9"])
    assert result.exit_code != 0 and "rw-9" in result.output
    assert not (tmp_path / "arms.json").exists()


def test_every_arm_with_a_base_changes_a_setting_and_compares_with_a_baseline() -> None:
    for name, arm in ARMS.items():
        if arm.base is None:  # a baseline pins at most the segmenter's measured length
            assert arm.options in ({}, {"train_seg": SEG_15}), name
        else:
            # a baseline, or (the ablation under the reference profile) the classifier arm
            # whose model the arm makes CAMs with
            base = ARMS[arm.base]
            # or a segmenter trained on a classifier arm's labels, against the baseline's
            assert arm.options and (base.base is None or arm.source == arm.base or (
                arm.kind == "seg" and ARMS[arm.source].base == "cams")), name  # fmt: skip
            assert arm.source == "cams" or ARMS[arm.source].kind == "classifier", name
            assert base.kind == arm.kind or arm.source == arm.base or arm.kind in (
                "classifier", "labels", "aff", "predict"), name  # fmt: skip


def test_segmenter_arms_keep_the_length_they_were_measured_at() -> None:
    # The demo recipe's segmenter moved to 30 epochs after these arms were measured at 15:
    # the baseline and its arms must still train 15, and seg-30ep differ from seg by length only.
    assert SEG_15["epochs"] != DEMO.train_seg["epochs"]
    for name, arm in ARMS.items():
        if arm.kind == "seg" and not name.startswith("seg-30ep"):
            assert arm.options["train_seg"]["epochs"] == 15, name
    assert ARMS["seg-30ep"].options == {"train_seg": {"epochs": 30}}
    assert ARMS["seg-30ep"].base == "seg"


def test_the_ablation_arms_train_the_plain_cam_and_the_papers_full_loss() -> None:
    # Both replace the demo's L_cls + L_p-cls classifier (alpha 0) of the runs they compare with.
    assert DEMO.variant == "pcl" and ARMS["cam-plain"].base == ARMS["cam-full"].base == "cams"
    plain, full = (ARMS[name].options["train_cam"] for name in ("cam-plain", "cam-full"))
    assert plain == {"pieces": 1, "alpha": 0.0, "pcl": False}  # L_cls alone, no tiles
    assert full["pcl"] is True and full["alpha"] == 4.0 and "pieces" not in full  # the recipe's 4
    assert DEMO.train_cam["pieces"] == 4


def test_the_ablation_lines_up_the_three_classifiers_run_by_run(tmp_path: Path) -> None:
    def cams(oracle: float, blend: float, labels: float) -> dict[str, float]:
        return {"cam_miou_oracle": oracle, "cam_miou": blend, "pseudo_miou": labels}

    results = {
        "v-1": {"cam-plain": cams(40, 39, 50), "cams": cams(42, 40, 49),
                "cam-full": cams(45, 38, 55)},
        "v-2": {"cam-plain": cams(40, 39, 50), "cams": cams(41, 41, 51)},  # no full: left out
    }  # fmt: skip
    (row,) = ablation_rows(results)
    assert row["run"] == "v-1" and row["figures"]["cam_miou_oracle"] == [40, 42, 45]
    # the paper's order plain < L_p-cls < full holds on the oracle's CAMs and nowhere else
    assert row["paper_order"] == {"cam_miou_oracle": True, "cam_miou": False, "pseudo_miou": False}
    (tmp_path / "arms.json").write_text(json.dumps(results))
    result = CliRunner().invoke(app, ["ablation", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| **mean** | 40.00 / 42.00 / 45.00 | 39.00 / 40.00 / 38.00 |" in result.output
    # the labels: 50 / 49 / 55
    assert (
        "of 1: L_p-cls ahead 0, full ahead of it 1, full ahead of plain 1, the order 0"
        in result.output
    )
    # no run has the reference profile's arms: their three columns are empty on the run line
    # and the three summary lines (mean, runs, steps)
    table = [line for line in result.output.splitlines() if "/v-1 |" in line
             or line.startswith("| **")]  # fmt: skip
    assert len(table) == 4 and all(line.endswith("| - | - | - |") for line in table)


def test_the_ablation_adds_the_reference_profile_where_made(tmp_path: Path) -> None:
    def cams(oracle: float, labels: float) -> dict[str, float]:
        return {"cam_miou_oracle": oracle, "cam_miou": 40.0, "pseudo_miou": labels}

    results = {
        "v-1": {"cam-plain": cams(40, 50), "cams": cams(41, 49), "cam-full": cams(42, 55),
                "cam-plain-reference": cams(39, 45), "cams-reference": cams(43, 47),
                "cam-full-reference": cams(38, 52)},
        "v-2": {"cam-plain": cams(40, 50), "cams": cams(41, 51), "cam-full": cams(42, 48)},
    }  # fmt: skip
    rows = {row["run"]: row for row in ablation_rows(results)}
    figures, order = rows["v-1"]["figures"], rows["v-1"]["paper_order"]
    assert figures["pseudo_miou|reference"] == [45, 47, 52] and order["pseudo_miou|reference"]
    assert figures["cam_miou_oracle|reference"] == [39, 43, 38]
    assert not order["cam_miou_oracle|reference"] and order["cam_miou_oracle"]
    assert "pseudo_miou|reference" not in rows["v-2"]["figures"]
    (tmp_path / "arms.json").write_text(json.dumps(results))
    result = CliRunner().invoke(app, ["ablation", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # the means of the one run that has it, not of both
    assert "| 45.00 / 47.00 / 52.00 |\n" in result.output
    assert "of 1: L_p-cls ahead 1, full ahead of it 1, full ahead of plain 1, the order 1" in (
        result.output
    )


def test_the_reference_arms_make_their_classifiers_cams_the_reference_way(tmp_path: Path) -> None:
    class Steps:  # records which model makes which CAMs, and the settings of both stages
        options: dict[str, dict[str, object]] = {"make_cam": {"resize": "bilinear"},
                                                 "make_pseudo": {"crf_preset": "wsss"}}  # fmt: skip

        def make_cam(self, model: Path, cams: Path) -> None:
            self.made = (model.parent.name, cams.name, self.options["make_cam"]["resize"])

        def cams_to_labels(self, cams: Path, tag: str) -> dict[str, object]:
            return {"made": self.made, "tag": tag, **self.options["make_pseudo"]}

    got = {name: _arm_of(name, Steps(), tmp_path) for name in
           ("cams-reference", "cam-plain-reference", "cam-full-reference")}  # fmt: skip
    assert got["cams-reference"]["made"] == ("cam_model", "cams_cams_reference", "pil-bicubic")
    assert got["cam-plain-reference"]["made"][:2] == (
        "cam_model_cam_plain", "cams_cam_plain_reference")  # fmt: skip
    assert got["cam-full-reference"] == {
        "made": ("cam_model_cam_full", "cams_cam_full_reference", "pil-bicubic"),
        "tag": "cam_full_reference", "crf_preset": "reference"}  # fmt: skip


def test_the_ablation_by_variant_averages_the_seeds_and_reads_the_order_on_the_means(
    tmp_path: Path,
) -> None:
    def cams(oracle: float) -> dict[str, float]:
        return {"cam_miou_oracle": oracle, "cam_miou": oracle, "pseudo_miou": oracle}

    results = {
        "v-1": {"cam-plain": cams(40), "cams": cams(44), "cam-full": cams(50)},
        "v-2": {"cam-plain": cams(42), "cams": cams(40), "cam-full": cams(30)},
        "w-1": {"cam-plain": cams(10), "cams": cams(12), "cam-full": cams(14)},
    }  # fmt: skip
    rows = {row["run"]: row for row in by_variant(ablation_rows(results))}
    # v: seed means 41 / 42 / 40, so the order fails on the means though it held on seed 1
    assert rows["v (2)"]["figures"]["cam_miou_oracle"] == [41, 42, 40]
    assert not rows["v (2)"]["paper_order"]["cam_miou_oracle"]
    assert rows["w (1)"]["paper_order"]["cam_miou_oracle"]
    (tmp_path / "arms.json").write_text(json.dumps(results))
    result = CliRunner().invoke(app, ["ablation", str(tmp_path), "--by-variant"])
    assert result.exit_code == 0, result.output
    assert "of 2: L_p-cls ahead 2, full ahead of it 1, full ahead of plain 1, the order 1" in (
        result.output
    )
    # the steps over the three runs: L_p-cls - plain +4, -2, +2: mean 4/3, sd 3.06, t 0.76
    assert "L_p-cls - plain +1.33 (t +0.8)" in result.output


def test_the_seed_arms_train_another_seed_and_its_segmenter_on_its_own_labels(
    tmp_path: Path,
) -> None:
    # issue #26's training-seed spread: the classifier arm trains with seed 1, and its
    # segmenter arm trains seed 1 on that classifier's labels, started from that classifier
    class Steps:
        options: dict[str, dict[str, object]] = {
            "train_cam": {"seed": 0}, "train_seg": {"epochs": 15, "seed": 0}}  # fmt: skip
        cam_model = Path("unset")

        def train_cam(self, folder: str) -> Path:
            self.trained = (folder, self.options["train_cam"]["seed"])
            return tmp_path / folder / "final.pt"

        def make_cam(self, model: Path, cams: Path) -> None:
            self.made = (model.parent.name, cams.name)

        def cams_to_labels(self, cams: Path, tag: str) -> dict[str, object]:
            return {"trained": self.trained, "made": self.made, "tag": tag}

        def train_seg(self, labels: Path, suffix: str) -> Path:
            self.seg = (labels.name, self.cam_model.parent.name, suffix,
                        self.options["train_seg"])  # fmt: skip
            return tmp_path / "seg" / "final.pt"

        def predict(self, model: Path, pred: Path) -> None:
            self.pred = pred.name

        def evaluate(self, pred: Path) -> dict[str, float]:
            return {"miou": 1.0, "miou_reference": 1.0}

        splits = type("Splits", (), {"predict": "val"})

    got = _arm_of("cam-seed1", Steps(), tmp_path)
    assert got == {
        "trained": ("cam_model_cam_seed1", 1),
        "made": ("cam_model_cam_seed1", "cams_cam_seed1"),
        "tag": "cam_seed1",
    }
    steps = Steps()
    _arm_of("seg-30ep-seed1", steps, tmp_path)
    assert steps.seg == ("pseudo_cam_seed1", "cam_model_cam_seed1", "_seg_30ep_seed1",
                         {"epochs": 30, "seed": 1})  # fmt: skip
    assert steps.pred == "pred_val_seg_30ep_seed1"
    assert not (tmp_path / "pseudo").exists()  # the runs' own labels are not touched

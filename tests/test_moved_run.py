"""A run folder moved (or copied) together with the inputs it holds resumes; an input that
did not move with it is still a changed option. Before: every path option was compared by
its spelling, so `mv runs/a runs/b` made every stage refuse its own outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wsss.engine.trainer import check_same_args
from wsss.errors import WsssError
from wsss.io import MANIFEST_NAME, read_manifest, write_json
from wsss.resume import finish_outputs, moved_with_run, plan_outputs


@pytest.mark.parametrize(
    ("old", "new", "old_out", "new_out", "same"),
    [
        ("/x/run/data", "/y/run/data", "/x/run", "/y/run", True),  # moved with the run
        ("runs/a/data", "runs/b/data", "runs/a", "runs/b", True),  # relative, the same way
        ("/x/run/cam_model/final.pt", "/y/new/cam_model/final.pt", "/x/run", "/y/new", True),
        ("/data/voc", "/data/voc", "/x/run", "/y/run", True),  # outside the run, unmoved
        ("/x/run/data", "/y/run/other", "/x/run", "/y/run", False),  # another folder
        ("/x/run/data", "/y/run/data", "/x/run", "/y/elsewhere", False),  # did not move with it
        ("/data/voc", "/data/voc2", "/x/run", "/x/run", False),
        ("/x/run/data", "/y/run/data", None, "/y/run", False),  # no record of where it was
        (None, "/y/run/data", "/x/run", "/y/run", False),
    ],
)
def test_moved_with_run_compares_places_relative_to_the_run(
    old, new, old_out, new_out, same: bool
) -> None:
    assert moved_with_run(old, new, old_out, new_out) is same


def test_a_trainer_resumes_in_a_moved_run_folder_but_not_on_other_paths(tmp_path: Path) -> None:
    saved = {"data": "/x/run/data", "labels": "/x/run/pseudo", "init": "/x/run/cam/final.pt",
             "out": "/x/run/seg_model", "lr": 0.01}  # fmt: skip
    moved = {key: value.replace("/x/", "/y/") if isinstance(value, str) else value
             for key, value in saved.items()}  # fmt: skip
    check_same_args(tmp_path, saved, moved)
    with pytest.raises(WsssError, match=r"saved with labels='/x/run/pseudo', this run has "):
        check_same_args(tmp_path, saved, {**moved, "labels": "/y/run/pseudo_rw"})
    # only the path options: a value that is no path is compared as it is written
    with pytest.raises(WsssError, match=r"saved with lr=0\.01"):
        check_same_args(tmp_path, saved, {**moved, "lr": 0.02})


def test_a_per_image_stage_resumes_in_a_moved_run_folder(tmp_path: Path) -> None:
    def plan(run: Path, cams: Path):
        params = {"cams": str(cams.resolve()), "threshold": 0.3}
        return plan_outputs(run / "pseudo", ["a", "b"], ".png", "make-pseudo", params,
                            ("cams", "threshold"))  # fmt: skip

    first = tmp_path / "a"
    (first / "cams").mkdir(parents=True)
    done = plan(first, first / "cams")
    (done.out / "a.png").write_bytes(b"label")
    finish_outputs(done, ["a", "b"], ".png", "make-pseudo")
    moved = tmp_path / "b"
    shutil.move(first, moved)

    resumed = plan(moved, moved / "cams")
    assert resumed.todo == ["b"] and resumed.skipped == 1
    finish_outputs(resumed, ["a", "b"], ".png", "make-pseudo")
    (tmp_path / "other").mkdir()
    with pytest.raises(WsssError, match=r"holds make-pseudo outputs made with cams=.*/b/cams"):
        plan(moved, tmp_path / "other")
    # a folder written before manifests said where they were: compared as before
    manifest = read_manifest(moved / "pseudo")
    del manifest["out"]
    manifest["params"]["cams"] = str((first / "cams").resolve())
    write_json(moved / "pseudo" / MANIFEST_NAME, manifest)
    with pytest.raises(WsssError, match=r"made with cams=.*/a/cams"):
        plan(moved, moved / "cams")

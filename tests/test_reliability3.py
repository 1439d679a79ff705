"""Reliability, third pass (issue #28): by class, through the CLI where a user meets it.

1. writing through a planted symbolic link; 2. exit 0 with a wrong result; 3. tracebacks on
the inputs the newer features read; 4. the names the toolkit makes. Each class is closed in
one shared place (docs/reliability.md names it); the tests probe it through the commands
that reach that place: exit code 2, one line naming the file, no traceback.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_bad_input
import torch
from test_bad_input import COMMANDS, Files, one_line_error

import wsss.io
import wsss.report_html
from cli.main import main
from wsss.camfile import load_cam_file
from wsss.data.palette import read_label_png, save_label_png
from wsss.lock import LOCK_NAME

original = test_bad_input.original
files = test_bad_input.files
_quiet_one_thread = test_bad_input._quiet_one_thread


def succeeds(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0, err
    return err


# -- 1. writing through a planted symbolic link -------------------------------------------------


@pytest.fixture
def bait(tmp_path: Path) -> Path:
    """A file outside every output folder that a planted link points at."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("keep me\n")
    return path


@pytest.mark.parametrize("target", ["existing", "dangling"])
@pytest.mark.parametrize("command", ["make-pseudo", "train-cam"])
def test_planted_lock_link_is_refused_not_followed(
    files: Files, bait: Path, capsys, target: str, command: str
) -> None:
    """Before: the lock's JSON overwrote the file the link points to (or created one outside
    the folder) and the run exited 0."""
    files.out.mkdir()
    pointed = bait if target == "existing" else bait.parent / "created.txt"
    (files.out / LOCK_NAME).symlink_to(pointed)
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{files.out / LOCK_NAME}: is a symbolic link inside the output folder")
    assert error.endswith("remove it")
    assert bait.read_text() == "keep me\n"
    assert not (bait.parent / "created.txt").exists()


def test_planted_metrics_link_is_not_appended_through(tmp_path: Path, bait: Path) -> None:
    """metrics.jsonl is appended to: `open(..., "a")` followed a link there."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to(bait)
    with pytest.raises(Exception, match="metrics.jsonl: is a symbolic link"):
        wsss.io.append_jsonl(out / "metrics.jsonl", {"epoch": 1})
    assert bait.read_text() == "keep me\n"


def test_planted_folder_link_inside_an_output_folder_is_refused(
    files: Files, bait: Path, capsys
) -> None:
    """make-cam writes its overlays into OUT/overlays: a link planted there sent them out of
    the folder. Every atomic writer (CAMs, labels, PNGs, JSON) goes through the same check."""
    args = [*COMMANDS["make-cam"](files), "--overlays", "1"]
    succeeds(args, capsys)  # a finished run: a re-run writes the overlays again
    (files.out / "overlays").rename(files.out / "overlays.old")
    (files.out / "overlays").symlink_to(bait.parent, target_is_directory=True)
    error = one_line_error(args, capsys)
    assert error.startswith(f"{files.out / 'overlays'}: is a symbolic link inside the output")
    assert sorted(p.name for p in bait.parent.iterdir()) == ["precious.txt"]


def test_atomic_writer_replaces_a_planted_file_link(tmp_path: Path, bait: Path) -> None:
    """The file itself: the rename replaces the link, the file it pointed to is untouched;
    the temporary file is created exclusively (never through a link)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "x.json").symlink_to(bait)
    wsss.io.atomic_write_bytes(out / "x.json", b"{}\n")
    assert not (out / "x.json").is_symlink() and (out / "x.json").read_bytes() == b"{}\n"
    assert bait.read_text() == "keep me\n"


@pytest.mark.parametrize("name", ["manifest.json", "img_001.png"])
def test_planted_manifest_and_output_links_are_replaced(
    files: Files, bait: Path, capsys, name: str
) -> None:
    """A re-run into a folder where the manifest, or a not yet written label file, is a link
    to a file outside: written in the folder, the outside file untouched."""
    args = COMMANDS["make-pseudo"](files)
    succeeds(args, capsys)
    if name == "manifest.json":  # the link points at a copy of the run's own manifest
        bait.write_text((files.out / name).read_text())
        before = bait.read_text()
    else:
        bait.unlink()  # dangling: the image counts as not written yet
        before = None
    (files.out / name).unlink()
    (files.out / name).symlink_to(bait)
    succeeds(args, capsys)
    assert not (files.out / name).is_symlink()
    if before is not None:
        assert bait.read_text() == before
        assert json.loads((files.out / name).read_text())["complete"] is True
    else:
        assert not bait.exists()


def test_coco_file_name_escaping_the_root_is_refused(coco_root, capsys) -> None:
    """`file_name: "../../x.jpg"` was linked to a file outside the COCO root."""
    root, _ = coco_root
    path = root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    secret = root.parent / "secret.jpg"
    secret.write_bytes((root / "train2014" / data["images"][0]["file_name"]).read_bytes())
    data["images"][0]["file_name"] = "../../secret.jpg"
    path.write_text(json.dumps(data))
    out = root.parent / "coco_out"
    error = one_line_error(["prepare-coco", "--coco", str(root), "--out", str(out)], capsys)
    image_id = data["images"][0]["id"]
    assert error == (
        f"{path}: image {image_id}: file_name '../../secret.jpg' points outside "
        f"{root / 'train2014'}; file names must stay inside the image folder"
    )
    assert not any(p.is_symlink() for p in out.rglob("*")) if out.exists() else True


# -- 2. exit 0 with a wrong result ---------------------------------------------------------------


def test_demo_data_into_another_dataset_is_refused(files: Files, capsys) -> None:
    """Before: it overwrote the dataset's classes.txt and split lists and exited 0."""
    classes = (files.root / "classes.txt").read_text()
    error = one_line_error(["demo-data", str(files.root), "--train", "2", "--val", "1"], capsys)
    assert error.startswith(f"{files.root}: is not empty (")
    assert "is not a demo dataset" in error
    assert (files.root / "classes.txt").read_text() == classes
    demo = files.out / "demo"  # a demo dataset is made again in its own folder
    succeeds(["demo-data", str(demo), "--train", "2", "--val", "1", "--size", "32"], capsys)
    succeeds(["demo-data", str(demo), "--train", "2", "--val", "1", "--size", "32"], capsys)


def test_label_cache_notices_an_edited_annotation(files: Files, capsys) -> None:
    """prepare-voc caches the image-level labels; an XML edited afterwards was read from the
    stale cache, silently. Its size and time are recorded now: the edited one is read again."""
    succeeds(["prepare-voc", "--voc", str(files.root)], capsys)
    cache = json.loads((files.root / "wsss_image_labels.json").read_text())
    assert cache["sources"]["img_001"][0] == "Annotations/img_001.xml"
    files.xml().write_text("<annotation><object><name>cat</name></object></annotation>")
    err = succeeds(COMMANDS["make-cam"](files), capsys)
    assert "wsss_image_labels.json: stale for 'img_001'" in err
    assert load_cam_file(files.out / "img_001.npy").labels.tolist() == [1]  # cat, not dog
    assert load_cam_file(files.out / "img_000.npy").labels.tolist() == [1]


def test_coco_ids_colliding_between_splits_are_refused(coco_root, capsys) -> None:
    """The same file name under train2014/ and val2014/ (a custom export) made the val split
    the train images."""
    root, _ = coco_root
    train = json.loads((root / "annotations" / "instances_train2014.json").read_text())
    path = root / "annotations" / "instances_val2014.json"
    val = json.loads(path.read_text())
    taken = train["images"][0]["file_name"]
    image = next(i for i in val["images"] if i["file_name"] == "COCO_val2014_000000000042.jpg")
    (root / "val2014" / image["file_name"]).rename(root / "val2014" / taken)
    image["file_name"] = taken
    path.write_text(json.dumps(val))
    out = root.parent / "coco_out"
    error = one_line_error(["prepare-coco", "--coco", str(root), "--out", str(out)], capsys)
    assert error.startswith(
        f"{path}: image {image['id']}: file name '{Path(taken).stem}' is also an image of the "
        "train split; ids (file names without .jpg) must be unique across splits"
    )


def test_eval_cam_on_all_ignore_masks_has_no_best_threshold(files: Files, capsys) -> None:
    """Before: `best_threshold 0.05` from an all-NaN sweep, which make-pseudo then used as
    the oracle threshold."""
    for image_id in ("img_000", "img_001", "img_002", "img_003"):
        mask = read_label_png(files.mask(image_id))
        save_label_png(files.mask(image_id), np.full_like(mask, 255))
    record = files.cams / "eval_cam.json"
    args = ["eval-cam", "--cams", str(files.cams), "--gt", str(files.root), "--split", "train"]
    err = succeeds([*args, "--no-plot"], capsys)
    assert f"{record}: no threshold has a defined mIoU" in err
    saved = json.loads(record.read_text())
    assert saved["best_threshold"] is None and saved["best_miou"] is None
    assert "no best threshold" in saved["undefined"]
    make = [*COMMANDS["make-pseudo"](files)]
    make[make.index("--threshold") + 1] = "oracle"
    error = one_line_error(make, capsys)
    assert error.startswith(f"{record}: no best threshold: no threshold has a defined mIoU")


def _replace_an_image(files: Files) -> None:
    """Same count, another image: img_003 swapped for a copy of img_000 under a new id."""
    for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml"),
                           ("SegmentationClass", ".png")):  # fmt: skip
        source = files.root / folder / f"img_000{suffix}"
        (files.root / folder / f"img_new{suffix}").write_bytes(source.read_bytes())
    text = files.split_list().read_text().replace("img_003", "img_new")
    files.split_list().write_text(text)


def _relabel(files: Files) -> None:
    files.xml().write_text("<annotation><object><name>cat</name></object></annotation>")
    mask = read_label_png(files.mask()).copy()
    mask[mask == 2] = 1  # dog -> cat
    save_label_png(files.mask(), mask)


@pytest.mark.parametrize(
    ("command", "change", "named"),
    [
        ("train-cam", _replace_an_image, "the split's image ids"),
        ("train-cam", _relabel, "the training labels"),
        ("train-seg", _relabel, "the training labels"),
    ],
)
def test_resume_after_the_training_set_changed_is_refused(
    files: Files, capsys, command: str, change, named: str
) -> None:
    """Before: `--resume` continued on the other images or labels, silently."""
    args = [*COMMANDS[command](files), "--resume"]
    succeeds(args, capsys)
    assert set(torch.load(files.out / "last.pt", weights_only=True)["data_fingerprint"]) == {
        "ids", "labels", "images"
    }  # fmt: skip
    succeeds(args, capsys)  # the same data resumes (here: finds the run finished)
    change(files)
    error = one_line_error(args, capsys)
    assert error.startswith(f"{files.out / 'last.pt'}: the training set changed since")
    assert f"({named}" in error


@pytest.mark.parametrize(
    "listing",
    [
        "__ignore__\n_background_\ncat\ndog\n",
        "__background__\ncat\ndog\n",
        "_background_\ncat\ndog\n",
    ],
)
def test_class_lists_of_other_tools_name_background_and_ignore(
    files: Files, capsys, listing: str
) -> None:
    """labelme writes `__ignore__` and `_background_` first; before, they became classes 1
    and 2 and shifted every label (here: a model of 2 classes refused a list of 4)."""
    (files.root / "classes.txt").write_text(listing)
    succeeds(COMMANDS["make-cam"](files), capsys)
    assert load_cam_file(files.out / "img_001.npy").labels.tolist() == [2]  # dog


@pytest.mark.parametrize("name", ["_background_", "__ignore__", "__background__"])
def test_background_or_ignore_names_inside_a_class_list_are_refused(
    files: Files, capsys, name: str
) -> None:
    (files.root / "classes.txt").write_text(f"cat\n{name}\ndog\n")
    error = one_line_error(COMMANDS["make-cam"](files), capsys)
    assert error.startswith(f"{files.root / 'classes.txt'}: line 2 names '{name}' as a class")
    assert "list it only first" in error


def _with_weight(files: Files, which: str, key: str, value: float) -> Path:
    path = files.classifier if which == "classifier" else files.segmenter
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model"][key] = checkpoint["model"][key].clone().fill_(value)
    changed = files.out.parent / f"changed_{which}.pt"
    torch.save(checkpoint, changed)
    return changed


@pytest.mark.parametrize("command", ["make-cam", "predict"])
def test_checkpoint_with_a_nan_weight_is_refused_at_load(files: Files, capsys, command) -> None:
    """Before: make-cam wrote all-NaN CAMs, predict all-background maps (scored 21.75)."""
    which, key = ("classifier", "classifier.weight") if command == "make-cam" else (
        "segmenter", "classifier.bias")  # fmt: skip
    checkpoint = _with_weight(files, which, key, float("nan"))
    args = COMMANDS[command](replace(files, **{which: checkpoint}))
    error = one_line_error(args, capsys)
    assert error.startswith(f"{checkpoint}: weights tensor '{key}' holds ")
    assert "non-finite value(s) (NaN or inf)" in error
    assert not files.out.exists()


@pytest.mark.parametrize("command", ["make-cam", "predict"])
def test_non_finite_network_output_stops_the_stage_naming_the_image(
    files: Files, capsys, command: str
) -> None:
    """Finite weights so large that the network's output overflows to inf / NaN."""
    which, key = ("classifier", "classifier.weight") if command == "make-cam" else (
        "segmenter", "classifier.weight")  # fmt: skip
    checkpoint = _with_weight(files, which, key, 3e38)
    args = COMMANDS[command](replace(files, **{which: checkpoint}))
    error = one_line_error(args, capsys)
    assert error.startswith(f"{files.image('img_000')}: the network's output for this image is")
    assert not list(files.out.glob("img_*"))


# -- 3. tracebacks on the inputs the newer features read -----------------------------------------


def _damage_report_input(run: Path, case: str) -> Path:
    """Damage one file of a finished-looking run; returns the file the page must name."""
    if case == "eval_cam best_miou null":
        path = run / "cams" / "eval_cam.json"
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "best_miou": None}))
        return path
    if case == "eval.json non-numeric":
        path = run / "pseudo" / "eval.json"
        record = json.loads(path.read_text())
        record["iou"]["cat"] = "high"
        path.write_text(json.dumps(record))
        return path
    if case == "metrics of 1e308":
        path = run / "seg_model" / "metrics.jsonl"
        lines = [json.dumps({"epoch": 1, "loss": 1e308}), json.dumps({"epoch": 2, "loss": -1e308})]
        path.write_text("\n".join(lines) + "\n")
        return path
    if case == "truncated CAM file":
        path = sorted((run / "cams").glob("*.npy"))[0]
        path.write_bytes(path.read_bytes()[:100])
        return path
    assert case == "summary.json a list"
    path = run / "summary.json"
    path.write_text("[1, 2, 3]\n")
    return path


@pytest.mark.parametrize(
    "case",
    [
        "eval_cam best_miou null",
        "eval.json non-numeric",
        "metrics of 1e308",
        "truncated CAM file",
        "summary.json a list",
    ],
)
def test_report_on_damaged_files_shows_the_rest_and_names_them(
    tmp_path: Path, capsys, monkeypatch, case: str
) -> None:
    """Before: a traceback (a truncated CAM file: no page at all). The run folder's name has
    brackets: status lines print it as it is, neither as markup nor escaped."""
    from test_report import make_run

    monkeypatch.delenv("WSSS_QUIET")
    run = make_run(tmp_path / "lab [v2]")
    damaged = _damage_report_input(run, case)
    code = main(["report", str(run)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err and "\\[" not in err and "[/]" not in err
    page = (run / "report.html").read_text()
    assert "<h2>Samples</h2>" in page and "<h2>Per-class IoU</h2>" in page
    if case == "eval_cam best_miou null":  # a record eval-cam may write: shown, n/a
        assert "Damaged files" not in page
        return
    assert "Damaged files" in page and html.escape(str(damaged)) in page
    assert f"damaged: {damaged}: " in " ".join(err.split())


def test_report_finds_a_relative_data_folder_from_another_directory(
    tmp_path: Path, monkeypatch
) -> None:
    """A run made with `--data data` (relative): before, the report looked for `data` in the
    folder it was started from and drew no samples."""
    from test_report import make_run

    run = make_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    for folder in ("cams", "pseudo", "pred_val"):
        manifest = json.loads((run / folder / "manifest.json").read_text())
        wsss.io.write_manifest(run / folder, manifest["stage"], {**manifest["params"],
                               "data": "data"}, complete=True, files=manifest["files"])  # fmt: skip
    (run / "summary.json").write_text(json.dumps({"recipe": "demo", "data": "data"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = wsss.report_html.build_report(run)
    assert not [line for line in report.missing if line.startswith("samples:")], report.missing
    assert report.html.count("<figure") == 5


def _coco_case(data: dict[str, Any], case: str) -> str:
    """Damage the train annotation file's JSON; returns what the error must say."""
    image, ann = data["images"][0], data["annotations"][0]
    if case == "image without height":
        del image["height"]
        return f"image {image['id']}: no 'height'"
    if case == "string sizes":
        image["width"] = str(image["width"])
        return f"image {image['id']}: 'width' must be a positive integer, got '{image['width']}'"
    if case == "string category_id":
        ann["category_id"] = str(ann["category_id"])
        return f"annotation {ann['id']} (image {ann['image_id']}): category_id must be an integer"
    if case == "empty polygon list":
        ann["segmentation"] = []
        return f"annotation {ann['id']} (image {ann['image_id']}): empty segmentation"
    if case == "degenerate polygon":
        ann["segmentation"] = [[1, 2, 3, 4]]
        return f"annotation {ann['id']} (image {ann['image_id']}): polygon 0 has 4 coordinates"
    if case == "size differing from the image file":
        image["width"] += 8
        return f"image {image['id']}: the annotation file says {image['width']}x"
    if case == "duplicate category name":
        first, second = data["categories"][:2]
        second["name"] = first["name"]
        low, high = sorted((first["id"], second["id"]))
        return f"categories {low} and {high} are both named '{first['name']}'"
    assert case == "multi-line category name"
    category = data["categories"][0]
    category["name"] = "per\nson"
    return f"category {category['id']}: name 'per\\nson' spans lines"


@pytest.mark.parametrize(
    "case",
    [
        "image without height",
        "string sizes",
        "string category_id",
        "empty polygon list",
        "degenerate polygon",
        "size differing from the image file",
        "duplicate category name",
        "multi-line category name",
    ],
)
def test_prepare_coco_bad_entries_are_one_line_naming_the_id(coco_root, capsys, case) -> None:
    root, _ = coco_root
    path = root / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    expected = _coco_case(data, case)
    path.write_text(json.dumps(data))
    out = root.parent / "coco_out"
    error = one_line_error(["prepare-coco", "--coco", str(root), "--out", str(out)], capsys)
    assert error.startswith(f"{path}: {expected}"), error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("img_000,\u00b2\n", "line 1: unknown class '\u00b2' (not in the class list)"),
        ("img_000;cat\n", "line 1: fields separated by ';' ('img_000;cat')"),
        ("img_000\tcat\n", "line 1: fields separated by a TAB ('img_000\\tcat')"),
        ('img_000,"cat\ndog"\nimg_001,dog\n', "line 1: a quoted field runs on to line 2"),
        ('img_000,cat\nimg_001,"dog\nimg_002,cat\n', "line 2: a quoted field runs on to line 3"),
    ],
)
def test_labels_csv_mistakes_are_one_correct_line(files: Files, capsys, text, expected) -> None:
    (files.root / "labels.csv").write_text(text)
    error = one_line_error(COMMANDS["make-cam"](files), capsys)
    assert error.startswith(f"{files.root / 'labels.csv'}: {expected}"), error


@pytest.mark.parametrize(
    ("command", "option", "value", "expected"),
    [
        ("train-cam", "--seed", "-1", "--seed must be at least 0, got -1"),
        ("train-seg", "--seed", str(2**64), "--seed must be at most 18446744073709551615"),
        ("train-cam", "--weight-decay", "inf", "--weight-decay must be a finite number, got inf"),
        ("train-seg", "--lr", "nan", "--lr must be a finite number, got nan"),
        ("demo-data", "--seed", "-1", "--seed must be at least 0, got -1"),
    ],
)
def test_seeds_and_numbers_out_of_range_are_one_line(
    files: Files, capsys, command, option, value, expected
) -> None:
    """Before: a traceback from numpy / torch (seeds), or `--weight-decay inf` accepted and
    then a divergence message blaming the lr and naming a last.pt that did not exist."""
    base = ["demo-data", str(files.out / "demo")] if command == "demo-data" else COMMANDS[
        command](files)  # fmt: skip
    error = one_line_error([*base, option, value], capsys)
    assert error.startswith(expected), error
    assert not (files.out / "last.pt").exists()


def test_pipeline_validates_every_stage_before_the_first(tmp_path: Path, capsys) -> None:
    """Before: `--set train_seg.backbone=bogus` was found after train-cam, make-cam and
    make-pseudo ran."""
    out = tmp_path / "run"
    args = ["pipeline", "demo", "--out", str(out), "--dry-run"]
    error = one_line_error([*args, "--set", "train_seg.backbone=bogus"], capsys)
    assert error.startswith("train_seg.backbone: unknown backbone 'bogus'")
    error = one_line_error([*args, "--set", "train_seg.pretrained=/no/such.pth"], capsys)
    assert error.startswith("/no/such.pth: --pretrained weights file not found")
    assert not out.exists()


# -- 4. the names the toolkit makes ---------------------------------------------------------------


def _add_image(files: Files, image_id: str, like: str = "img_001") -> None:
    """Another entry of the split: a copy of `like`'s image, XML, mask and CAM file."""
    for path, suffix in ((files.image, ".jpg"), (files.xml, ".xml"), (files.mask, ".png")):
        source = path(like)
        (source.parent / f"{image_id}{suffix}").write_bytes(source.read_bytes())
    (files.cams / f"{image_id}.npy").write_bytes((files.cams / f"{like}.npy").read_bytes())
    files.split_list().write_text(files.split_list().read_text() + f"{image_id}\n")


@pytest.mark.parametrize("length", [238, 251])
def test_long_ids_fit_the_temporary_names_too(files: Files, capsys, length: int) -> None:
    """Before: `directory is not writable (File name too long)`: the temporary file's name
    is 18 characters longer than the file's, past the file system's 255 bytes."""
    image_id = "x" * length
    _add_image(files, image_id)
    succeeds(COMMANDS["make-cam"](files), capsys)
    assert load_cam_file(files.out / f"{image_id}.npy").labels.tolist() == [2]
    succeeds(COMMANDS["make-pseudo"](replace(files, out=files.out.parent / "pseudo")), capsys)
    assert (files.out.parent / "pseudo" / f"{image_id}.png").is_file()


def test_id_too_long_for_a_file_name_is_one_line(files: Files, capsys) -> None:
    image_id = "y" * 253  # y...y.jpg: 257 bytes
    files.split_list().write_text(files.split_list().read_text() + f"{image_id}\n")
    error = one_line_error(COMMANDS["make-cam"](files), capsys)
    assert error.startswith(f"image id '{'y' * 40}'... is too long: its file name ")
    assert "would be 257 bytes, file systems take 255; shorten the id" in error


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """A folder nobody can create files in, root included (chattr +i); else chmod for a
    user that is not root."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        return
    if os.geteuid() == 0:
        pytest.skip("needs chattr: root ignores permission bits")
    folder.chmod(0o555)
    try:
        yield
    finally:
        folder.chmod(0o755)


def test_read_only_cam_folder(files: Files, capsys) -> None:
    """Before: make-pseudo --threshold auto and pick-threshold failed, since the label-free
    record had to go into the CAM folder; eval-cam failed only after the whole sweep."""
    args = COMMANDS["make-pseudo"](files)
    args[args.index("--threshold") + 1] = "auto"
    with read_only(files.cams):
        succeeds(args, capsys)
        record = json.loads((files.out / "label_free_threshold.json").read_text())
        assert record["rule"] == "blend" and record["ids"] == 4
        succeeds(args, capsys)  # read back from the labels' folder
        err = succeeds(["pick-threshold", "--cams", str(files.cams), "--data",
                        str(files.root), "--split", "train"], capsys)  # fmt: skip
        assert f"{files.cams}: takes no file (read-only?): the threshold is not recorded" in err
        eval_cam = ["eval-cam", "--cams", str(files.cams), "--gt", str(files.root), "--split",
                    "train", "--no-plot"]  # fmt: skip
        error = one_line_error(eval_cam, capsys)
        assert error.startswith(f"{files.cams}: directory is not writable (read-only?)")
        assert error.endswith("give --json FILE to write the sweep elsewhere")
        succeeds([*eval_cam, "--json", str(files.out.parent / "sweep.json")], capsys)
    assert not (files.cams / "label_free_threshold.json").exists()


@pytest.mark.parametrize("command", ["make-pseudo", "eval-cam"])
def test_cam_folder_with_both_formats_of_an_id_is_refused(files: Files, capsys, command) -> None:
    """Before: `x.npy` was used and `x.npz` silently ignored."""
    (files.cams / "img_001.npz").write_bytes(b"another format's file")
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{files.cams / 'img_001.npy'}: and img_001.npz both hold CAMs")

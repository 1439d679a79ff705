"""Reliability, third pass (issue #28): by class, through the CLI where a user meets it.

1. writing through a planted symbolic link; 2. exit 0 with a wrong result; 3. tracebacks on
the inputs the newer features read; 4. the names the toolkit makes. Each class is closed in
one shared place (docs/reliability.md names it); the tests probe it through the commands
that reach that place: exit code 2, one line naming the file, no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_bad_input
from test_bad_input import COMMANDS, Files, one_line_error

import wsss.io
from cli.main import main
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

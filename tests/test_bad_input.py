"""Bad input through the CLI: every stage that reads it fails with ONE line naming the file
and the problem, exit code 2, no traceback, and nothing read or written outside its places.

Each case corrupts a fresh copy of a tiny dataset, then runs the commands that read that
input during their work. make-pseudo keeps its default process pool, so its errors come
from a worker process; the DataLoader worker path is tested once, in real `wsss` processes
(in-process, torch only stops the workers of a loader that raised at a later garbage
collection, after a 5 s timeout per worker). (`wsss prepare-voc` has its own bad-input
tests in test_voc.py.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_tinyvoc import make_tiny_voc, one_torch_thread, save_model, wsss_process
from PIL import Image

from cli.main import main
from wsss.cam_math import strided_size
from wsss.camfile import CamRecord, load_cam_file, save_cam_file
from wsss.data.palette import read_label_png, save_label_png
from wsss.data.voc import VocDataset
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog")
SIZE = 32
BAD_ID = "img_001"


@pytest.fixture(autouse=True)
def _quiet_one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WSSS_QUIET", "1")  # no progress bars: stderr holds the error only
    with one_torch_thread():
        yield


@dataclass(frozen=True)
class Files:
    """One test's own copy of everything a command reads, and where it writes."""

    root: Path
    cams: Path
    pred: Path
    classifier: Path
    segmenter: Path
    out: Path

    def image(self, image_id: str = BAD_ID) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask(self, image_id: str = BAD_ID) -> Path:
        return self.root / "SegmentationClass" / f"{image_id}.png"

    def xml(self, image_id: str = BAD_ID) -> Path:
        return self.root / "Annotations" / f"{image_id}.xml"

    def split_list(self) -> Path:
        return self.root / "ImageSets" / "Segmentation" / "train.txt"


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Files:
    base = tmp_path_factory.mktemp("bad_input")
    root = make_tiny_voc(base / "voc", n=4, size=SIZE, classes=CLASSES)
    voc = VocDataset.open(root)
    cams, pred = base / "cams", base / "pred"
    for image_id in voc.split_ids("train"):
        mask = voc.load_mask(image_id)
        classes = voc.image_classes(image_id)
        hr_cam = np.stack([(mask == c + 1).astype(np.float32) for c in classes])
        cam = np.zeros((len(classes), *strided_size(SIZE, SIZE)), np.float32)
        keys = np.array([0, *(c + 1 for c in classes)])
        save_cam_file(cams / f"{image_id}.npy", CamRecord(keys=keys, cam=cam, hr_cam=hr_cam))
        save_label_png(pred / f"{image_id}.png", np.where(mask == 255, 0, mask))
    torch.manual_seed(0)
    return Files(
        root=root,
        cams=cams,
        pred=pred,
        classifier=save_model(base / "cls.pt", CamClassifier("resnet18", 2), CLASSES),
        segmenter=save_model(base / "seg.pt", DeepLabV3Plus("resnet18", 3), CLASSES),
        out=base / "out",
    )


@pytest.fixture
def files(original: Files, tmp_path: Path) -> Files:
    for name in ("root", "cams", "pred"):
        shutil.copytree(getattr(original, name), tmp_path / name)
    for name in ("classifier", "segmenter"):  # links: a rewrite replaces the link, not its target
        (tmp_path / getattr(original, name).name).symlink_to(getattr(original, name))
    return replace(
        original, root=tmp_path / "root", cams=tmp_path / "cams", pred=tmp_path / "pred",
        classifier=tmp_path / original.classifier.name,
        segmenter=tmp_path / original.segmenter.name, out=tmp_path / "out",
    )  # fmt: skip


def one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; it must fail with exit code 2 and a single `error: ...` line."""
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


# -- the commands, each with the options that make it read every kind of input ------------------

TINY_TRAIN = ["--backbone", "resnet18", "--pretrained", "none", "--crop", "32", "--batch-size",
              "2", "--device", "cpu", "--epochs", "1", "--workers", "0"]  # fmt: skip

COMMANDS: dict[str, Callable[[Files], list[str]]] = {
    "make-cam": lambda f: ["make-cam", "--checkpoint", str(f.classifier), "--data", str(f.root),
                           "--split", "train", "--out", str(f.out), "--scales", "1.0",
                           "--device", "cpu", "--workers", "0"],
    "predict": lambda f: ["predict", "--checkpoint", str(f.segmenter), "--data", str(f.root),
                          "--split", "train", "--out", str(f.out), "--device", "cpu",
                          "--workers", "0"],
    "train-cam": lambda f: ["train-cam", "--data", str(f.root), "--split", "train",
                            "--out", str(f.out), "--scale-range", "32,40", *TINY_TRAIN],
    "train-seg": lambda f: ["train-seg", "--data", str(f.root), "--split", "train",
                            "--out", str(f.out), "--scale-range", "32,48", *TINY_TRAIN],
    "make-pseudo": lambda f: ["make-pseudo", "--cams", str(f.cams), "--data", str(f.root),
                              "--split", "train", "--out", str(f.out), "--threshold", "0.3",
                              "--no-crf"],
    "eval-cam": lambda f: ["eval-cam", "--cams", str(f.cams), "--gt", str(f.root), "--split",
                           "train", "--no-plot", "--json", str(f.out / "eval_cam.json")],
    "eval": lambda f: ["eval", "--pred", str(f.pred), "--gt", str(f.root), "--split", "train",
                       "--json", str(f.out / "eval.json")],
}  # fmt: skip


# -- corrupt inputs: each returns (file the error must name, words of the problem) --------------


def truncated_jpeg(f: Files) -> tuple[Path, str]:
    data = f.image().read_bytes()
    f.image().write_bytes(data[: len(data) // 2])
    return f.image(), "unreadable image"


def zero_byte_png(f: Files) -> tuple[Path, str]:
    f.mask().write_bytes(b"")
    return f.mask(), "unreadable PNG"


def mask_of_wrong_size(f: Files) -> tuple[Path, str]:
    save_label_png(f.mask(), np.zeros((SIZE - 8, SIZE), np.uint8))
    return f.mask(), f"mask size {SIZE}x{SIZE - 8} differs from its image"


def mask_value_outside_classes(f: Files) -> tuple[Path, str]:
    mask = read_label_png(f.mask()).copy()
    mask[0, 0] = 7
    save_label_png(f.mask(), mask)
    return f.mask(), "label value 7 outside 0..2 (and 255 = ignore)"


def malformed_xml(f: Files) -> tuple[Path, str]:
    f.xml().write_text("<annotation><object><name>cat</name></annotation>")
    return f.xml(), "malformed XML"


def unknown_class_name(f: Files) -> tuple[Path, str]:
    f.xml().write_text("<annotation><object><name>unicorn</name></object></annotation>")
    return f.xml(), "unknown class name 'unicorn'"


def empty_split_list(f: Files) -> tuple[Path, str]:
    f.split_list().write_text("\n# nothing here\n\n")
    return f.split_list(), "split list is empty"


def entry_without_image(f: Files) -> tuple[Path, str]:
    f.split_list().write_text(f.split_list().read_text() + "ghost\n")
    return f.image("ghost"), "image of list entry 'ghost' not found"


def cam_keys_of_missing_classes(f: Files) -> tuple[Path, str]:
    path = f.cams / f"{BAD_ID}.npy"
    record = load_cam_file(path)
    save_cam_file(path, replace(record, keys=np.array([0, *range(5, 5 + len(record.labels))])))
    return path, "outside the dataset's classes 1..2"


def classifier_of_three_classes(f: Files) -> tuple[Path, str]:
    save_model(f.classifier, CamClassifier("resnet18", 3), ("cat", "dog", "bird"))
    return f.classifier, "model was trained on 3 classes (cat, dog, bird) but the dataset has 2"


def segmenter_of_three_classes(f: Files) -> tuple[Path, str]:
    save_model(f.segmenter, DeepLabV3Plus("resnet18", 4), ("cat", "dog", "bird"))
    return f.segmenter, "model was trained on 3 classes (cat, dog, bird) but the dataset has 2"


CASES = [
    (truncated_jpeg, ["make-cam", "predict", "train-cam", "train-seg", "make-pseudo"]),
    (zero_byte_png, ["train-seg", "make-pseudo", "eval-cam", "eval"]),
    (mask_of_wrong_size, ["train-seg", "make-pseudo", "eval-cam", "eval"]),
    (mask_value_outside_classes, ["train-seg", "make-pseudo", "eval-cam", "eval"]),
    (malformed_xml, ["make-cam", "train-cam"]),
    (unknown_class_name, ["make-cam", "train-cam"]),
    (empty_split_list, list(COMMANDS)),
    (entry_without_image, ["make-cam", "predict", "train-cam", "train-seg", "make-pseudo"]),
    (cam_keys_of_missing_classes, ["make-pseudo", "eval-cam"]),
    (classifier_of_three_classes, ["make-cam"]),
    (segmenter_of_three_classes, ["predict"]),
]


@pytest.mark.parametrize(
    ("corrupt", "command"),
    [(corrupt, command) for corrupt, commands in CASES for command in commands],
    ids=[f"{corrupt.__name__}-{command}" for corrupt, commands in CASES for command in commands],
)
def test_bad_file_is_one_line_naming_it(
    files: Files, capsys: pytest.CaptureFixture[str], corrupt, command: str
) -> None:
    path, problem = corrupt(files)
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{path}: ") and problem in error


def test_bad_image_met_in_loader_workers(files: Files) -> None:
    """With loader workers (the GPU default) the error crosses a DataLoader worker: one line."""
    path, problem = truncated_jpeg(files)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    runs = []
    for command in ("make-cam", "train-cam"):
        args = [*COMMANDS[command](replace(files, out=files.out / command)), "--workers", "2"]
        runs.append(wsss_process(args, env, text=True))
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 2 and "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {problem} (image file")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bogus"], "No such option: --bogus"),
        (["--threshold", "abc"], "--threshold: 'abc' is not a valid float or auto|oracle"),
    ],
)
def test_usage_errors_are_reported_not_crashed(files: Files, capsys, extra, message) -> None:
    assert main([*COMMANDS["make-pseudo"](files), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_init_checkpoint_of_three_classes(files: Files, capsys) -> None:
    path, problem = classifier_of_three_classes(files)
    error = one_line_error([*COMMANDS["train-cam"](files), "--init", str(path)], capsys)
    assert error.startswith(f"{path}: ") and problem in error


class _RunsCode:
    """Unpickling this runs a shell command: what a booby-trapped checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("command", "option", "problem"),
    [
        ("make-cam", "--checkpoint", "not a readable checkpoint"),
        ("train-cam", "--init", "not a readable checkpoint"),
        ("train-cam", "--pretrained", "not a readable weights file"),
    ],
)
def test_checkpoint_carrying_code_is_refused_not_run(
    files: Files, tmp_path: Path, capsys, command: str, option: str, problem: str
) -> None:
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    model = CamClassifier("resnet18", 2).state_dict()
    torch.save({"format": "wsss-checkpoint", "model": model, "x": _RunsCode(marker)}, evil)
    error = one_line_error([*COMMANDS[command](files), option, str(evil)], capsys)
    assert error.startswith(f"{evil}: {problem}")
    assert not marker.exists()


def test_a_path_with_brackets_is_printed_as_it_is(files: Files, capsys) -> None:
    root = files.root.rename(files.root.with_name("data[v2]"))  # not rich markup
    listing = root / "ImageSets" / "Segmentation" / "train.txt"
    listing.write_text("")
    error = one_line_error(COMMANDS["make-cam"](replace(files, root=root)), capsys)
    assert error == f"{listing}: split list is empty"


# -- outputs that cannot be written ------------------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS))
def test_output_under_a_regular_file(files: Files, capsys, command: str) -> None:
    """Root ignores chmod; a path below a regular file fails for everyone."""
    blocker = files.out.with_name("a_file")
    blocker.write_text("not a directory")
    out = blocker / "sub"
    error = one_line_error(COMMANDS[command](replace(files, out=out)), capsys)
    assert error == f"{out}: cannot create directory (Not a directory)"
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("command", ["make-cam", "train-seg", "make-pseudo"])
def test_output_in_a_directory_nobody_can_write(files: Files, capsys, command: str) -> None:
    """/proc exists, and not even root can create files in it."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    error = one_line_error(COMMANDS[command](replace(files, out=Path("/proc"))), capsys)
    assert error.startswith("/proc: directory is not writable")


# -- option values out of range ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "option", "value", "message"),
    [
        ("make-pseudo", "--threshold", "-0.1", "--threshold must be in [0.0, 1.0], got -0.1"),
        ("make-pseudo", "--threshold", "1.01", "--threshold must be in [0.0, 1.0], got 1.01"),
        ("make-pseudo", "--threshold", "nan", "--threshold must be in [0.0, 1.0], got nan"),
        ("make-pseudo", "--fg-threshold", "1.5", "--fg-threshold must be in [0.0, 1.0], got 1.5"),
        ("make-pseudo", "--bg-threshold", "-0.5", "--bg-threshold must be in [0.0, 1.0], got -0.5"),
        ("eval-cam", "--thresholds", "0:1.5:0.1", "--thresholds must be in [0, 1], got 1.1"),
        ("eval-cam", "--thresholds", "-0.2,0.5", "--thresholds must be in [0, 1], got -0.2"),
        ("make-cam", "--scales", "0", "--scales must be positive numbers, got 0.0"),
        ("make-cam", "--scales", "1,-1", "--scales must be positive numbers, got -1.0"),
        ("predict", "--scales", "0", "--scales must be positive numbers, got 0.0"),
        ("predict", "--scales", "0.5,-2", "--scales must be positive numbers, got -2.0"),
        ("predict", "--scales", "inf", "--scales must be positive numbers, got inf"),
        ("train-cam", "--pieces", "2", "--pieces must be a square number (1, 4, 9, ...), got 2"),
        ("train-cam", "--pieces", "0", "--pieces must be a square number (1, 4, 9, ...), got 0"),
        ("train-cam", "--pieces", "-4", "--pieces must be a square number (1, 4, 9, ...), got -4"),
    ],
)
def test_option_out_of_range(
    files: Files, capsys, command: str, option: str, value: str, message: str
) -> None:
    args = COMMANDS[command](files)
    if option in ("--fg-threshold", "--bg-threshold"):  # confident mode takes no --threshold
        at = args.index("--threshold")
        args = args[:at] + args[at + 2 :]
    assert one_line_error([*args, f"{option}={value}"], capsys) == message
    assert not files.out.exists() or not any(files.out.iterdir())


# -- ids that point outside the dataset -----------------------------------------------------------


@pytest.fixture
def bait(files: Files) -> Path:
    """A complete image (jpg, xml, png, CAM) just outside the dataset root, for a bad id to
    reach if it were accepted."""
    outside = files.root.parent / "outside"
    outside.mkdir()
    for source, suffix in ((files.image, ".jpg"), (files.xml, ".xml"), (files.mask, ".png")):
        shutil.copy(source("img_000"), outside / f"x{suffix}")
    shutil.copy(files.cams / "img_000.npy", outside / "x.npy")
    return outside / "x"


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_id_escaping_the_dataset_is_refused(
    files: Files, bait: Path, capsys, command: str, kind: str
) -> None:
    # ../../outside/x: from ROOT/JPEGImages (or the CAM / label folder) up to bait
    bad_id = "../../outside/x" if kind == "relative" else str(bait)
    files.split_list().write_text(f"img_000\n{bad_id}\nimg_002\n")
    before = sorted(bait.parent.iterdir())
    error = one_line_error(COMMANDS[command](files), capsys)
    # Accepted, the id would have worked: the bait is a complete image with labels and CAMs.
    assert f"image id {bad_id!r} points outside" in error
    assert sorted(bait.parent.iterdir()) == before  # nothing written next to the bait
    written = [p for p in files.out.rglob("*") if p.suffix in (".npy", ".png", ".pt")]
    assert written == []  # refused before any work


def test_id_list_of_eval_is_checked_too(files: Files, bait: Path, capsys) -> None:
    listing = files.root / "mine.txt"
    listing.write_text("img_000\n../outside/x\n")
    args = ["eval", "--pred", str(files.pred), "--gt", str(files.root / "SegmentationClass")]
    error = one_line_error([*args, "--list", str(listing)], capsys)
    assert "image id '../outside/x' points outside" in error
    assert not (files.pred / "eval.json").exists()


def test_absolute_id_in_a_bare_cam_folder_is_refused(files: Files, capsys) -> None:
    """eval-cam without a dataset takes ids from a list file path."""
    listing = files.root / "mine.txt"
    listing.write_text(f"{files.cams / 'img_000'}\n")
    args = ["eval-cam", "--cams", str(files.cams), "--gt", str(files.root / "SegmentationClass")]
    error = one_line_error([*args, "--split", str(listing), "--no-plot"], capsys)
    assert "points outside" in error


def test_cam_file_of_an_image_of_another_size(files: Files, capsys) -> None:
    """CAMs made for another image (here: the image was replaced by a wider one)."""
    Image.open(files.image()).resize((SIZE + 8, SIZE)).save(files.image())
    args = COMMANDS["make-pseudo"](files)
    error = one_line_error(args, capsys)
    assert error.startswith(f"{files.cams / (BAD_ID + '.npy')}: CAM size")

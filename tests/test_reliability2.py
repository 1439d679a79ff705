"""Reliability, second pass: inputs and faults a real lab produces, by class, through the CLI.

Each class is closed in one shared place (named in docs/reliability.md); these tests probe it
through every command that reaches that place: text files from other tools, images, files
read back, class lists, output folders, values that are wrong but well-formed, and the
settings that decide a run's bits.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import test_bad_input
import torch
from PIL import Image
from test_bad_input import BAD_ID, COMMANDS, SIZE, Files, one_line_error

from cli.main import main
from wsss.camfile import load_cam_file, save_cam_file
from wsss.data.imagefile import decode_rgb
from wsss.data.palette import IGNORE, save_label_png
from wsss.engine.checkpoint import load_checkpoint, save_checkpoint
from wsss.engine.device import cpu_has_native_bf16
from wsss.io import write_json
from wsss.lock import LOCK_NAME

# The tiny dataset, CAMs, checkpoints and commands of the first bad-input pass.
original = test_bad_input.original
files = test_bad_input.files
_quiet_one_thread = test_bad_input._quiet_one_thread

ROOT = Path(__file__).resolve().parents[1]
ALL = list(COMMANDS)
# What --amp auto (the default) records on this CPU: bf16 where it is native, else fp32.
DEFAULT_CPU_AMP = "bfloat16" if cpu_has_native_bf16() else "off"
READS_IMAGES = ["make-cam", "predict", "train-cam", "train-seg", "make-pseudo", "eval-cam", "eval"]


def succeeds(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0, err
    return err


# -- 1. text files from other tools ---------------------------------------------------------------


@pytest.mark.parametrize("command", ALL)
def test_split_list_with_a_latin1_byte_names_the_offset(files: Files, capsys, command) -> None:
    files.split_list().write_bytes(b"img_000\nimg_001\ncaf\xe9\n")
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error == (
        f"{files.split_list()}: not UTF-8 text: byte 0xe9 at offset 19 (line 3) cannot be "
        "decoded; save it as UTF-8"
    )


@pytest.mark.parametrize("command", ["make-cam", "eval"])
def test_utf16_without_bom_is_one_line(files: Files, capsys, command) -> None:
    files.split_list().write_bytes("img_000\nimg_001\n".encode("utf-16-le"))
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{files.split_list()}: NUL byte on line 1 (UTF-16 without a")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_lists_class_lists_and_xml_from_windows_editors_work(
    files: Files, capsys, encoding: str
) -> None:
    """A BOM'ed, CRLF split list and class list, and an XML saved as UTF-16 with its
    `encoding="utf-8"` declaration kept: make-cam reads all three and writes every CAM."""

    def encode(text: str) -> bytes:
        if encoding == "utf-16-be-bom":
            return b"\xfe\xff" + text.encode("utf-16-be")
        return text.encode(encoding)

    files.split_list().write_bytes(encode("img_000\r\nimg_001\r\nimg_002\r\n"))
    (files.root / "classes.txt").write_bytes(encode("cat\r\ndog\r\n"))
    xml = files.xml("img_001")
    xml.write_bytes(encode('<?xml version="1.0" encoding="utf-8"?>' + xml.read_text()))
    succeeds(COMMANDS["make-cam"](files), capsys)
    assert sorted(p.stem for p in files.out.glob("*.npy")) == ["img_000", "img_001", "img_002"]
    assert load_cam_file(files.out / "img_001.npy").labels.tolist() == [2]  # img_001 is a dog


# -- 2. images ------------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels (its data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("command", READS_IMAGES)
@pytest.mark.parametrize("side", [20000, 200000])  # above the limit; above Pillow's own error
def test_image_claiming_a_huge_size_is_one_line(files: Files, capsys, command, side) -> None:
    files.image().write_bytes(png_claiming(side, side))
    error = one_line_error(COMMANDS[command](files), capsys)
    claimed = f"{side}x{side}" if side == 20000 else f"{side * side} pixels"
    assert error.startswith(f"{files.image()}: image claims {claimed}, more than the limit")


@pytest.mark.parametrize(("mode", "kind"), [("F", "32-bit float"), ("I", "32-bit integer")])
@pytest.mark.parametrize("command", ["make-cam", "train-cam", "make-pseudo"])
def test_images_without_a_colour_range_are_refused(files: Files, capsys, mode, kind, command):
    array = np.full((SIZE, SIZE), 1000, np.int32 if mode == "I" else np.float32)
    path = files.image().with_suffix(".tif")
    Image.fromarray(array, mode=mode).save(path)
    path.rename(files.image())  # content decides the format, not the name
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{files.image()}: {kind} image (mode {mode}) has no defined colour")


def test_image_modes_are_converted_on_purpose(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent blue: white, not blue
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    pixels = np.asarray(decode_rgb(tmp_path / "a.png"))
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[0, 1].tolist() == [255, 255, 255]
    deep = np.array([[0, 65535], [257 * 100, 257 * 200]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")  # 16-bit grey (I;16)
    grey = np.asarray(decode_rgb(tmp_path / "d.png"))[..., 0]
    assert grey.tolist() == [[0, 255], [100, 200]]  # scaled, not clipped to white


@pytest.mark.parametrize("mode", ["I;16", "RGB", "1"])
@pytest.mark.parametrize("command", ["train-seg", "eval-cam", "eval"])
def test_label_png_of_another_mode_is_refused(files: Files, capsys, mode, command) -> None:
    Image.new(mode, (SIZE, SIZE)).save(files.mask())
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error == (
        f"{files.mask()}: label PNG must be an 8-bit palette or greyscale image (P or L), "
        f"got mode {mode}"
    )


# -- 3. files read back ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cache",
    [
        {"classes": ["cat", "dog"], "labels": {BAD_ID: [7]}},  # index out of range
        {"classes": ["cat", "dog"], "labels": {BAD_ID: [1.0]}},  # a float index
        {"classes": ["cat", "dog"]},  # no labels
        {"classes": ["cat", "dog"], "labels": {BAD_ID: "cat"}},  # wrong type
        {"classes": "cat", "labels": {}},
        [1, 2, 3],
    ],
)
def test_label_cache_with_wrong_content_is_stale(files: Files, capsys, cache) -> None:
    """Ignored with a warning naming it; the labels come from the XMLs (img_001: dog)."""
    cache_path = files.root / "wsss_image_labels.json"
    write_json(cache_path, cache)
    err = succeeds(COMMANDS["make-cam"](files), capsys)
    assert f"warning: {cache_path}: " in err and "ignored (labels read from the XMLs)" in err
    assert load_cam_file(files.out / "img_001.npy").labels.tolist() == [2]


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ({"stage": "STAGE", "params": None}, "params"),
        ({"stage": "STAGE"}, "params"),
        ({"stage": None, "params": {}}, "stage"),
        ({"stage": "STAGE", "params": {}, "complete": "yes"}, "complete"),
    ],
)
@pytest.mark.parametrize("command", ["make-cam", "predict", "train-seg", "make-pseudo"])
def test_manifest_with_null_or_wrong_fields_is_one_line(files, capsys, manifest, field, command):
    files.out.mkdir()
    stage = {**manifest, "stage": command} if manifest["stage"] == "STAGE" else manifest
    write_json(files.out / "manifest.json", stage)
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{files.out / 'manifest.json'}: field '{field}'")


def test_resume_state_that_does_not_fit_is_one_line(files: Files, capsys) -> None:
    """`last.pt` edited by hand: optimizer, lr schedule, RNG states of the wrong shape."""
    args = COMMANDS["train-cam"](files)
    succeeds(args, capsys)
    last = files.out / "last.pt"
    content = load_checkpoint(last)
    for field, value in (("optimizer", {"state": 3}), ("rng", {}), ("schedule", None)):
        save_checkpoint(last, **{**content, field: value})
        error = one_line_error([*args, "--resume"], capsys)
        assert error.startswith(f"{last}: training state does not fit this run: ")


@pytest.mark.parametrize("command", ["make-pseudo", "eval-cam"])
def test_cam_manifest_with_wrong_classes_field(files: Files, capsys, command) -> None:
    write_json(files.cams / "manifest.json", {"stage": "make-cam", "params": {"classes": 3}})
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error == f"{files.cams / 'manifest.json'}: field 'classes' must be a list, got 3"


@pytest.mark.parametrize(("field", "value"), [("classes", None), ("model_config", None),
                                              ("classes", [1, 2]), ("epoch", "1")])  # fmt: skip
@pytest.mark.parametrize("command", ["make-cam", "predict"])
def test_checkpoint_with_null_or_wrong_fields_is_one_line(files, capsys, field, value, command):
    path = files.classifier if command == "make-cam" else files.segmenter
    content = load_checkpoint(path)
    path.unlink()  # a link to the module's copy: write a file of this test's own
    save_checkpoint(path, **{**content, field: value})
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{path}: field '{field}' must be")


def test_prediction_manifest_with_null_params_in_eval(files: Files, capsys) -> None:
    write_json(files.pred / "manifest.json", {"stage": "predict", "params": None})
    args = ["eval", "--pred", str(files.pred), "--gt", str(files.root)]
    error = one_line_error(args, capsys)
    assert error.startswith(f"{files.pred / 'manifest.json'}: field 'params' must be an object")


# -- 4. class lists -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("cat\nBackground\ndog\n", "line 2 names 'Background' as a class"),
        ("cat\ndog\nBACKGROUND\n", "line 3 names 'BACKGROUND' as a class"),
        ("cat\ndog\nCat\n", "class list repeats 'Cat' (lines 1 and 3)"),
        ("background\n\n# none\n", "class list is empty"),
    ],
)
@pytest.mark.parametrize("command", ALL)
def test_bad_class_lists_are_one_line(files: Files, capsys, text, problem, command) -> None:
    (files.root / "classes.txt").write_text(text)
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{files.root / 'classes.txt'}: {problem}")


def test_leading_background_line_is_label_zero(files: Files, capsys) -> None:
    (files.root / "classes.txt").write_text("background\ncat\ndog\n")
    succeeds(COMMANDS["eval"](files), capsys)
    scores = json.loads((files.out / "eval.json").read_text())
    assert list(scores["iou"]) == ["background", "cat", "dog"]


def test_class_names_that_look_like_markup_print_literally(files, capsys, monkeypatch) -> None:
    monkeypatch.delenv("WSSS_QUIET")
    (files.root / "classes.txt").write_text("[/]\n[bold]x\n")
    files.out.mkdir()
    out = files.out / "[red]scores.json"
    assert main([*COMMANDS["eval"](files)[:-1], str(out)]) == 0
    printed = capsys.readouterr()
    assert "[/]" in printed.out and "[bold]x" in printed.out
    assert f"scores written to {out}" in " ".join(printed.err.split())


# -- 5. outputs and folders -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["make-cam", "predict", "make-pseudo", "train-cam", "train-seg"]
)
def test_output_folder_that_is_not_the_stages_is_refused(files: Files, capsys, command) -> None:
    """E.g. `make-pseudo --out ROOT/SegmentationClass`: PNGs, no manifest of this stage."""
    masks = files.root / "SegmentationClass"
    before = sorted(masks.iterdir())
    error = one_line_error(COMMANDS[command](replace(files, out=masks)), capsys)
    assert error.startswith(f"{masks}: is not empty (4 entries, e.g. img_000.png) and holds no")
    assert sorted(masks.iterdir()) == before  # no manifest, no eval.json, no lock left


# A run of another process holding the lock of the folder named in argv[1], as a stage does.
LOCK_HOLDER = """
import sys, time
from wsss.lock import acquire
acquire(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("command", ["make-cam", "make-pseudo", "train-cam"])
def test_live_lock_is_one_line_naming_its_holder(files: Files, capsys, command) -> None:
    files.out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", LOCK_HOLDER, str(files.out), command]
    holder = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = json.loads((files.out / LOCK_NAME).read_text())["started"]
        (files.out / ".x.npy.abc.tmp").write_bytes(b"the other run's file in progress")
        error = one_line_error(COMMANDS[command](files), capsys)
    finally:
        holder.kill()
        holder.wait()
    assert error == (
        f"{files.out}: in use by another run ({command} pid {holder.pid} on "
        f"{socket.gethostname()} since {started}); wait for it to finish or use another --out"
    )
    assert (files.out / ".x.npy.abc.tmp").exists()  # the other run's temporary is left alone
    # Killed (-9 above), the holder's lock went with it: the folder is free, no file to delete.
    err = succeeds(COMMANDS["make-pseudo"](files), capsys)
    assert f"taking over the lock of a run that is gone ({command} pid {holder.pid}" in err
    assert not (files.out / ".x.npy.abc.tmp").exists()


# A run holding the lock with a forked worker (as DataLoader and CRF workers are), which
# outlives its parent's kill -9 for a few seconds.
LOCK_HOLDER_WITH_WORKER = """
import os, sys, time
from wsss.lock import acquire
acquire(sys.argv[1], "train-cam")
worker = os.fork()
if worker == 0:
    time.sleep(60)
    os._exit(0)
print(worker, flush=True)
time.sleep(60)
"""


def test_forked_workers_of_a_killed_run_do_not_keep_its_lock(files: Files, capsys) -> None:
    files.out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", LOCK_HOLDER_WITH_WORKER, str(files.out)]
    holder = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    worker = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait()
        os.kill(worker, 0)  # the worker still lives
        err = succeeds(COMMANDS["make-pseudo"](files), capsys)
    finally:
        os.kill(worker, 9)
    assert f"taking over the lock of a run that is gone (train-cam pid {holder.pid}" in err


def gone_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.mark.parametrize("who", ["dead pid", "reused pid", "another host"])
def test_lock_file_of_a_killed_run_is_taken_over(files: Files, capsys, who: str) -> None:
    """What the file says does not matter, only whether a process holds the lock: a pid
    reused by another process, or a cluster node that died, blocked the folder before."""
    files.out.mkdir()
    pid, host = {
        "dead pid": (gone_pid(), socket.gethostname()),
        "reused pid": (os.getppid(), socket.gethostname()),  # alive, holds no lock
        "another host": (os.getpid(), "node-that-died"),
    }[who]
    lock = {"stage": "make-pseudo", "pid": pid, "host": host}
    (files.out / LOCK_NAME).write_text(json.dumps(lock))
    err = succeeds(COMMANDS["make-pseudo"](files), capsys)
    assert f"taking over the lock of a run that is gone (make-pseudo pid {pid} on {host}" in err
    assert len(list(files.out.glob("*.png"))) == 4
    assert not (files.out / LOCK_NAME).exists()  # released at the end


def test_without_file_locks_the_run_goes_on_with_a_warning(
    files: Files, capsys, monkeypatch
) -> None:
    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("wsss.lock.fcntl.flock", flock)
    err = succeeds(COMMANDS["make-pseudo"](files), capsys)
    lock = files.out / LOCK_NAME
    assert f"{lock}: this file system offers no locks (No locks available)" in err
    assert len(list(files.out.glob("*.png"))) == 4 and not lock.exists()


def test_lock_taken_on_a_file_its_holder_just_removed_is_taken_again(
    tmp_path: Path, monkeypatch
) -> None:
    """The interleaving the two-runs test can only hit by chance: run B opens the lock file,
    run A removes it and unlocks, B locks the removed file. B must lock the one at the path,
    or a third run would run beside it."""
    import fcntl

    from wsss import lock

    path = lock.acquire(tmp_path, "train-cam")  # run A
    opened_before = os.open(path, os.O_RDWR)  # run B's open, before A gives the lock back
    lock.release(path)
    opens = []
    real_open = lock._open
    monkeypatch.setattr(lock, "_open", lambda p: opens.append(p) or (
        opened_before if len(opens) == 1 else real_open(p)))  # fmt: skip
    assert lock.acquire(tmp_path, "make-cam") == path  # run B
    assert len(opens) == 2  # the removed file was given up, the path's file locked
    third = os.open(path, os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(third, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(third)
    assert json.loads(path.read_text())["stage"] == "make-cam"
    lock.release(path)
    assert not path.exists()


# Each image takes 0.5 s longer, so the two runs overlap: make-pseudo of 4 images starts
# (without torch) and ends within the start-up jitter of two processes.
SLOW_LABELER = """
import sys, time
import wsss.stages.make_pseudo as stage
label = stage.ImageLabeler.__call__
def slow(self, image_id):
    time.sleep(0.5)
    return label(self, image_id)
stage.ImageLabeler.__call__ = slow
from cli.main import main
sys.argv[0] = "wsss"
sys.exit(main())
"""


@pytest.mark.parametrize("left", ["nothing", "a killed run's lock file"])
def test_two_runs_into_one_folder_one_is_refused(files: Files, left: str) -> None:
    """Real processes started together: exactly one runs, the other gets one line. Into a
    folder a killed run left, both once read its lock as stale and both took it over."""
    if left != "nothing":
        files.out.mkdir()
        lock = {"stage": "make-pseudo", "pid": gone_pid(), "host": socket.gethostname()}
        (files.out / LOCK_NAME).write_text(json.dumps(lock))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    command = [*COMMANDS["make-pseudo"](files), "--workers", "1"]
    args = [sys.executable, "-c", SLOW_LABELER, *command]
    runs = [subprocess.Popen(args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             text=True) for _ in range(2)]  # fmt: skip
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    refused = [err for code, err in results if code == 2]
    if codes == [0, 0]:
        # Both ran: fine only one after the other, the second finding the folder done.
        assert sum("taking over" in err for _, err in results) <= (left != "nothing"), results
        pytest.skip("the first run finished before the second started (a very busy machine)")
    assert codes == [0, 2], results
    assert refused[0].strip().startswith(f"error: {files.out}: in use by another run (make-pseudo")
    assert "Traceback" not in refused[0] and len(refused[0].strip().splitlines()) == 1
    assert len(list(files.out.glob("*.png"))) == 4


def test_full_disk_while_appending_metrics_leaves_no_torn_line(
    files: Files, capsys, monkeypatch
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs Linux /proc")
    monkeypatch.setattr("wsss.io.os.fsync", fsync)
    error = one_line_error(COMMANDS["train-cam"](files), capsys)
    metrics = files.out / "metrics.jsonl"
    assert error == f"{metrics}: cannot write (No space left on device)"
    assert metrics.read_bytes() == b""  # the line was cut back off


def test_file_size_limit_while_appending_metrics(files: Files) -> None:
    """EFBIG for real (RLIMIT_FSIZE, in a child process): a resumed run's metrics line
    crosses the limit; one line naming metrics.jsonl, and the file is as it was."""
    pytest.importorskip("resource")
    args = COMMANDS["train-cam"](files)
    args[args.index("--epochs") + 1] = "2"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WSSS_QUIET": "1", "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-m", "cli.main", *args], env=env).returncode == 0
    # Rewind the run to "epoch 1 of 2 done", its metrics file just under the limit.
    last = files.out / "last.pt"
    save_checkpoint(last, **{**load_checkpoint(last), "epoch": 1})
    limit = 100_000
    metrics = files.out / "metrics.jsonl"
    metrics.write_text(json.dumps({"epoch": 1, "pad": "x" * (limit - 100)}) + "\n")
    size = metrics.stat().st_size
    script = (
        f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "from cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *args, "--resume"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == f"error: {metrics}: cannot write (File too large)"
    assert metrics.stat().st_size == size  # the part that fitted was cut back off


@pytest.mark.parametrize("command", ["eval-cam", "eval"])
def test_json_naming_a_directory_is_one_line(files: Files, capsys, command) -> None:
    args = COMMANDS[command](files)
    target = files.out / "a_folder"
    target.mkdir(parents=True)
    error = one_line_error([*args[:-1], str(target)], capsys)
    assert error == f"{target}: is a directory; give a file path"


def test_eval_cam_writes_only_where_asked(files: Files, capsys) -> None:
    record = files.cams / "eval_cam.json"
    write_json(record, {"best_threshold": 0.42})
    before = record.read_bytes()
    succeeds(COMMANDS["eval-cam"](files), capsys)  # --json OUT/eval_cam.json
    assert record.read_bytes() == before  # make-pseudo's threshold did not change
    assert json.loads((files.out / "eval_cam.json").read_text())["images"] == 4


# -- 6. values wrong but well-formed --------------------------------------------------------------


@pytest.mark.parametrize("scale", [1000.0, -1.0])
@pytest.mark.parametrize("command", ["make-pseudo", "eval-cam"])
def test_cam_values_outside_0_1_are_one_line(files: Files, capsys, scale, command) -> None:
    path = files.cams / f"{BAD_ID}.npy"
    record = load_cam_file(path)
    save_cam_file(path, replace(record, hr_cam=record.hr_cam * scale, cam=record.cam * scale))
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(f"{path}: 'hr_cam' values span [") and "must be in [0, 1]" in error


@pytest.mark.parametrize("command", ["make-pseudo", "eval-cam"])
def test_cam_folder_of_another_class_list_is_one_line(files: Files, capsys, command) -> None:
    write_json(
        files.cams / "manifest.json",
        {"stage": "make-cam", "params": {"classes": ["cat", "bird"], "split": "train"}},
    )
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error.startswith(
        f"{files.cams / 'manifest.json'}: CAMs made for the classes (cat, bird) but the "
        "dataset has (cat, dog); make them with this dataset's class list"
    )


def test_predictions_of_another_class_list_are_one_line(files: Files, capsys) -> None:
    write_json(
        files.pred / "manifest.json",
        {"stage": "predict", "params": {"classes": ["cat", "bird"], "split": "train"}},
    )
    error = one_line_error(COMMANDS["eval"](files), capsys)
    assert error.startswith(
        f"{files.pred / 'manifest.json'}: labels made for the classes (cat, bird) but the "
        "dataset has (cat, dog)"
    )


@pytest.mark.parametrize("command", ALL)
def test_duplicate_id_in_a_split_is_one_line(files: Files, capsys, command) -> None:
    files.split_list().write_text("img_000\nimg_001\n# comment\nimg_000 \n")
    error = one_line_error(COMMANDS[command](files), capsys)
    assert error == f"{files.split_list()}: id 'img_000' is listed twice (lines 1 and 4)"


def test_all_ignore_ground_truth_is_undefined_not_zero(files: Files, capsys) -> None:
    for mask in (files.root / "SegmentationClass").glob("*.png"):
        save_label_png(mask, np.full((SIZE, SIZE), IGNORE, np.uint8))
    err = succeeds(COMMANDS["eval"](files), capsys)
    assert "mIoU is undefined" in " ".join(err.split())
    assert json.loads((files.out / "eval.json").read_text())["miou"] is None


def test_all_ignore_training_labels_are_one_line(files: Files, tmp_path: Path, capsys) -> None:
    labels = tmp_path / "pseudo"
    for image_id in ("img_000", "img_001", "img_002", "img_003"):
        save_label_png(labels / f"{image_id}.png", np.full((SIZE, SIZE), IGNORE, np.uint8))
    args = [*COMMANDS["train-seg"](files), "--labels", str(labels)]
    error = one_line_error(args, capsys)
    assert error.startswith(f"{labels}: every pixel of the 4 label files of this split is 255")


@pytest.mark.parametrize(
    ("command", "option", "value", "minimum"),
    [
        ("make-cam", "--batch-size", "0", 1),
        ("predict", "--batch-size", "0", 1),
        ("make-cam", "--loader-workers", "-1", 0),
        ("predict", "--loader-workers", "-1", 0),
        ("make-pseudo", "--crf-workers", "0", 1),
        ("make-cam", "--overlays", "-1", 0),
        ("train-cam", "--batch-size", "0", 1),
        ("train-cam", "--loader-workers", "-1", 0),
        ("train-seg", "--epochs", "0", 1),
        ("train-seg", "--threads", "0", 1),
        ("train-cam", "--eval-every", "0", 1),
    ],
)
def test_count_options_are_refused_uniformly(files, capsys, command, option, value, minimum):
    error = one_line_error([*COMMANDS[command](files), option, value], capsys)
    assert error == f"{option} must be at least {minimum}, got {value}"
    assert not files.out.exists() or not any(files.out.iterdir())


def test_threshold_sweep_is_capped(files: Files, capsys) -> None:
    error = one_line_error([*COMMANDS["eval-cam"](files), "--thresholds", "0:1:1e-6"], capsys)
    assert error.startswith("--thresholds gives 1000001 thresholds, at most 1001")


# -- 7. reproducibility across machines -----------------------------------------------------------


def test_runtime_is_recorded_and_a_resume_under_other_threads_warns(files: Files, capsys):
    args = [*COMMANDS["train-cam"](files), "--threads", "1"]
    succeeds(args, capsys)
    manifest = json.loads((files.out / "manifest.json").read_text())
    assert manifest["runtime"] == {"torch_threads": 1, "device": "cpu", "amp": DEFAULT_CPU_AMP}
    checkpoint = load_checkpoint(files.out / "last.pt")
    assert checkpoint["runtime"] == manifest["runtime"]
    try:
        err = succeeds([*args[:-1], "2", "--resume"], capsys)
    finally:
        torch.set_num_threads(1)
    assert "torch_threads 1 -> 2" in err and "may differ bitwise" in " ".join(err.split())
    # and the same settings resume without a word
    assert "differ" not in succeeds([*args, "--resume"], capsys)


@pytest.mark.parametrize("command", ["make-cam", "predict", "make-pseudo"])
def test_per_image_manifests_record_the_runtime(files: Files, capsys, command) -> None:
    succeeds(COMMANDS[command](files), capsys)
    runtime = json.loads((files.out / "manifest.json").read_text())["runtime"]
    amp = "off" if command == "make-pseudo" else DEFAULT_CPU_AMP  # the CRF is fp32 always
    assert runtime == {"device": "cpu", "amp": amp, "torch_threads": torch.get_num_threads()}

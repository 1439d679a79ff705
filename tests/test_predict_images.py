"""`wsss predict --images`: any image files, mirrored outputs, windows, resume, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASSES
from PIL import Image

from cli.main import main
from wsss.data.palette import read_label_png
from wsss.data.transforms import to_chw_uint8
from wsss.inference import Predictor, TtaConfig, segment_probs
from wsss.sliding import segment_image, window_starts

WINDOW = 64  # the large image below is segmented in windows of this size


def _pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 5) % 256, (yy * 3) % 256, (xx + yy) % 256], -1)
    return (base + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)


def _photos(root: Path) -> dict[str, tuple[int, int]]:
    """Nested folders of mixed formats and sizes; returns id -> the (height, width) of its
    label map (an EXIF-rotated photo's as displayed)."""
    (root / "trip" / "day2").mkdir(parents=True)
    (root / ".thumbs").mkdir()
    Image.fromarray(_pixels(40, 52)).save(root / "beach.jpg", quality=95)
    Image.fromarray(_pixels(30, 30, 1)).convert("L").save(root / "trip" / "grey.png")
    Image.fromarray(_pixels(33, 47, 2)).convert("RGBA").save(root / "trip" / "day2" / "alpha.png")
    deep = (_pixels(26, 34, 3)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "trip" / "sixteen.png")  # 16-bit grey (I;16)
    Image.fromarray(_pixels(90, 150, 4)).save(root / "trip" / "large.webp", lossless=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown turned a quarter: portrait
    Image.fromarray(_pixels(24, 40, 5)).save(root / "trip" / "day2" / "turned.jpg", exif=exif)
    Image.fromarray(_pixels(20, 20)).save(root / ".thumbs" / "beach.jpg")  # hidden: left out
    (root / "trip" / "notes.txt").write_text("not an image\n")
    return {
        "beach": (40, 52),
        "trip/grey": (30, 30),
        "trip/day2/alpha": (33, 47),
        "trip/sixteen": (26, 34),
        "trip/large": (90, 150),
        "trip/day2/turned": (40, 24),
    }


def _predict(seg_setup, images: str, out: Path, *extra: str) -> int:
    args = ["predict", "--checkpoint", str(seg_setup[1]), "--images", images, "--out", str(out)]
    return main([*args, "--device", "cpu", "--window", str(WINDOW), *extra])


def _model(seg_setup) -> Predictor:
    from wsss.checkpoints import open_model

    return open_model(seg_setup[1], "deeplab", "cpu")[0]


def test_a_nested_folder_of_mixed_images(seg_setup, tmp_path: Path, one_thread) -> None:
    expected = _photos(tmp_path / "photos")
    out = tmp_path / "photos" / "segmented"  # inside the input: its files are no inputs
    assert _predict(seg_setup, str(tmp_path / "photos"), out, "--overlay", "--save-probs") == 0
    labels = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert labels == sorted(f"{i}.png" for i in expected)
    names = ("background", *CLASSES)
    for image_id, size in expected.items():
        label = read_label_png(out / f"{image_id}.png")
        assert label.shape == size, image_id
        saved = np.load(out / f"{image_id}.probs.npz")
        assert saved["probs"].shape == (len(names), *size) and tuple(saved["classes"]) == names
        np.testing.assert_allclose(saved["probs"].sum(0), 1.0, atol=1e-5)
        np.testing.assert_array_equal(label, saved["probs"].argmax(0))
        assert Image.open(out / f"{image_id}.overlay.jpg").size == size[::-1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["params"]["window"] == WINDOW
    # whole images are the flip-averaged probabilities of the image itself, upright
    image = np.asarray(Image.open(tmp_path / "photos" / "trip" / "day2" / "turned.jpg"))
    upright = np.rot90(image, -1)  # orientation 6: turn a quarter clockwise
    predictor = _model(seg_setup)
    image_tensor = predictor.to_device(to_chw_uint8(upright)[None])
    probs = segment_probs(predictor, image_tensor, TtaConfig(scales=(1.0,)))
    np.testing.assert_array_equal(read_label_png(out / "trip/day2/turned.png"), probs[0].argmax(0))
    # one row per image: its size and each class's share of its pixels
    with open(out / "classes.csv", newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(expected)
    for image_id, row in rows.items():
        label = read_label_png(out / f"{image_id}.png")
        assert (int(row["height"]), int(row["width"])) == label.shape
        shares = [float(row[name]) for name in names]
        counts = np.bincount(label.ravel(), minlength=len(names)) / label.size
        np.testing.assert_allclose(shares, counts, atol=1e-6)
    table = json.loads((out / "classes.json").read_text())
    assert table["classes"] == list(names) and len(table["images"]) == len(expected)


def test_globs_and_files_mirror_their_own_folders(seg_setup, tmp_path: Path) -> None:
    _photos(tmp_path / "photos")
    images = f"{tmp_path}/photos/trip/*.png,{tmp_path}/photos/beach.jpg"
    assert _predict(seg_setup, images, tmp_path / "out") == 0
    found = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    )
    assert found == ["beach.png", "grey.png", "sixteen.png"]


class _Local(torch.nn.Module):
    """A network whose every output pixel depends on its own input pixel only: windows of
    it must merge into exactly the whole image's result."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 3


@pytest.mark.parametrize(("window", "overlap"), [(32, 0.25), (40, 0.5), (17, 0.0), (500, 0.25)])
def test_windows_merge_into_the_whole_image(window: int, overlap: float) -> None:
    predictor = Predictor.prepare(_Local(), torch.device("cpu"))
    image = to_chw_uint8(_pixels(70, 101))
    tta = TtaConfig(scales=(1.0,))
    whole = segment_probs(predictor, predictor.to_device(image[None]), tta)[0].numpy()
    done = segment_image(predictor, image, tta, window=window, overlap=overlap, batch_size=3,
                         keep_probs=True)  # fmt: skip
    assert (done.windows > 1) == (window < 101)
    assert done.probs is not None and done.finite
    np.testing.assert_allclose(done.probs, whole, atol=1e-5)
    np.testing.assert_array_equal(done.labels, whole.argmax(0))


def test_window_starts_cover_the_axis() -> None:
    assert window_starts(100, 100, 75) == [0]
    assert window_starts(100, 40, 30) == [0, 30, 60]
    assert window_starts(101, 40, 30) == [0, 30, 60, 61]


def test_windows_of_a_segmenter_stay_close_to_the_whole_image(seg_setup) -> None:
    """An untrained DeepLab sees the whole image through its image pooling and its receptive
    field, so windows differ from it; with two windows over a 90 x 150 image the merged
    probabilities stay close (measured: 0.044 mean absolute difference)."""
    predictor = _model(seg_setup)
    image = to_chw_uint8(_pixels(90, 150, 4))
    tta = TtaConfig(scales=(1.0,))
    whole = segment_image(predictor, image, tta, window=1024, keep_probs=True)
    torch.testing.assert_close(
        torch.from_numpy(whole.probs),
        segment_probs(predictor, predictor.to_device(image[None]), tta)[0],
    )
    windowed = segment_image(predictor, image, tta, window=112, overlap=0.5, keep_probs=True)
    assert windowed.windows == 2
    assert np.abs(windowed.probs - whole.probs).mean() < 0.06
    assert (windowed.labels == whole.labels).mean() > 0.95


def test_a_killed_run_resumes(seg_setup, tmp_path: Path, monkeypatch) -> None:
    import wsss.stages.predict as predict

    expected = _photos(tmp_path / "photos")
    calls = {"n": 0}
    real = predict.segment_image

    def dies_on_the_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "segment_image", dies_on_the_third)
    out = tmp_path / "out"
    assert _predict(seg_setup, str(tmp_path / "photos"), out, "--overlay") == 130  # Ctrl-C
    # the writes queued behind the interrupted image may be dropped: those are redone
    assert 0 < len(list(out.rglob("*.png"))) <= 2 and not (out / "classes.csv").exists()
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    monkeypatch.setattr(predict, "segment_image", real)
    assert _predict(seg_setup, str(tmp_path / "photos"), out, "--overlay") == 0
    assert len(list(out.rglob("*.png"))) == len(expected)
    assert len(list(out.rglob("*.overlay.jpg"))) == len(expected)
    assert not list(out.rglob(".*.tmp"))
    assert json.loads((out / "manifest.json").read_text())["complete"]
    with open(out / "classes.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(expected)
    # the same folder with another window would mix two kinds of result
    assert _predict(seg_setup, str(tmp_path / "photos"), out, "--window", "80") == 2


def _one_line_error(capsys) -> str:
    """The error (the progress lines before it are the run's log, not part of it)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    error = [line for line in lines if not line.startswith("predict: ")]
    assert len(error) == 1, lines
    return error[0]


def test_an_unreadable_file_among_good_ones(seg_setup, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    expected = _photos(photos)
    (photos / "trip" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    assert _predict(seg_setup, str(photos), out) == 2
    error = _one_line_error(capsys)
    assert "broken.jpg" in error and f"other {len(expected)} image(s) were written" in error
    assert len(list(out.rglob("*.png"))) == len(expected) and not (out / "classes.csv").exists()
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    (photos / "trip" / "broken.jpg").unlink()
    assert _predict(seg_setup, str(photos), out) == 0
    assert (out / "classes.csv").is_file()


@pytest.mark.parametrize("case", ["empty folder", "no match", "missing", "with --data"])
def test_bad_image_arguments(seg_setup, tmp_path: Path, capsys, case: str) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    images = {
        "empty folder": str(tmp_path / "empty"),
        "no match": f"{tmp_path}/*.jpg",
        "missing": str(tmp_path / "nowhere"),
        "with --data": str(tmp_path / "empty"),
    }[case]
    extra = ["--data", str(seg_setup[0])] if case == "with --data" else []
    assert _predict(seg_setup, images, tmp_path / "out", *extra) == 2
    error = _one_line_error(capsys)
    named = {"empty folder": "empty", "no match": "*.jpg", "missing": "nowhere",
             "with --data": "--data"}[case]  # fmt: skip
    assert named in error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_checkpoint_that_is_not_a_segmenter(cam_setup, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_pixels(30, 30)).save(photos / "a.jpg")
    args = ["predict", "--checkpoint", str(cam_setup[1]), "--images", str(photos)]
    assert main([*args, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    error = _one_line_error(capsys)
    assert "cls.pt" in error and "deeplab" in error
    assert not (tmp_path / "out").exists()

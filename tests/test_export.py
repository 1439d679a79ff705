"""`wsss export`: TorchScript and ONNX files that give what `wsss predict` gives, without wsss."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASSES
from PIL import Image

from cli.main import main
from wsss.data.palette import read_label_png
from wsss.export import METADATA_KEY


@pytest.fixture(scope="module")
def predicted(seg_setup, tmp_path_factory) -> tuple[Path, Path]:
    """One photo of an odd size and predict's label map and probabilities of it."""
    base = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(base / "photo.png")
    args = ["predict", "--checkpoint", str(seg_setup[1]), "--images", str(base / "photo.png")]
    # fp32, as the exported files compute (docs/export.md)
    fp32 = ["--device", "cpu", "--amp", "off", "--save-probs"]
    assert main([*args, "--out", str(base / "pred"), *fp32]) == 0
    return base / "photo.png", base / "pred"


def _input(photo: Path) -> np.ndarray:
    """What an application hands the file: float32 RGB 1 x 3 x H x W in 0..255."""
    return np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None]


def _export(checkpoint: Path, out: Path, fmt: str, *extra: str) -> None:
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--format", fmt]
    assert main([*args, *extra]) == 0


def _check_against_predict(probs: np.ndarray, labels: np.ndarray, pred: Path) -> None:
    saved = np.load(pred / "photo.probs.npz")["probs"]
    assert probs.shape == (1, *saved.shape)
    np.testing.assert_allclose(probs[0], saved, atol=1e-4)
    np.testing.assert_array_equal(labels[0], read_label_png(pred / "photo.png"))


def _check_metadata(text: str) -> None:
    meta = json.loads(text)
    assert meta["classes"] == list(CLASSES) and meta["labels"] == ["background", *CLASSES]
    assert meta["input"]["layout"] == "NCHW" and meta["input"]["range"] == [0, 255]
    assert meta["input"]["normalisation"]["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_torchscript_gives_predicts_result(seg_setup, predicted, tmp_path: Path) -> None:
    photo, pred = predicted
    _export(seg_setup[1], tmp_path / "seg.pt", "torchscript")
    extra = {METADATA_KEY: ""}
    model = torch.jit.load(str(tmp_path / "seg.pt"), _extra_files=extra)  # torch alone
    _check_metadata(extra[METADATA_KEY])
    with torch.no_grad():
        probs, labels = model(torch.from_numpy(_input(photo)))
    _check_against_predict(probs.numpy(), labels.numpy(), pred)


def test_onnx_gives_predicts_result(seg_setup, predicted, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    photo, pred = predicted
    _export(seg_setup[1], tmp_path / "seg.onnx", "onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "seg.onnx"))  # onnxruntime alone
    _check_metadata(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    probs, labels = session.run(["probs", "labels"], {"image": _input(photo)})
    _check_against_predict(probs, labels, pred)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_cam_classifier_at_any_size(cam_setup, tmp_path: Path, fmt: str) -> None:
    """scores are the class logits, cams the ReLU class maps (no flip here), at sizes other
    than the one traced."""
    if fmt == "onnx":
        pytest.importorskip("onnx")
        onnxruntime = pytest.importorskip("onnxruntime")
    from wsss.checkpoints import load_model
    from wsss.data.transforms import normalize

    path = tmp_path / ("cls.onnx" if fmt == "onnx" else "cls.pt")
    _export(cam_setup[1], path, fmt, "--no-flip")
    model, _ = load_model(cam_setup[1], "cam_classifier", CLASSES)
    for height, width in ((45, 61), (80, 33)):
        pixels = np.random.default_rng(height).integers(0, 256, (height, width, 3), np.uint8)
        image = pixels.astype(np.float32).transpose(2, 0, 1)[None]
        with torch.no_grad():
            maps = model.eval()(normalize(pixels)[None])
        if fmt == "onnx":
            session = onnxruntime.InferenceSession(str(path))
            scores, cams = session.run(None, {"image": image})
        else:
            with torch.no_grad():
                scores, cams = (
                    t.numpy() for t in torch.jit.load(str(path))(torch.from_numpy(image))
                )
        np.testing.assert_allclose(cams, maps.clamp_min(0).numpy(), atol=1e-4)
        np.testing.assert_allclose(scores, maps.mean((2, 3)).numpy(), atol=1e-4)


def test_a_checkpoint_that_cannot_be_exported(rw_setup, tmp_path: Path, capsys) -> None:
    args = ["export", "--checkpoint", str(rw_setup["checkpoint"]), "--out", str(tmp_path / "a.pt")]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "aff.pt" in error and "deeplab" in error
    assert not (tmp_path / "a.pt").exists()


def test_onnx_without_the_onnx_package(seg_setup, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    out = tmp_path / "seg.onnx"
    args = ["export", "--checkpoint", str(seg_setup[1]), "--out", str(out), "--format", "onnx"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "needs the onnx package" in error, error
    assert not out.exists()


def test_a_file_that_differs_is_not_written(seg_setup, tmp_path: Path, monkeypatch, capsys) -> None:
    """The check at another input size stops a file whose graph froze the traced size."""
    import wsss.export as export

    def frozen(wrapper, example, text):  # a tracer that kept the example's outputs
        class Frozen(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                probs, labels = wrapper(example)
                self.register_buffer("probs", probs.detach())
                self.register_buffer("labels", labels.detach())

            def forward(self, image):
                return self.probs.clone(), self.labels.clone()

        buffer = io.BytesIO()
        torch.jit.save(torch.jit.trace(Frozen(), example), buffer)
        return buffer.getvalue()

    monkeypatch.setattr(export, "_torchscript", frozen)
    assert main(["export", "--checkpoint", str(seg_setup[1]), "--out", str(tmp_path / "s.pt")]) == 2
    assert "differs from the network" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()

"""VOC colour map and palette PNG round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data.palette import read_label_png, save_label_png, voc_colormap
from wsss.errors import WsssError


def test_voc_colormap_reference_entries() -> None:
    cmap = voc_colormap()
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[2].tolist() == [0, 128, 0]
    assert cmap[15].tolist() == [192, 128, 128]
    assert cmap[255].tolist() == [224, 224, 192]


def test_label_png_round_trip_keeps_indices_and_palette(tmp_path: Path) -> None:
    label = np.array([[0, 1, 20], [255, 3, 0]], dtype=np.uint8)
    path = save_label_png(tmp_path / "x.png", label)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]
    assert np.array_equal(read_label_png(path), label)


def test_grey_png_is_read_as_indices(tmp_path: Path) -> None:
    label = np.array([[0, 2], [255, 1]], dtype=np.uint8)
    Image.fromarray(label, mode="L").save(tmp_path / "g.png")
    assert np.array_equal(read_label_png(tmp_path / "g.png"), label)


def test_zero_byte_png_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(WsssError, match="empty.png: unreadable PNG"):
        read_label_png(tmp_path / "empty.png")


def test_rgb_png_is_refused(tmp_path: Path) -> None:
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(WsssError, match="palette or greyscale"):
        read_label_png(tmp_path / "rgb.png")

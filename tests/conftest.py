"""Shared test setup: the helpers module is importable from every test file."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers_tinyvoc import make_tiny_voc  # noqa: E402

from wsss.data.voc import VocDataset  # noqa: E402


@pytest.fixture
def labels_only_dataset(tmp_path: Path) -> Callable[..., Path]:
    """A maker of the weakly-supervised user's dataset: JPEGImages, classes.txt, split lists
    and one labels file (`fmt` csv or json), with no XML and no mask anywhere."""

    def make(name: str = "data", fmt: str = "csv", n: int = 6, size: int = 40) -> Path:
        root = make_tiny_voc(tmp_path / name, n=n, size=size)
        voc = VocDataset.open(root)
        labels = {i: [voc.classes[c] for c in voc.image_classes(i)] for i in voc.split_ids("train")}
        shutil.rmtree(root / "Annotations")
        shutil.rmtree(root / "SegmentationClass")
        if fmt == "csv":
            rows = [f"{image_id},{';'.join(names)}" for image_id, names in labels.items()]
            (root / "labels.csv").write_text("id,labels\n" + "\n".join(rows) + "\n")
        else:
            import json

            (root / "labels.json").write_text(json.dumps(labels))
        return root

    return make

"""A dataset root in PASCAL VOC 2012 layout (VOC itself, VOC + SBD, the demo, or custom data).

```
ROOT/JPEGImages/<id>.jpg            images
ROOT/Annotations/<id>.xml           image-level labels: the set of <object><name> values
ROOT/SegmentationClass/<id>.png     pixel ground truth (palette or grey; 255 = ignore)
ROOT/SegmentationClassAug/<id>.png  optional: VOC + converted SBD masks (train_aug)
ROOT/ImageSets/Segmentation/*.txt   split lists, one id per line
ROOT/classes.txt                    optional: the dataset's own class list
ROOT/labels.csv or labels.json      optional: every image's labels in one file (wsss.data.labels);
                                    used instead of the XMLs when present
```
Only the images, the split lists and labels (XML or labels file) are needed to train and make
CAMs; masks are read only where something is scored against them.
Every reader turns a bad file into a one-line `WsssError` naming it.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsss.data.classes import dataset_classes
from wsss.data.imagefile import decode_rgb, image_size  # noqa: F401 (read from here too)
from wsss.data.labels import find_labels_file, image_stems, read_labels_file
from wsss.data.palette import IGNORE, read_label_png
from wsss.errors import WsssError, file_error
from wsss.io import json_field, read_json, read_text, read_text_lines, safe_child
from wsss.ui import warn

IMAGES = "JPEGImages"
ANNOTATIONS = "Annotations"
MASKS = "SegmentationClass"
AUG_MASKS = "SegmentationClassAug"
LISTS = Path("ImageSets") / "Segmentation"
LABEL_CACHE = "wsss_image_labels.json"
_DEEPLAB_ENTRY = re.compile(r"/?JPEGImages/[^/]+\.jpg")
_XML_ENCODING = re.compile(r"""(?<=<\?xml)(\s+version=["'][^"']*["'])?\s+encoding=["'][^"']*["']""")


def read_id_list(path: str | Path) -> list[str]:
    """Ids from a list file (first whitespace-separated field of each non-empty line).

    An id listed twice is an error: it would be counted twice in every score."""
    path = Path(path)
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_text_lines(path, "split list"), start=1):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            # DeepLab's train_aug.txt holds "/JPEGImages/x.jpg /SegmentationClassAug/x.png".
            entry = fields[0]
            if _DEEPLAB_ENTRY.fullmatch(entry):
                entry = Path(entry).stem
            if entry in first_line:
                raise file_error(
                    path,
                    f"id '{entry}' is listed twice (lines {first_line[entry]} and {number})",
                )
            first_line[entry] = number
            ids.append(entry)
    if not ids:
        raise file_error(path, "split list is empty")
    return ids


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an RGB image, so truncated files fail here, not in a worker."""
    return decode_rgb(path)


def parse_annotation(path: Path) -> list[str]:
    """Object class names of one VOC XML (difficult and truncated objects count)."""
    if not path.is_file():
        raise file_error(path, "annotation XML not found")
    try:
        data = path.read_bytes()
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            # Saved as UTF-16 by an editor that kept its `encoding="utf-8"` declaration,
            # which expat then rejects: decode here and parse the text as UTF-8.
            text = _XML_ENCODING.sub(r"\1", read_text(path, "annotation XML"), count=1)
            data = text.encode()
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise file_error(path, f"malformed XML ({exc})") from None
    except OSError as exc:
        raise file_error(path, f"cannot read ({exc.strerror})") from None
    names = [(obj.findtext("name") or "").strip() for obj in root.iter("object")]
    if any(not name for name in names):
        raise file_error(path, "an <object> has no <name>")
    return names


@dataclass
class VocDataset:
    """Paths, split lists, image-level labels and masks of one dataset root."""

    root: Path
    classes: tuple[str, ...]
    labels_file: Path | None = None
    _label_cache: dict[str, list[int]] | None = field(default=None, repr=False)
    _label_stamps: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    _stale_warned: bool = field(default=False, repr=False)
    _file_labels: dict[str, list[int]] | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        root: str | Path,
        class_list: str | Path | None = None,
        labels: str | Path | None = None,
        label_cache: bool = True,
    ) -> VocDataset:
        """Open a root; `labels` is a labels file to use instead of `ROOT/labels.{csv,json}`;
        `label_cache=False` reads every label from its file (prepare-voc, which writes it)."""
        root = Path(root)
        if not root.is_dir():
            raise file_error(root, "dataset root not found")
        if not (root / IMAGES).is_dir():
            raise file_error(root, f"not a VOC-layout dataset (no {IMAGES}/ folder)")
        if labels is not None and not Path(labels).is_file():
            raise file_error(labels, "labels file not found")
        dataset = cls(
            root=root,
            classes=dataset_classes(root, class_list),
            labels_file=Path(labels) if labels is not None else find_labels_file(root),
        )
        if dataset.labels_file is None and label_cache:
            dataset._label_cache = dataset._read_label_cache()
        return dataset

    @property
    def num_classes(self) -> int:
        """Foreground classes C (labels run 0..C with 0 = background)."""
        return len(self.classes)

    # -- paths -----------------------------------------------------------------------------
    def image_path(self, image_id: str) -> Path:
        return safe_child(self.root / IMAGES, image_id, ".jpg")

    def annotation_path(self, image_id: str) -> Path:
        return safe_child(self.root / ANNOTATIONS, image_id, ".xml")

    def mask_path(self, image_id: str) -> Path:
        """SegmentationClass mask when present, else SegmentationClassAug."""
        voc = safe_child(self.root / MASKS, image_id, ".png")
        if voc.is_file():
            return voc
        aug = safe_child(self.root / AUG_MASKS, image_id, ".png")
        return aug if aug.is_file() else voc

    def has_mask(self, image_id: str) -> bool:
        return self.mask_path(image_id).is_file()

    def missing_masks(self, ids: Sequence[str]) -> list[str]:
        """The ids without a ground-truth mask, in order."""
        return [image_id for image_id in ids if not self.has_mask(image_id)]

    def require_masks(self, ids: Sequence[str], problem: str) -> None:
        """Fail naming the first missing mask; `problem` may use {missing} and {total}."""
        missing = self.missing_masks(ids)
        if missing:
            message = problem.format(missing=len(missing), total=len(ids))
            raise file_error(self.mask_path(missing[0]), message)

    def split_path(self, split: str | Path) -> Path:
        """A split by name (`train`, `val`, `train_aug`) or a path to a list file."""
        text = str(split)
        if text.endswith(".txt") or "/" in text or Path(text).is_file():
            return Path(text)
        return self.root / LISTS / f"{text}.txt"

    def split_ids(self, split: str | Path) -> list[str]:
        path = self.split_path(split)
        if not path.is_file():
            known = sorted(p.stem for p in (self.root / LISTS).glob("*.txt"))
            hint = f" (known splits: {', '.join(known)})" if known else ""
            raise file_error(path, f"split list not found{hint}")
        ids = read_id_list(path)
        for image_id in ids:
            safe_child(self.root, image_id)
        return ids

    # -- labels ------------------------------------------------------------------------------
    def class_index(self, name: str, source: Path) -> int:
        """0-based foreground index of a class name (label value - 1)."""
        try:
            return self.classes.index(name)
        except ValueError:
            raise file_error(
                source, f"unknown class name '{name}' (not in the class list)"
            ) from None

    def label_source(self, image_id: str) -> Path:
        """The file an image's labels come from (for error messages)."""
        return self.labels_file or self.annotation_path(image_id)

    def image_classes(self, image_id: str) -> list[int]:
        """Sorted 0-based foreground class indices present in the image."""
        if self.labels_file is not None:
            if self._file_labels is None:
                # Read once, on first use: opening a root to score masks needs no labels.
                self._file_labels = read_labels_file(
                    self.labels_file, self.classes, image_stems(self.root / IMAGES)
                )
            if image_id not in self._file_labels:
                raise file_error(self.labels_file, f"no entry for image '{image_id}'")
            return self._file_labels[image_id]
        if self._label_cache is not None and image_id in self._label_cache:
            if self._label_stamps.get(image_id) == self.label_stamp(image_id):
                return self._label_cache[image_id]
            self._warn_stale(image_id)
        xml = self.annotation_path(image_id)
        if xml.is_file():
            names = parse_annotation(xml)
            return sorted({self.class_index(name, xml) for name in names})
        mask_path = self.mask_path(image_id)
        if mask_path.is_file():
            values = np.unique(self.load_mask(image_id))
            return [int(v) - 1 for v in values if 0 < v != IGNORE]
        raise file_error(xml, "no annotation XML and no mask to take image-level labels from")

    def label_stamp(self, image_id: str) -> list[Any] | None:
        """What an image's labels are read from (its XML, else its mask) as [path relative to
        the root, size, mtime in ns]: the label cache is valid while this is unchanged."""
        for path in (self.annotation_path(image_id), self.mask_path(image_id)):
            try:
                stat = path.stat()
            except OSError:
                continue
            return [path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime_ns]
        return None

    def _warn_stale(self, image_id: str) -> None:
        if not self._stale_warned:
            self._stale_warned = True
            warn(
                f"{self.root / LABEL_CACHE}: stale for '{image_id}' (its annotation changed "
                "since `wsss prepare-voc` wrote it); changed images' labels are read from their "
                "files; re-run `wsss prepare-voc` to refresh it"
            )

    def image_labels(self, image_id: str) -> np.ndarray:
        """Multi-hot float32 vector of length C."""
        vector = np.zeros(self.num_classes, dtype=np.float32)
        vector[self.image_classes(image_id)] = 1.0
        return vector

    def _read_label_cache(self) -> dict[str, list[int]] | None:
        """prepare-voc's labels, or None (read the XMLs) when absent, made for another class
        list, or holding anything but {"classes": [names], "labels": {id: [0..C-1]}}."""
        path = self.root / LABEL_CACHE
        if not path.is_file():
            return None
        try:
            cache = read_json(path)
        except WsssError as exc:
            raise WsssError(f"{exc}; re-run `wsss prepare-voc`") from None
        try:
            classes = json_field(cache, "classes", list, path)
            labels = json_field(cache, "labels", dict, path)
            if tuple(classes) != self.classes:
                return None  # written for another class list: fall back to the XMLs
            for image_id, value in labels.items():
                json_field(labels, image_id, list, path)
                bad = [v for v in value if type(v) is not int or not 0 <= v < len(classes)]
                if bad:
                    raise file_error(
                        path,
                        f"'{image_id}' has class index {bad[0]!r} outside 0..{len(classes) - 1}",
                    )
            if "sources" not in cache:
                raise file_error(
                    path,
                    "written by an older wsss (it records no source files, so edited "
                    "annotations would go unnoticed); re-run `wsss prepare-voc` to refresh it",
                )
            self._label_stamps = json_field(cache, "sources", dict, path)
        except WsssError as exc:
            warn(f"{exc}; ignored (labels read from the XMLs)")
            return None
        return {key: sorted(set(value)) for key, value in labels.items()}

    # -- pixels --------------------------------------------------------------------------------
    def load_image(self, image_id: str) -> Image.Image:
        return open_image(self.image_path(image_id))

    def load_mask(self, image_id: str, expect_size: tuple[int, int] | None = None) -> np.ndarray:
        """Ground-truth mask; checks its size against the image and its values against C."""
        path = self.mask_path(image_id)
        mask = read_label_png(path)
        check_mask(mask, path, self.num_classes, expect_size)
        return mask

    def check_image_ids(self, ids: list[str]) -> None:
        """Fail early, naming the first id whose image is missing."""
        for image_id in ids:
            path = self.image_path(image_id)
            if not path.is_file():
                raise file_error(path, f"image of list entry '{image_id}' not found")


def check_mask(
    mask: np.ndarray, path: Path, num_classes: int, expect_size: tuple[int, int] | None = None
) -> None:
    """Raise if a label map has the wrong size (W, H) or values outside 0..C and 255."""
    if expect_size is not None and (mask.shape[1], mask.shape[0]) != tuple(expect_size):
        raise file_error(
            path,
            f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
            f"{expect_size[0]}x{expect_size[1]}",
        )
    bad = (mask > num_classes) & (mask != IGNORE)
    if bad.any():
        raise file_error(
            path, f"label value {int(mask[bad].max())} outside 0..{num_classes} (and 255 = ignore)"
        )

"""COCO instance annotations -> one semantic label map per image (see docs/coco.md).

pycocotools reads the annotation JSON and decodes every segmentation form (polygons,
uncompressed and compressed RLE). The conversion follows the converter the WSSS papers use
for their COCO ground truth (alicranck/coco2voc): every instance, crowd regions included, is
painted with its class, and where instances overlap the smaller one (by `area`) stays on top.
Labels are 1..C in category-id order (COCO's 1..90 with gaps -> 1..80), 0 is the background.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wsss.errors import WsssError, file_error

if TYPE_CHECKING:
    from pycocotools.coco import COCO

# The official 2014 layout: split name -> image folder (annotations/instances_<folder>.json).
SPLIT_FOLDERS = {"train": "train2014", "val": "val2014"}
# Recorded in the manifest: resuming with another convention would mix two kinds of masks.
CONVENTION = "coco2voc: all instances incl. crowd painted with their class, smaller area on top"


def annotation_file(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{SPLIT_FOLDERS[split]}.json"


def load_coco(path: Path) -> COCO:
    """The annotation file through pycocotools (its progress prints are silenced)."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise WsssError(
            "prepare-coco needs pycocotools: pip install 'wsss[coco]' (or pycocotools)"
        ) from None
    if not path.is_file():
        raise file_error(path, "annotation file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except (ValueError, AssertionError, KeyError, TypeError) as exc:  # JSON or layout errors
        raise file_error(path, f"not a COCO instances file ({type(exc).__name__}: {exc})") from None
    for key in ("images", "annotations", "categories"):
        if key not in coco.dataset:
            raise file_error(path, f"not a COCO instances file (no '{key}' list)")
    return coco


def category_labels(
    coco: COCO, source: Path | None = None
) -> tuple[tuple[str, ...], dict[int, int]]:
    """Class names in category-id order, and category id -> label value 1..C. Each name
    becomes a line of classes.txt: one line, not empty, not twice."""
    where = source if source is not None else Path("categories")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in coco.cats):
        bad = next(i for i in coco.cats if isinstance(i, bool) or not isinstance(i, int))
        raise file_error(where, f"category id {bad!r:.40} is not an integer")
    ids = sorted(coco.cats)
    seen: dict[str, int] = {}
    for i in ids:
        name = coco.cats[i].get("name")
        if not isinstance(name, str) or not name.strip():
            raise file_error(
                where, f"category {i}: name must be a non-empty string, got {name!r:.40}"
            )
        if "\n" in name or "\r" in name or name != name.strip():
            raise file_error(
                where,
                f"category {i}: name {name!r:.60} spans lines or has spaces around it; "
                "classes.txt holds one name per line",
            )
        if name.casefold() in seen:
            raise file_error(
                where, f"categories {seen[name.casefold()]} and {i} are both named '{name}'"
            )
        seen[name.casefold()] = i
    return tuple(coco.cats[i]["name"] for i in ids), {cat: k + 1 for k, cat in enumerate(ids)}


def image_id_of(image: dict[str, Any]) -> str:
    """The toolkit's id of a COCO image: its file stem (COCO_train2014_000000000009)."""
    return Path(image["file_name"]).stem


def check_image(image: dict[str, Any], source: Path, folder: Path) -> None:
    """An image entry as prepare-coco reads it: a file name inside `folder`, and its size
    as positive integers (every mask is made at that size)."""
    check_file_name(image, source, folder)
    for key in ("height", "width"):
        if key not in image:
            raise file_error(source, f"image {image.get('id')}: no '{key}'")
        value = image[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise file_error(
                source,
                f"image {image.get('id')}: '{key}' must be a positive integer, got {value!r:.40}",
            )


def check_file_name(image: dict[str, Any], source: Path, folder: Path) -> None:
    """An image's `file_name` must name a file inside its split's folder: an absolute path
    or a `..` would link (and read) a file outside the COCO root, like an escaping id."""
    name = image.get("file_name")
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise file_error(
            source, f"image {image.get('id')}: file_name must be a file name, got {name!r:.80}"
        )
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise file_error(
            source,
            f"image {image.get('id')}: file_name {name!r:.120} points outside {folder}; "
            "file names must stay inside the image folder",
        )


def image_annotations(coco: COCO, image: dict[str, Any], source: Path) -> list[dict[str, Any]]:
    """The image's annotations, each checked for a known category."""
    annotations = coco.imgToAnns.get(image["id"], [])
    for ann in annotations:
        category = ann.get("category_id")
        if isinstance(category, bool) or not isinstance(category, int):
            raise file_error(
                source,
                f"annotation {ann.get('id')} (image {image.get('id')}): category_id must be an "
                f"integer, got {category!r:.40}",
            )
        if category not in coco.cats:
            raise file_error(
                source, f"annotation {ann.get('id')} has unknown category_id {category}"
            )
        check_segmentation(ann, image, source)
    return annotations


def check_segmentation(ann: dict[str, Any], image: dict[str, Any], source: Path) -> None:
    """Polygons of 3 or more points, or an RLE with its size and counts: what pycocotools
    can paint (it fails on the rest with a message of its own internals)."""
    where = f"annotation {ann.get('id')} (image {image.get('id')})"
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        if "size" not in segmentation or "counts" not in segmentation:
            raise file_error(source, f"{where}: an RLE segmentation needs 'size' and 'counts'")
        return
    if not isinstance(segmentation, list):
        raise file_error(
            source,
            f"{where}: segmentation must be polygons (a list) or an RLE (an object), got "
            f"{segmentation!r:.40}",
        )
    if not segmentation:
        raise file_error(source, f"{where}: empty segmentation (no polygon)")
    for k, polygon in enumerate(segmentation):
        if not isinstance(polygon, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in polygon
        ):
            raise file_error(source, f"{where}: polygon {k} is not a list of numbers")
        if len(polygon) < 6 or len(polygon) % 2:
            raise file_error(
                source,
                f"{where}: polygon {k} has {len(polygon)} coordinates; a polygon needs 3 or "
                "more x,y points (an even count of 6 or more)",
            )


def semantic_mask(
    coco: COCO,
    image: dict[str, Any],
    annotations: list[dict[str, Any]],
    label_of: dict[int, int],
    source: Path,
) -> np.ndarray:
    """uint8 (H, W) label map of one image; 0 = background."""
    from pycocotools import mask as mask_utils

    height, width = int(image["height"]), int(image["width"])
    rles = []
    for ann in annotations:
        try:
            rle = coco.annToRLE(ann)
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise file_error(
                source, f"annotation {ann.get('id')}: bad segmentation ({exc})"
            ) from None
        if list(rle["size"]) != [height, width]:
            raise file_error(
                source,
                f"annotation {ann.get('id')}: RLE size {rle['size']} differs from its image "
                f"{height}x{width}",
            )
        area = ann.get("area")
        rles.append((float(area) if area is not None else float(mask_utils.area(rle)), ann, rle))
    label = np.zeros((height, width), dtype=np.uint8)
    # Smaller instances first, each painting only pixels still background: the stable sort
    # keeps annotation order among equal areas, exactly as coco2voc does.
    with warnings.catch_warnings():
        # pycocotools 2.0 + numpy 2 warn about a copy keyword on every decode; harmless.
        warnings.simplefilter("ignore", DeprecationWarning)
        for _, ann, rle in sorted(rles, key=lambda item: item[0]):
            pixels = mask_utils.decode(rle).astype(bool)
            label[pixels & (label == 0)] = label_of[ann["category_id"]]
    return label


def image_class_names(
    annotations: list[dict[str, Any]], classes: tuple[str, ...], label_of: dict[int, int]
) -> list[str]:
    """Image-level labels: the classes of all its annotations, in class-list order."""
    present = sorted({label_of[ann["category_id"]] for ann in annotations})
    return [classes[value - 1] for value in present]

"""Class lists: VOC's 20 classes by default, or a dataset's own `classes.txt`."""

from __future__ import annotations

from pathlib import Path

from wsss.errors import file_error
from wsss.io import read_text_lines

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

CLASSES_FILE = "classes.txt"
BACKGROUND = "background"
# How other tools name label 0 (labelme writes `_background_`, detectron-style lists
# `__background__`) and the ignore label (labelme's `__ignore__`, -1): never classes.
BACKGROUND_NAMES = frozenset({BACKGROUND, "_background_", "__background__"})
IGNORE_NAMES = frozenset({"__ignore__"})


def read_class_list(path: str | Path) -> tuple[str, ...]:
    """One class name per line, foreground classes only, in label order 1..C.

    Background is label 0 and never a class of the list: a first line naming it (`background`,
    or labelme's `_background_`, `__background__`), after labelme's `__ignore__` line if any,
    is dropped; such a name anywhere else is an error saying how to fix the list."""
    path = Path(path)
    lines = [line.strip() for line in read_text_lines(path, "class list")]
    numbered = [(n, name) for n, name in enumerate(lines, 1) if name and name[0] != "#"]
    if numbered and numbered[0][1].lower() in IGNORE_NAMES:
        numbered = numbered[1:]
    if numbered and numbered[0][1].lower() in BACKGROUND_NAMES:
        numbered = numbered[1:]
    if not numbered:
        raise file_error(path, "class list is empty")
    seen: dict[str, int] = {}
    for number, name in numbered:
        if name.lower() in BACKGROUND_NAMES | IGNORE_NAMES:
            what = "the ignore label" if name.lower() in IGNORE_NAMES else "background (label 0)"
            raise file_error(
                path,
                f"line {number} names '{name}' as a class, but it is {what}; list it only "
                "first (labelme's order: __ignore__, then _background_) or delete the line",
            )
        if name.casefold() in seen:
            raise file_error(
                path, f"class list repeats '{name}' (lines {seen[name.casefold()]} and {number})"
            )
        seen[name.casefold()] = number
    return tuple(name for _, name in numbered)


def write_class_list(path: str | Path, classes: tuple[str, ...] | list[str]) -> Path:
    from wsss.io import atomic_write_bytes

    return atomic_write_bytes(path, ("\n".join(classes) + "\n").encode())


def dataset_classes(root: str | Path, class_list: str | Path | None = None) -> tuple[str, ...]:
    """The classes of a dataset: an explicit list, else `<root>/classes.txt`, else VOC's."""
    if class_list is not None:
        return read_class_list(class_list)
    local = Path(root) / CLASSES_FILE
    if local.is_file():
        return read_class_list(local)
    return VOC_CLASSES


def class_names_with_background(classes: tuple[str, ...]) -> tuple[str, ...]:
    return (BACKGROUND, *classes)

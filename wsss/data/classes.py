"""Class lists: VOC's 20 classes by default, or a dataset's own `classes.txt`."""

from __future__ import annotations

from pathlib import Path

from wsss.errors import file_error

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

CLASSES_FILE = "classes.txt"
BACKGROUND = "background"


def read_class_list(path: str | Path) -> tuple[str, ...]:
    """One class name per line, foreground classes only, in label order 1..C."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "class list not found")
    names = [line.strip() for line in path.read_text().splitlines()]
    names = [name for name in names if name and not name.startswith("#")]
    if names and names[0] == BACKGROUND:
        names = names[1:]
    if not names:
        raise file_error(path, "class list is empty")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise file_error(path, f"class list repeats {', '.join(duplicates)}")
    return tuple(names)


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

"""Image-level labels from one plain file instead of a VOC XML per image.

A dataset root may hold one of these (or a path is passed to `VocDataset.open(labels=...)`):

```
labels.csv    id,class1;class2       one image per line; header "id,..." optional;
                                     '#' starts a comment line; an empty second field = no class
labels.json   {"id": ["class1", "class2"], ...}
```
A class is its name from the class list, or its label value 1..C (the value it has in the
masks; 0 is the background and is refused). Ids are image file stems (`x` for
`JPEGImages/x.jpg`; a trailing `.jpg` is accepted). Every problem is one `WsssError` naming the
file and the line (CSV) or the entry (JSON).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from wsss.errors import WsssError, file_error
from wsss.io import atomic_write_bytes, read_text

LABEL_FILES = ("labels.csv", "labels.json")
CLASS_SEPARATOR = ";"
_HEADER_IDS = frozenset({"id", "image", "image_id"})


def find_labels_file(root: str | Path) -> Path | None:
    """The labels file at a dataset root, if any; two of them is ambiguous and refused."""
    found = [Path(root) / name for name in LABEL_FILES if (Path(root) / name).is_file()]
    if len(found) > 1:
        raise file_error(found[0], f"and {found[1].name} both present; keep one labels file")
    return found[0] if found else None


def image_stems(images_dir: str | Path) -> set[str]:
    """Ids of the `.jpg` files in a folder, in one directory scan (no stat per image)."""
    with os.scandir(images_dir) as entries:
        return {entry.name[:-4] for entry in entries if entry.name.endswith(".jpg")}


def read_labels_file(
    path: str | Path, classes: tuple[str, ...], images: set[str] | None = None
) -> dict[str, list[int]]:
    """Sorted 0-based class indices per id; `images` (ids on disk), when given, are checked."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "labels file not found")
    if path.suffix.lower() == ".json":
        entries = _json_entries(path)
    elif path.suffix.lower() == ".csv":
        entries = _csv_entries(path)
    else:
        raise file_error(path, "labels file must end in .csv or .json")
    labels: dict[str, list[int]] = {}
    first_seen: dict[str, str] = {}
    for where, image_id, tokens in entries:
        image_id = image_id.strip()
        if image_id.lower().endswith(".jpg"):
            image_id = image_id[:-4]
        if not image_id:
            raise file_error(path, f"{where}: empty image id")
        if image_id in labels:
            raise file_error(path, f"{where}: id '{image_id}' repeats {first_seen[image_id]}")
        if images is not None and image_id not in images:
            raise file_error(path, f"{where}: no image JPEGImages/{image_id}.jpg")
        labels[image_id] = sorted({_class_index(t, classes, path, where) for t in tokens})
        first_seen[image_id] = where
    if not labels:
        raise file_error(path, "labels file is empty (no image listed)")
    return labels


def write_labels_json(path: str | Path, labels: dict[str, list[str]]) -> Path:
    """`{id: [class names]}` with one image per line, so large files stay readable and diffable."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in labels.items()]
    return atomic_write_bytes(path, ("{\n" + ",\n".join(lines) + "\n}\n").encode())


def _class_index(token: object, classes: tuple[str, ...], path: Path, where: str) -> int:
    """0-based index of a class name, or of a label value 1..C given as a number."""
    if isinstance(token, str):
        name = token.strip()
        if name in classes:
            return classes.index(name)
        # ASCII digits only: `str.isdigit` is true of '²', which int() refuses.
        if not re.fullmatch(r"-?[0-9]+", name):
            raise file_error(path, f"{where}: unknown class {name!r} (not in the class list)")
        token = int(name)
    if isinstance(token, bool) or not isinstance(token, int):
        raise file_error(path, f"{where}: class {token!r} is neither a name nor a number")
    if not 1 <= token <= len(classes):
        raise file_error(
            path,
            f"{where}: unknown class id {token} (ids run 1..{len(classes)}; 0 is the background)",
        )
    return token - 1


def _csv_entries(path: Path) -> Iterator[tuple[str, str, list[str]]]:
    text = read_text(path, "labels file")  # BOMs of spreadsheet exports, UTF-16 included
    rows = csv.reader(io.StringIO(text))
    first = True
    try:
        start = 1  # the line a row starts on (a quoted field may run over several)
        for row in rows:
            where, start = f"line {start}", rows.line_num + 1
            if any("\n" in field or "\r" in field for field in row):
                raise file_error(
                    path,
                    f"{where}: a quoted field runs on to line {rows.line_num} (an unterminated "
                    "quote, or a line break inside quotes); each image stays on one line",
                )
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if "\t" in row[0] or CLASS_SEPARATOR in row[0]:
                delimiter = "a TAB" if "\t" in row[0] else f"'{CLASS_SEPARATOR}'"
                raise file_error(
                    path,
                    f"{where}: fields separated by {delimiter} ({row[0].strip()!r:.60}); "
                    f"write 'id,class1{CLASS_SEPARATOR}class2': a comma after the id, "
                    f"'{CLASS_SEPARATOR}' between classes",
                )
            if first and row[0].strip().lower() in _HEADER_IDS:
                first = False
                continue
            first = False
            if len(row) > 2:
                raise file_error(
                    path,
                    f"{where}: {len(row)} fields; expected 'id,class1{CLASS_SEPARATOR}class2' "
                    f"(separate classes with '{CLASS_SEPARATOR}')",
                )
            cell = row[1] if len(row) == 2 else ""
            tokens = [t for t in cell.split(CLASS_SEPARATOR) if t.strip()]
            yield where, row[0], tokens
    except csv.Error as exc:
        raise file_error(path, f"line {rows.line_num}: malformed CSV ({exc})") from None


def _json_entries(path: Path) -> Iterable[tuple[str, str, list[object]]]:
    def no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise WsssError(f"{path}: entry '{key}' appears twice")
            seen.add(key)
        return dict(pairs)

    try:
        data = json.loads(read_text(path, "labels file"), object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise file_error(path, f"line {exc.lineno}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise file_error(path, 'expected an object {"id": ["class", ...], ...}')
    entries = []
    for key, value in data.items():
        where = f"entry '{key}'"
        if not isinstance(value, list):
            raise file_error(path, f"{where}: expected a list of classes, got {value!r}")
        entries.append((where, key, value))
    return entries

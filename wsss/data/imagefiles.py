"""Images named on the command line (`wsss predict --images`): folders, globs and files.

A folder is searched recursively for image files (`IMAGE_SUFFIXES`, hidden files and folders
left out), a glob (`'photos/**/*.jpg'`) takes the image files it matches, and a file is taken
as given. Each image's id is its path relative to where it was found (the folder, the glob's
fixed leading folders, the file's folder) without its suffix, so a stage's outputs mirror the
input's layout: `photos/trip/a.jpg` found in `photos` writes `OUT/trip/a.png`.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from wsss.data.imagefile import decode_rgb
from wsss.errors import WsssError, file_error

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm",
                  ".pgm", ".pbm")  # fmt: skip
_GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class ImageFiles:
    """Image files by id (ids sorted); images are decoded upright (EXIF orientation applied:
    there is no mask to stay aligned with)."""

    paths: dict[str, Path]

    @classmethod
    def find(cls, specs: Sequence[str], exclude: Path | None = None) -> ImageFiles:
        """The images of every folder, glob or file in `specs`; files below `exclude` (the
        output folder, which may sit inside an input folder) are not images to segment."""
        found: dict[str, Path] = {}
        for spec in specs:
            for image_id, path in _expand(spec, exclude):
                other = found.setdefault(image_id, path)
                if other != path:
                    raise file_error(
                        path,
                        f"and {other} would both write the outputs of '{image_id}'; give them "
                        "in separate runs or rename one",
                    )
        return cls(dict(sorted(found.items())))

    @property
    def ids(self) -> list[str]:
        return list(self.paths)

    def image_path(self, image_id: str) -> Path:
        return self.paths[image_id]

    def load_image(self, image_id: str) -> Image.Image:
        return decode_rgb(self.paths[image_id], exif_orientation=True)


def _expand(spec: str, exclude: Path | None) -> Iterator[tuple[str, Path]]:
    """(id, path) of the images one --images entry names; an entry naming none is an error."""
    path = Path(spec)
    if path.is_dir():
        base = path
        images = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and _is_image(p, exclude)
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not images:
            raise file_error(
                path, f"no images found (searched recursively for {', '.join(IMAGE_SUFFIXES)})"
            )
    elif path.is_file():
        base, images = path.parent, [path]
    elif _GLOB_CHARACTERS & set(spec):  # a name that exists is a name, even with a '['
        fixed = list(_leading_fixed_parts(path))
        base = Path(*fixed) if fixed else Path(".")
        matches = [Path(p) for p in sorted(glob.glob(spec, recursive=True))]
        images = [p for p in matches if p.is_file() and _is_image(p, exclude)]
        if not images:
            raise WsssError(f"--images: no image file matches '{spec}'")
    else:
        raise file_error(path, "not found (--images takes folders, globs or image files)")
    for image in images:
        yield image.relative_to(base).with_suffix("").as_posix(), image


def _leading_fixed_parts(path: Path) -> Iterator[str]:
    """The folders of a glob before its first part with a wildcard."""
    for part in path.parts[:-1]:
        if _GLOB_CHARACTERS & set(part):
            return
        yield part


def _is_image(path: Path, exclude: Path | None) -> bool:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    return exclude is None or not path.resolve().is_relative_to(exclude.resolve())

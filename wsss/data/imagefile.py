"""The one place images are opened: a pixel limit, and each image mode converted on purpose.

Every decoder of the toolkit (training loaders, make-cam / predict / make-rw, eval, the
demo report, prepare-voc's size checks, label PNGs) opens files through `open_checked`, so
a decompression bomb, a truncated file or an unusual mode gives the same one-line error.

- Pixel limit: `MAX_IMAGE_PIXELS` (16384 x 16384 = 268 M pixels; the environment variable
  `WSSS_MAX_IMAGE_PIXELS` changes it). The header's size is checked before any pixel is
  decoded, so a file claiming 20000 x 20000 fails at once, naming its claimed size.
- Modes (`decode_rgb`): RGB as is; L, 1, P, CMYK, YCbCr, LAB, HSV through Pillow's
  conversion; RGBA, LA, PA and palette images with transparency composited on white (a
  transparent pixel has no colour of its own; white is what viewers show); 16-bit grey
  (I;16*) scaled to 8 bits (value / 257); 32-bit integer (I) and float (F) images are
  refused: their value range is not defined, any scaling would be a guess.
- EXIF orientation is ignored on purpose: masks and CAMs are aligned with the stored pixel
  grid (as in VOC and the reference implementations), and rotating only the image would
  misalign them. Images that have no masks (`wsss predict --images`) ask for it
  (`exif_orientation=True`): the network sees the photo upright, as a viewer shows it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from wsss.errors import WsssError, file_error

DEFAULT_MAX_PIXELS = 16384 * 16384


def max_image_pixels() -> int:
    text = os.environ.get("WSSS_MAX_IMAGE_PIXELS", "")
    try:
        value = int(text) if text else DEFAULT_MAX_PIXELS
    except ValueError:
        raise WsssError(f"WSSS_MAX_IMAGE_PIXELS must be a pixel count, got '{text}'") from None
    if value < 1:
        raise WsssError(f"WSSS_MAX_IMAGE_PIXELS must be positive, got {value}")
    return value


_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


@contextmanager
def open_checked(path: str | Path, what: str = "image") -> Iterator[Image.Image]:
    """Open an image lazily (header only) after checking it exists and is within the limit."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, f"{what} not found")
    limit = max_image_pixels()
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            # Our check below names the file and its size; Pillow's warning would only repeat
            # it, and its error (at twice the limit) is reported the same way.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > limit:
                raise _too_large(path, f"{width}x{height}", limit)
            yield image
    except Image.DecompressionBombError as exc:
        claimed = str(exc).split(" pixels)")[0].split("(")[-1] + " pixels"
        raise _too_large(path, claimed, limit) from None
    except _DECODE_ERRORS as exc:
        if what.startswith("label"):
            raise file_error(path, f"unreadable PNG ({exc.__class__.__name__}: {exc})") from None
        raise file_error(path, f"unreadable image ({exc})") from None


def _too_large(path: Path, claimed: str, limit: int) -> WsssError:
    return file_error(
        path,
        f"image claims {claimed}, more than the limit of {limit} pixels (a decompression "
        "bomb? set WSSS_MAX_IMAGE_PIXELS to allow it)",
    )


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    with open_checked(path) as image:
        return image.size


def decode_rgb(path: str | Path, exif_orientation: bool = False) -> Image.Image:
    """Fully decode an image as RGB (truncated files fail here, not in a worker); with
    `exif_orientation`, turned upright as its EXIF orientation tag says."""
    with open_checked(path) as image:
        image.load()
        if exif_orientation:
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image, Path(path))


def _to_rgb(image: Image.Image, path: Path) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in _SIXTEEN_BIT:
        grey = (np.asarray(image, dtype=np.uint32) // 257).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode in ("I", "F"):
        kind = "32-bit integer" if mode == "I" else "32-bit float"
        raise file_error(
            path, f"{kind} image (mode {mode}) has no defined colour range; save it as 8-bit RGB"
        )
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def read_label_array(path: str | Path) -> np.ndarray:
    """The indices of a label PNG: 8-bit palette (P) or greyscale (L) only, since another
    mode's values are colours or wider numbers, not class indices."""
    with open_checked(path, "label PNG") as image:
        if image.mode not in ("P", "L"):
            raise file_error(
                path,
                f"label PNG must be an 8-bit palette or greyscale image (P or L), got mode "
                f"{image.mode}",
            )
        return np.asarray(image)

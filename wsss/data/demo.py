"""The embedded demo dataset: synthetic objects whose class is told mostly by a small part.

Puzzle-CAM exists because a classifier trained from image-level labels looks only at the
most discriminative part of an object. The demo reproduces that on purpose: every object is
a large irregular body carrying only weak class evidence (a class-typical hue and stripe
density, with wide overlapping spreads, and look-alike distractors that belong to no
class), plus a small crisp symbol near its edge that names the class. The ground truth
covers body and part; `PartMasks/` marks the part so CAM concentration can be measured.
See docs/demo.md for the design and the numbers measured on it.
"""

from __future__ import annotations

import colorsys
import inspect
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.data.classes import CLASSES_FILE, write_class_list
from wsss.data.palette import IGNORE, save_label_png
from wsss.errors import WsssError, file_error
from wsss.io import atomic_write_bytes, ensure_dir, read_json, write_json
from wsss.ui import track

DEMO_CLASSES: tuple[str, ...] = ("blorp", "quiffle", "snark", "vorp", "zindle")
# Names of the classes a variant with more classes adds, in order.
EXTRA_CLASSES: tuple[str, ...] = (
    "flumph", "grommet", "hobnob", "jibber", "kerplunk", "mumble", "nurdle", "plinth",
    "quazzle", "rumpus", "skronk", "tibble", "wazzock", "yammer", "zorch",
)  # fmt: skip
MAX_CLASSES = len(DEMO_CLASSES) + len(EXTRA_CLASSES)

PART_DIR = "PartMasks"
JPEG_QUALITY = 90
MIN_SIZE = 32

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class _Style:
    """What makes a class: weak body statistics and one strong part symbol."""

    body_hue: float  # mean hue in [0, 1); bodies spread widely around it
    stripes: float  # mean number of stripes across the body
    part_shape: str
    part_colour: RGB
    part_accent: RGB


_STYLES: tuple[_Style, ...] = (
    _Style(0.50, 3.0, "bullseye", (0.92, 0.10, 0.12), (0.98, 0.98, 0.98)),
    _Style(0.10, 4.5, "checker", (0.06, 0.06, 0.06), (0.97, 0.97, 0.97)),
    _Style(0.70, 6.0, "triangle", (1.00, 0.88, 0.05), (0.05, 0.05, 0.05)),
    _Style(0.30, 7.5, "cross", (0.10, 0.25, 0.95), (0.98, 0.98, 0.98)),
    _Style(0.90, 9.0, "star", (0.10, 0.90, 0.20), (0.05, 0.05, 0.05)),
)

# Part colours (with the accent that contrasts with them) of the classes beyond the first five:
# the first five are the demo's own; a later class reuses a shape with another colour.
_PART_PALETTE: tuple[tuple[RGB, RGB], ...] = (
    ((0.92, 0.10, 0.12), (0.98, 0.98, 0.98)),
    ((0.06, 0.06, 0.06), (0.97, 0.97, 0.97)),
    ((1.00, 0.88, 0.05), (0.05, 0.05, 0.05)),
    ((0.10, 0.25, 0.95), (0.98, 0.98, 0.98)),
    ((0.10, 0.90, 0.20), (0.05, 0.05, 0.05)),
    ((0.95, 0.50, 0.05), (0.05, 0.05, 0.05)),
    ((0.60, 0.10, 0.85), (0.98, 0.98, 0.98)),
    ((0.05, 0.80, 0.90), (0.05, 0.05, 0.05)),
)
# Each further round of five classes shifts the body hues (and stripe counts) between the
# earlier ones, so more classes means closer body statistics, as with real fine-grained classes.
_ROUND_HUE_SHIFT = (0.0, 0.1, 0.05, 0.15)

# Part area / part radius^2 for each shape, so a part covers the sampled share of its body.
_SHAPE_AREA = {"bullseye": np.pi, "checker": 2.25, "triangle": 1.299, "cross": 2.31, "star": 1.382}

BODY_HUE_SPREAD = 0.15  # std of body hue: neighbouring classes (0.2 apart) overlap heavily
STRIPE_SPREAD = (0.55, 1.7)  # multiplicative spread of the stripe count
PART_SHARE = (0.03, 0.06)  # part area / body area
BODY_SHARE = {1: (0.20, 0.35), 2: (0.15, 0.30), 3: (0.13, 0.22)}  # body area / image area
MAX_TRIES = 30
MAX_OBJECTS = 8


@dataclass(frozen=True)
class DemoKnobs:
    """How a dataset variant differs from the demo; the defaults are the demo itself.

    docs/demo.md says what each knob changes. At the defaults the generator draws the same
    random numbers in the same order as before the knobs existed, so the bytes are the demo's.
    """

    body_evidence: float = 1.0  # 0: bodies say nothing of their class; >1: narrower spreads
    part_scale: float = 1.0  # multiplies the part's share of its body's area (3-6%)
    clutter: float = 1.0  # multiplies the small marks (2-5) and the background waves
    distractors: int = 2  # most body-like distractors per image (uniform 0..N)
    min_objects: int = 1
    max_objects: int = 3
    object_scale: float = 1.0  # multiplies each body's share of the image's area
    classes: int = 5
    shape_variety: float = 1.0  # multiplies the outline's wobble and the aspect-ratio range
    noise: float = 0.025  # std of the per-pixel colour noise (image values in [0, 1])

    def check(self) -> None:
        """One-line errors for values the generator cannot draw."""
        limits = {
            "body_evidence": (0.0, 10.0),
            "part_scale": (0.25, 4.0),
            "clutter": (0.0, 5.0),
            "distractors": (0, 10),
            "min_objects": (1, MAX_OBJECTS),
            "max_objects": (1, MAX_OBJECTS),
            "object_scale": (0.2, 2.0),
            "classes": (2, MAX_CLASSES),
            "shape_variety": (0.0, 2.5),
            "noise": (0.0, 0.3),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise WsssError(f"demo {name} must be in [{low}, {high}], got {value}")
        if self.min_objects > self.max_objects:
            raise WsssError(
                f"demo min_objects ({self.min_objects}) exceeds max_objects ({self.max_objects})"
            )


DEFAULT_KNOBS = DemoKnobs()


def class_names(count: int) -> tuple[str, ...]:
    return (DEMO_CLASSES + EXTRA_CLASSES)[:count]


def class_styles(count: int) -> tuple[_Style, ...]:
    """The demo's five styles, then rounds of five that reuse each shape in a new colour."""
    styles = list(_STYLES[:count])
    for k in range(len(_STYLES), count):
        base, round_ = _STYLES[k % len(_STYLES)], k // len(_STYLES)
        shift = _ROUND_HUE_SHIFT[round_]
        colour, accent = _PART_PALETTE[(k % len(_STYLES) + 5 * round_) % len(_PART_PALETTE)]
        hue = (base.body_hue + shift) % 1.0
        styles.append(_Style(hue, base.stripes + 7.5 * shift, base.part_shape, colour, accent))
    return tuple(styles)


@dataclass
class DemoSummary:
    root: Path
    classes: tuple[str, ...]
    train: int
    val: int
    size: int
    seed: int
    knobs: DemoKnobs = DEFAULT_KNOBS


@dataclass(frozen=True)
class DemoObject:
    class_index: int  # 0-based into the class list; the label value is class_index + 1
    bbox: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: 1-based, inclusive (VOC)
    truncated: bool


@dataclass
class DemoSample:
    image: np.ndarray  # H x W x 3 uint8
    label: np.ndarray  # H x W uint8: 0 background, 1..C classes, 255 object borders
    parts: np.ndarray  # H x W uint8: class value on the discriminative part, else 0
    objects: list[DemoObject]


def demo_id(index: int) -> str:
    return f"demo_{index + 1:06d}"


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """One stream per image, so an image never depends on which images came before it."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))


def generate_demo(
    out: str | Path,
    n_train: int = 300,
    n_val: int = 100,
    size: int = 128,
    seed: int = 0,
    progress: bool = True,
    *,
    body_evidence: float = DEFAULT_KNOBS.body_evidence,
    part_scale: float = DEFAULT_KNOBS.part_scale,
    clutter: float = DEFAULT_KNOBS.clutter,
    distractors: int = DEFAULT_KNOBS.distractors,
    min_objects: int = DEFAULT_KNOBS.min_objects,
    max_objects: int = DEFAULT_KNOBS.max_objects,
    object_scale: float = DEFAULT_KNOBS.object_scale,
    classes: int = DEFAULT_KNOBS.classes,
    shape_variety: float = DEFAULT_KNOBS.shape_variety,
    noise: float = DEFAULT_KNOBS.noise,
) -> DemoSummary:
    """Write the demo dataset in PASCAL VOC 2012 layout; the same seed gives the same bytes.

    The keyword arguments are the `DemoKnobs` of a dataset variant (docs/demo.md).
    """
    knobs = DemoKnobs(
        body_evidence=body_evidence, part_scale=part_scale, clutter=clutter,
        distractors=distractors, min_objects=min_objects, max_objects=max_objects,
        object_scale=object_scale, classes=classes, shape_variety=shape_variety, noise=noise,
    )  # fmt: skip
    knobs.check()
    names = class_names(knobs.classes)
    if n_train < 1 or n_val < 0:
        raise WsssError(
            f"demo needs at least 1 train image and 0 val images, got {n_train}/{n_val}"
        )
    if size < MIN_SIZE:
        raise WsssError(f"demo image size must be at least {MIN_SIZE} px, got {size}")
    root = ensure_dir(out)
    _check_demo_root(root)
    dirs = {
        name: ensure_dir(root / name)
        for name in ("JPEGImages", "Annotations", "SegmentationClass", PART_DIR)
    }
    total = n_train + n_val
    indices: Iterable[int] = range(total)
    if progress:
        indices = track(indices, total, "demo data")
    for index in indices:
        image_id = demo_id(index)
        sample = render_sample(seed, index, size, knobs=knobs)
        atomic_write_bytes(dirs["JPEGImages"] / f"{image_id}.jpg", _jpeg_bytes(sample.image))
        xml = _annotation_xml(image_id, size, sample.objects, names)
        atomic_write_bytes(dirs["Annotations"] / f"{image_id}.xml", xml)
        save_label_png(dirs["SegmentationClass"] / f"{image_id}.png", sample.label)
        save_label_png(dirs[PART_DIR] / f"{image_id}.png", sample.parts)
    # Lists last: a run killed half-way leaves no list naming missing files.
    write_class_list(root / CLASSES_FILE, names)
    ids = [demo_id(i) for i in range(total)]
    lists = {"train": ids[:n_train], "val": ids[n_train:], "trainval": ids}
    for name, members in lists.items():
        text = "".join(f"{image_id}\n" for image_id in members)
        atomic_write_bytes(root / "ImageSets" / "Segmentation" / f"{name}.txt", text.encode())
    return DemoSummary(root, names, n_train, n_val, size, seed, knobs)


# --- one image -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """A star-shaped irregular ellipse: an outline with three low harmonics, rotated."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    amps: np.ndarray
    phases: np.ndarray

    def _scale(self, theta: np.ndarray) -> np.ndarray:
        scale = np.ones_like(theta)
        for k, (amp, phase) in enumerate(zip(self.amps, self.phases, strict=True), start=2):
            scale += np.float32(amp) * np.cos(k * theta + np.float32(phase))
        return scale

    def alpha(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Coverage in [0, 1] with a one-pixel soft edge; computed only around the blob."""
        reach = max(self.rx, self.ry) * (1.0 + float(self.amps.sum())) + 2.0
        window = _window(xx.shape[0], self.cx, self.cy, reach)
        alpha = np.zeros_like(xx)
        alpha[window] = np.clip(self.field(xx[window], yy[window]) + 0.5, 0, 1)
        return alpha

    def field(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the outline in pixels, positive inside."""
        u, v = _rotate(xx - self.cx, yy - self.cy, -self.angle)
        eu, ev = u / self.rx, v / self.ry
        rho = np.hypot(eu, ev)
        return (self._scale(np.arctan2(ev, eu)) - rho) * np.float32(np.sqrt(self.rx * self.ry))

    def inner_point(self, theta: float, inset: float) -> tuple[float, float]:
        """The point `inset` pixels inside the outline along direction `theta`."""
        s = float(self._scale(np.array([theta]))[0])
        u, v = self.rx * s * np.cos(theta), self.ry * s * np.sin(theta)
        dist = float(np.hypot(u, v))
        shrink = max(dist - inset, 0.0) / dist
        x, y = _rotate(u * shrink, v * shrink, self.angle)
        return self.cx + float(x), self.cy + float(y)


@dataclass
class _Object:
    class_index: int
    blob: _Blob
    body: np.ndarray  # float alpha of the body
    part: np.ndarray  # bool mask of the part symbol
    part_rgb: np.ndarray  # H x W x 3 colours of the symbol (valid where `part`)

    @property
    def mask(self) -> np.ndarray:
        return (self.body > 0.5) | self.part


# What a demo dataset holds: anything else in a folder means it is some other dataset (whose
# classes.txt and split lists generate_demo would overwrite) or some other folder.
DEMO_ENTRIES = frozenset({"JPEGImages", "Annotations", "SegmentationClass", PART_DIR,
                          "ImageSets", CLASSES_FILE, "demo_complete.json",
                          "wsss_image_labels.json"})  # fmt: skip


def _check_demo_root(root: Path) -> None:
    """Refuse a non-empty folder that is not a demo dataset (one made by an interrupted or
    earlier run is written again): like every stage, demo-data writes only its own folders."""
    entries = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    if not entries:
        return
    foreign = [name for name in entries if name not in DEMO_ENTRIES]
    # A run killed while making its folders has no lists yet, and no part masks perhaps.
    if not foreign and ((root / PART_DIR).is_dir() or not {CLASSES_FILE, "ImageSets"} & {*entries}):
        return
    example = foreign[0] if foreign else entries[0]
    raise file_error(
        root,
        f"is not empty ({len(entries)} entries, e.g. {example}) and is not a demo dataset "
        f"(no {PART_DIR}/ folder): demo-data would overwrite its classes.txt and split "
        "lists; use an empty or new folder",
    )


def ensure_demo(root: str | Path, demo_args: dict) -> Path:
    """Generate the demo dataset unless a complete one with the same arguments is there."""
    done = Path(root) / "demo_complete.json"
    if not (done.is_file() and _with_defaults(read_json(done)) == _with_defaults(demo_args)):
        generate_demo(root, **demo_args)
        write_json(done, demo_args)
    return Path(root)


def _with_defaults(demo_args: object) -> object:
    """`generate_demo`'s arguments with its defaults filled in (two spellings, one dataset)."""
    if not isinstance(demo_args, dict):
        return demo_args
    parameters = inspect.signature(generate_demo).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    defaults.pop("progress", None)
    return {**defaults, **demo_args}


def render_sample(
    seed: int, index: int, size: int, draw_parts: bool = True, knobs: DemoKnobs = DEFAULT_KNOBS
) -> DemoSample:
    """Render image `index` of the dataset made with `seed` (and `knobs`).

    `draw_parts=False` leaves the symbols unpainted (same layout, same labels): the
    body-only ablation that measures how much class evidence the bodies alone carry.
    """
    rng = sample_rng(seed, index)
    styles = class_styles(knobs.classes)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = _background(rng, xx, yy, size, knobs.clutter)
    marks = rng.integers(round(2 * knobs.clutter), round(5 * knobs.clutter) + 1)
    for _ in range(int(marks)):  # small clutter marks, part-sized, no class
        blob = _random_blob(rng, size, float(rng.uniform(0.003, 0.015)) * size * size, 0.08)
        _paint(image, blob.alpha(xx, yy), _random_colour(rng, 0.2, 0.9))
    for _ in range(int(rng.integers(0, knobs.distractors + 1))):  # body-like, without a part
        area = float(rng.uniform(0.10, 0.28)) * size * size
        blob = _random_blob(rng, size, area, *_body_outline(knobs))
        alpha = blob.alpha(xx, yy)
        colour, stripes = _distractor_look(rng)
        _paint_body(image, rng, xx, yy, blob, alpha, colour, stripes)

    objects = _place_objects(rng, xx, yy, size, styles, knobs)
    owner = np.full((size, size), -1, dtype=np.int16)
    for i, obj in enumerate(objects):
        colour, stripes = body_look(rng, styles[obj.class_index], knobs.body_evidence)
        _paint_body(image, rng, xx, yy, obj.blob, obj.body, colour, stripes)
        if draw_parts:
            image[obj.part] = obj.part_rgb[obj.part]
        owner[obj.mask] = i

    noisy = image + rng.normal(0.0, knobs.noise, image.shape).astype(np.float32)
    pixels = np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)
    return _labels(pixels, owner, objects)


def body_look(rng: np.random.Generator, style: _Style, evidence: float) -> tuple[RGB, float]:
    """An object's body colour and stripe count; `evidence` sets how much they tell its class.

    Below 1 a body carries its class's statistics with probability `evidence` and is
    otherwise drawn exactly like a distractor (0: no body says anything); above 1 the hue
    and stripe spreads shrink by that factor.
    """
    if evidence < 1.0 and rng.uniform() >= evidence:
        return _distractor_look(rng)
    narrow = max(evidence, 1.0)
    hue = (style.body_hue + rng.normal(0.0, BODY_HUE_SPREAD) / narrow) % 1.0
    colour = _hsv(hue, rng.uniform(0.35, 0.75), rng.uniform(0.45, 0.85))
    spread = rng.uniform(*STRIPE_SPREAD)
    if narrow > 1.0:
        spread = 1.0 + (spread - 1.0) / narrow
    return colour, style.stripes * spread


def _distractor_look(rng: np.random.Generator) -> tuple[RGB, float]:
    """Any hue and any stripe count a class body can have: a look-alike of no class."""
    colour = _hsv(rng.uniform(), rng.uniform(0.35, 0.75), rng.uniform(0.45, 0.85))
    return colour, float(rng.uniform(1.7, 15.0))


def _body_outline(knobs: DemoKnobs) -> tuple[float, float]:
    """(wobble, largest aspect ratio) of body-like blobs."""
    return 0.12 * knobs.shape_variety, 1.0 + 0.8 * knobs.shape_variety


def _labels(pixels: np.ndarray, owner: np.ndarray, objects: list[_Object]) -> DemoSample:
    """Ground truth from the top-most object per pixel, with 255 on every instance border."""
    values = np.array([0] + [obj.class_index + 1 for obj in objects], dtype=np.uint8)
    label = values[owner + 1]
    border = np.zeros(owner.shape, dtype=bool)
    for axis in (0, 1):
        change = np.diff(owner, axis=axis) != 0
        lead = [slice(None), slice(None)]
        lead[axis] = slice(1, None)
        trail = [slice(None), slice(None)]
        trail[axis] = slice(None, -1)
        border[tuple(lead)] |= change
        border[tuple(trail)] |= change
    label[border] = IGNORE
    parts = np.zeros(owner.shape, dtype=np.uint8)
    found = []
    size = owner.shape[0]
    for i, obj in enumerate(objects):
        visible = owner == i
        parts[obj.part & visible] = obj.class_index + 1
        rows, cols = np.nonzero(visible)
        bbox = (int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1)
        truncated = min(bbox[:2]) == 1 or max(bbox[2:]) == size
        found.append(DemoObject(obj.class_index, bbox, truncated))
    return DemoSample(pixels, label, parts, found)


def _place_objects(
    rng: np.random.Generator,
    xx: np.ndarray,
    yy: np.ndarray,
    size: int,
    styles: tuple[_Style, ...],
    knobs: DemoKnobs,
) -> list[_Object]:
    """1-3 objects (by default), each mostly visible, none hiding another's part, parts inside
    the image. Every count is twice as likely as the largest (the demo's 0.4 / 0.4 / 0.2)."""
    counts = np.arange(knobs.min_objects, knobs.max_objects + 1)
    weights = np.full(len(counts), 2.0)
    weights[-1] = 1.0
    count = int(rng.choice(counts, p=weights / weights.sum()))
    placed: list[_Object] = []
    owner = np.full((size, size), -1, dtype=np.int16)
    for _ in range(count):
        class_index = int(rng.integers(len(styles)))
        share = float(rng.uniform(*_body_share(count))) * knobs.object_scale
        for attempt in range(MAX_TRIES):
            # The first object is never dropped: its last try takes whatever it gets.
            last_chance = not placed and attempt == MAX_TRIES - 1
            obj = _make_object(
                rng, xx, yy, size, styles[class_index], class_index, share * size * size, knobs,
                last_chance,
            )  # fmt: skip
            if obj is not None and (last_chance or _fits(obj, placed, owner)):
                owner[obj.mask] = len(placed)
                placed.append(obj)
                break
    return placed


def _body_share(count: int) -> tuple[float, float]:
    """Range of a body's share of the image: beyond three objects, three objects' coverage."""
    if count in BODY_SHARE:
        return BODY_SHARE[count]
    low, high = BODY_SHARE[3]
    return low * 3 / count, high * 3 / count


def _fits(new: _Object, placed: list[_Object], owner: np.ndarray) -> bool:
    """Overlap stays slight: each earlier object keeps 80% of its area and all of its part."""
    mask = new.mask
    for i, obj in enumerate(placed):
        visible = owner == i
        if np.any(mask & obj.part) or np.sum(mask & visible) > 0.2 * np.sum(obj.mask):
            return False
    return True


def _make_object(
    rng: np.random.Generator,
    xx: np.ndarray,
    yy: np.ndarray,
    size: int,
    style: _Style,
    class_index: int,
    area: float,
    knobs: DemoKnobs,
    anywhere: bool = False,
) -> _Object | None:
    """A body with its part near the edge, or None when the part would leave the image."""
    blob = _random_blob(rng, size, area, *_body_outline(knobs))
    part_share = rng.uniform(*PART_SHARE) * knobs.part_scale
    part_radius = np.sqrt(area * part_share / _SHAPE_AREA[style.part_shape])
    start = rng.uniform(0, 2 * np.pi)
    for theta in start + np.linspace(0, 2 * np.pi, 12, endpoint=False):
        px, py = blob.inner_point(theta, 1.3 * part_radius + 1.0)
        margin = 1.1 * part_radius
        if anywhere or (margin <= px <= size - margin and margin <= py <= size - margin):
            window = _window(size, px, py, 1.1 * part_radius + 1.0)
            part = np.zeros((size, size), dtype=bool)
            rgb = np.zeros((size, size, 3), dtype=np.float32)
            part[window], rgb[window] = _symbol(
                style, xx[window] - px, yy[window] - py, part_radius, rng.uniform(0, 2 * np.pi)
            )
            return _Object(class_index, blob, blob.alpha(xx, yy), part, rgb)
    return None


def _symbol(
    style: _Style, dx: np.ndarray, dy: np.ndarray, radius: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """The class's part: a crisp two-colour symbol of a class-specific shape."""
    u, v = _rotate(dx, dy, -angle)
    u, v = u / radius, v / radius
    rho = np.hypot(u, v)
    shape = style.part_shape
    if shape == "bullseye":
        mask, accent = rho <= 1.0, (rho > 0.33) & (rho <= 0.66)
    elif shape == "checker":
        mask = (np.abs(u) <= 0.75) & (np.abs(v) <= 0.75)
        accent = (u > 0) ^ (v > 0)
    elif shape == "triangle":
        normals = np.deg2rad([270.0, 30.0, 150.0])
        reach = np.stack([u * np.cos(a) + v * np.sin(a) for a in normals])
        mask, accent = np.all(reach <= 0.5, axis=0), rho <= 0.22
    elif shape == "cross":
        mask = ((np.abs(u) <= 0.35) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.35) & (np.abs(u) <= 1))
        accent = (np.abs(u) <= 0.35) & (np.abs(v) <= 0.35)
    else:  # star
        mask, accent = rho <= 0.62 + 0.38 * np.cos(5 * np.arctan2(v, u)), rho <= 0.22
    rgb = np.where(accent[..., None], style.part_accent, style.part_colour).astype(np.float32)
    return mask, rgb


def _random_blob(
    rng: np.random.Generator, size: int, area: float, wobble: float, max_aspect: float = 1.8
) -> _Blob:
    aspect = rng.uniform(1.0, max_aspect)
    rx = np.sqrt(area / np.pi * aspect)
    ry = np.sqrt(area / (np.pi * aspect))
    reach = 0.6 * rx
    cx, cy = rng.uniform(reach, size - reach, 2)
    amps = rng.uniform(0.0, wobble, 3)
    return _Blob(cx, cy, rx, ry, rng.uniform(0, np.pi), amps, rng.uniform(0, 2 * np.pi, 3))


def _background(
    rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, size: int, clutter: float
) -> np.ndarray:
    """Clutter: a two-colour gradient, a few random low-frequency waves (`clutter` x strong)."""
    start, end = _random_colour(rng, 0.1, 0.5), _random_colour(rng, 0.1, 0.5)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle)) / size + 0.5
    ramp = np.clip(ramp, 0, 1)[..., None]
    image = (1 - ramp) * np.asarray(start, np.float32) + ramp * np.asarray(end, np.float32)
    shade = np.ones_like(xx)
    for _ in range(3):
        direction = rng.uniform(0, 2 * np.pi)
        cycles = rng.uniform(1.0, 8.0) / size
        along = xx * np.cos(direction) + yy * np.sin(direction)
        shade += (
            clutter
            * rng.uniform(0.03, 0.08)
            * np.sin(2 * np.pi * cycles * along + rng.uniform(0, 6.3))
        )
    return (image * shade[..., None]).astype(np.float32)


def _paint_body(
    image: np.ndarray,
    rng: np.random.Generator,
    xx: np.ndarray,
    yy: np.ndarray,
    blob: _Blob,
    alpha: np.ndarray,
    colour: RGB,
    stripes: float,
) -> None:
    """A shaded, striped body: stripe density is one of the weak class cues."""
    radius = np.sqrt(blob.rx * blob.ry)
    direction = rng.uniform(0, np.pi)
    along = (xx - blob.cx) * np.cos(direction) + (yy - blob.cy) * np.sin(direction)
    wave = np.sin(2 * np.pi * stripes * along / (2 * radius) + rng.uniform(0, 2 * np.pi))
    light = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - blob.cx) * np.cos(light) + (yy - blob.cy) * np.sin(light)) / radius
    gain = 1.0 + rng.uniform(0.12, 0.25) * wave + 0.12 * np.clip(ramp, -1, 1)
    _paint(image, alpha, np.asarray(colour, np.float32) * gain[..., None])


def _paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray | RGB) -> None:
    a = alpha[..., None]
    image *= 1 - a
    image += a * np.asarray(colour, np.float32)


def _random_colour(rng: np.random.Generator, sat_low: float, sat_high: float) -> RGB:
    return _hsv(rng.uniform(), rng.uniform(sat_low, sat_high), rng.uniform(0.3, 0.95))


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    return colorsys.hsv_to_rgb(float(hue), float(saturation), float(value))


def _window(size: int, cx: float, cy: float, reach: float) -> tuple[slice, slice]:
    """The (rows, cols) slices of the square of half-width `reach` around a point."""
    lo_x, hi_x = max(int(cx - reach), 0), min(int(np.ceil(cx + reach)) + 1, size)
    lo_y, hi_y = max(int(cy - reach), 0), min(int(np.ceil(cy + reach)) + 1, size)
    return slice(lo_y, max(hi_y, lo_y)), slice(lo_x, max(hi_x, lo_x))


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return x * c - y * s, x * s + y * c


# --- files ---------------------------------------------------------------------------


def _jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _annotation_xml(
    image_id: str, size: int, objects: list[DemoObject], classes: tuple[str, ...]
) -> bytes:
    """A VOC-style annotation: the image-level labels are its object names."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "demo"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "wsss demo"
    dims = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(dims, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = classes[obj.class_index]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = "0"
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.bbox, strict=True):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"

"""docs/demo_knobs.png: one demo image per extreme of each demo-data knob.

Each row is one knob: its low extreme, the demo default and its high extreme, each the
same image index and seed (so the layout stays as close as the knob allows), with the
ground truth under the image. A 256-colour palette keeps the file small.

    python benchmarks/demo_knobs_figure.py --out docs/demo_knobs.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wsss.data.demo import DemoKnobs, render_sample
from wsss.data.palette import colorize

# knob -> (low, high) extremes shown beside the default
EXTREMES: dict[str, tuple[float | int, float | int]] = {
    "body_evidence": (0.0, 4.0),
    "part_scale": (0.4, 3.0),
    "clutter": (0.0, 3.0),
    "distractors": (0, 6),
    "max_objects": (1, 6),
    "object_scale": (0.5, 1.6),
    "classes": (2, 20),
    "shape_variety": (0.0, 2.5),
    "noise": (0.0, 0.12),
}
TILE = 80
LABEL_W = 110


def tile(knobs: DemoKnobs, index: int, seed: int) -> np.ndarray:
    sample = render_sample(seed, index, TILE, knobs=knobs)
    label = colorize(sample.label)
    return np.concatenate([sample.image, label], axis=0)


def figure(seed: int = 3, index: int = 4) -> Image.Image:
    rows = []
    for name, (low, high) in EXTREMES.items():
        default = getattr(DemoKnobs(), name)
        cells = []
        for value in (low, default, high):
            # many objects: at least 3 of them, so the high extreme shows a crowd
            extra = {"min_objects": 3} if name == "max_objects" and value == high else {}
            knobs = DemoKnobs(**{name: value, **extra})
            cells.append(tile(knobs, index, seed))
            cells.append(np.full((2 * TILE, 4, 3), 255, np.uint8))
        rows.append(np.concatenate(cells, axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows, axis=0)
    canvas = Image.new("RGB", (LABEL_W + grid.shape[1], grid.shape[0] + 16), "white")
    canvas.paste(Image.fromarray(grid), (LABEL_W, 16))
    draw = ImageDraw.Draw(canvas)
    for col, title in enumerate(("low", "default", "high")):
        draw.text((LABEL_W + col * (TILE + 4) + 4, 2), title, fill="black")
    for row, (name, (low, high)) in enumerate(EXTREMES.items()):
        y = 16 + row * (2 * TILE + 4) + TILE - 12
        default = getattr(DemoKnobs(), name)
        draw.text((4, y), name, fill="black")
        draw.text((4, y + 12), f"{low} / {default} / {high}", fill="black")
    return canvas.quantize(256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/demo_knobs.png"))
    args = parser.parse_args()
    figure().save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()

"""Peak memory of `wsss prepare-coco`: generate a COCO-format set, convert it, report RSS.

    python benchmarks/coco_memory.py generate DIR --images 2000 [--size 64x48]
    python benchmarks/coco_memory.py convert DIR            # a fresh process: its own peak
    python benchmarks/coco_memory.py load-only DIR --images 82783 --annotations 604907

`generate` writes train2014/ + val2014/ (3/4 and 1/4 of the images, 5 % without objects),
small JPEGs and 0-6 instances each (polygons; 10 % compressed RLE; 5 % crowd regions in
uncompressed RLE) over COCO's 80 category ids. `load-only` writes an annotation file the size
of train2014's and measures what pycocotools needs to hold it, the part that scales with COCO.
Results: docs/coco.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# COCO's 80 category ids: 1..90 without the ten unused ones.
COCO_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _annotations(rng, image_id: int, width: int, height: int, first_id: int) -> list[dict]:
    from pycocotools import mask as mask_utils

    anns = []
    for k in range(int(rng.integers(1, 7))):
        x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
        x1, y1 = int(rng.integers(x0 + 4, width)), int(rng.integers(y0 + 4, height))
        kind = rng.random()
        crowd = 0
        if kind < 0.10:  # compressed RLE
            mask = np.zeros((height, width), dtype=np.uint8, order="F")
            mask[y0:y1, x0:x1] = 1
            rle = mask_utils.encode(mask)
            segmentation = {"size": [height, width], "counts": rle["counts"].decode()}
        elif kind < 0.15:  # crowd, uncompressed RLE (one rectangle: runs per column)
            crowd = 1
            counts, last = [], 0
            for x in range(x0, x1):
                start = x * height + y0
                counts += [start - last, y1 - y0]
                last = start + y1 - y0
            counts.append(height * width - last)
            segmentation = {"size": [height, width], "counts": counts}
        else:  # a polygon: a triangle inside the box
            segmentation = [[x0, y0, x1, (y0 + y1) / 2, x0, y1]]
        anns.append({
            "id": first_id + k, "image_id": image_id, "category_id": int(rng.choice(COCO_IDS)),
            "segmentation": segmentation, "area": float((x1 - x0) * (y1 - y0)),
            "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": crowd,
        })  # fmt: skip
    return anns


def generate(root: Path, images: int, width: int = 64, height: int = 48, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    n_train = images * 3 // 4
    ann_id = 1
    for folder, ids in (("train2014", range(n_train)), ("val2014", range(n_train, images))):
        (root / folder).mkdir(exist_ok=True)
        records, anns = [], []
        for image_id in ids:
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / name, quality=75)
            records.append({"id": image_id, "file_name": name, "width": width, "height": height})
            if rng.random() >= 0.05:
                new = _annotations(rng, image_id, width, height, ann_id)
                anns += new
                ann_id += len(new)
        categories = [{"id": i, "name": f"class{i}", "supercategory": "x"} for i in COCO_IDS]
        data = {"images": records, "annotations": anns, "categories": categories}
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(data))


def convert(root: Path, out: Path | None) -> dict:
    os.environ["WSSS_QUIET"] = "1"
    from wsss.io import environment_versions
    from wsss.stages.prepare_coco import PrepareCocoConfig, run

    environment_versions()  # the manifest imports torch + torchvision: counted apart
    before = peak_rss_mib()
    start = time.perf_counter()
    result = run(PrepareCocoConfig(coco=root, out=out))
    return {
        "images": result.files,
        "written": result.written,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mib_after_imports": round(before, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def load_only(images: int, annotations: int, points: int = 24, seed: int = 0) -> dict:
    """pycocotools' hold on a train2014-sized file: polygons of `points` vertices."""
    import subprocess

    rng = np.random.default_rng(seed)
    per_image = np.bincount(rng.integers(0, images, annotations), minlength=images)
    records, anns = [], []
    for image_id in range(images):
        records.append({"id": image_id, "file_name": f"COCO_train2014_{image_id:012d}.jpg",
                        "width": 640, "height": 480})  # fmt: skip
        for _ in range(per_image[image_id]):
            polygon = np.round(rng.uniform(0, 480, 2 * points), 2).tolist()
            anns.append({"id": len(anns) + 1, "image_id": image_id, "area": 1000.0,
                         "category_id": int(rng.choice(COCO_IDS)), "segmentation": [polygon],
                         "bbox": [0.0, 0.0, 10.0, 10.0], "iscrowd": 0})  # fmt: skip
    categories = [{"id": i, "name": f"class{i}", "supercategory": "x"} for i in COCO_IDS]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances_train2014.json"
        path.write_text(
            json.dumps({"images": records, "annotations": anns, "categories": categories})
        )
        size_mib = path.stat().st_size / 2**20
        del records, anns
        # The generator's own objects stay counted in the peak, so measure in a child process.
        code = (
            "import resource, sys, time; from pathlib import Path\n"
            "from wsss.data.coco import category_labels, image_annotations, load_coco\n"
            "t = time.perf_counter(); p = Path(sys.argv[1]); coco = load_coco(p)\n"
            "category_labels(coco)\n"
            "n = sum(1 for i in coco.imgs.values() if image_annotations(coco, i, p))\n"
            "print(n, round(time.perf_counter() - t, 1),"
            " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
        )
        output = subprocess.run(
            [sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True
        ).stdout.split()
    return {
        "images": images,
        "annotations": annotations,
        "json_mib": round(size_mib, 1),
        "with_objects": int(output[0]),
        "load_seconds": float(output[1]),
        "peak_rss_mib": round(float(output[2]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("generate", "convert", "load-only"))
    parser.add_argument("root", type=Path, nargs="?")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--annotations", type=int, default=604907)
    parser.add_argument("--size", type=str, default="64x48", help="WxH of generated images")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.mode == "generate":
        width, height = (int(v) for v in args.size.split("x"))
        generate(args.root, args.images, width, height)
        print(f"wrote {args.images} images to {args.root}")
    elif args.mode == "convert":
        print(json.dumps(convert(args.root, args.out)))
    else:
        print(json.dumps(load_only(args.images, args.annotations)))


if __name__ == "__main__":
    main()

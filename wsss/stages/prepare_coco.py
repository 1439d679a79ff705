"""`wsss prepare-coco`: COCO 2014 (train2014, val2014, instances JSON) -> the toolkit's layout.

```
OUT/JPEGImages/<id>.jpg               relative links into ROOT/train2014 and ROOT/val2014
OUT/SegmentationClass/<id>.png        palette label maps, 0 = background, 1..80; manifest.json
OUT/ImageSets/Segmentation/train.txt  train2014 images with at least one object (val.txt alike)
OUT/labels.json                       image-level labels {id: [class names]}
OUT/classes.txt                       the 80 class names in category-id order
```
One image at a time: only the annotation JSON (pycocotools) and one image's masks are held in
memory, one split after the other. Finished masks are skipped on a re-run; under torchrun each
process converts every WORLD_SIZE-th image, and rank 0 writes the lists, labels and classes.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path

from wsss.configs.datasets import PrepareCocoConfig
from wsss.data.classes import write_class_list
from wsss.data.coco import (
    CONVENTION,
    SPLIT_FOLDERS,
    annotation_file,
    category_labels,
    check_image,
    image_annotations,
    image_class_names,
    image_id_of,
    load_coco,
    semantic_mask,
)
from wsss.data.imagefile import image_size
from wsss.data.labels import LABEL_FILES, write_labels_json
from wsss.data.palette import save_label_png
from wsss.data.voc import IMAGES, LISTS, MASKS
from wsss.errors import file_error
from wsss.io import atomic_symlink, atomic_write_bytes, ensure_dir
from wsss.resume import (
    clean_stale_temporaries,
    finish_outputs,
    output_path,
    pending_ids,
    plan_outputs,
    shard,
    shard_info,
)
from wsss.ui import make_progress

STAGE = "prepare-coco"
LABELS_FILE = "labels.json"
SIGNATURE = ("convention", "classes")


@dataclass
class PrepareCocoResult:
    out: Path
    counts: dict[str, int] = field(default_factory=dict)
    written: int = 0
    skipped: int = 0
    files: int = 0
    complete: bool = False
    manifest: Path | None = None

    def summary_rows(self) -> list[tuple[str, object]]:
        rows: list[tuple[str, object]] = [(k, v) for k, v in self.counts.items()]
        rows += [
            ("masks written", self.written),
            ("masks done before", self.skipped),
            ("masks on disk", self.files),
            ("complete", self.complete),
            ("output", self.out),
        ]
        return rows


def run(config: PrepareCocoConfig) -> PrepareCocoResult:
    root = Path(config.coco)
    out = Path(config.out) if config.out is not None else root
    _check_inputs(root, out, config.splits)
    result = PrepareCocoResult(out=out)
    rank0 = shard_info().rank == 0
    classes: tuple[str, ...] | None = None
    labels: dict[str, list[str]] = {}
    all_ids: list[tuple[str, str]] = []  # (id, split) of the splits done
    plan = None
    for split in config.splits:
        source = annotation_file(root, split)
        coco = load_coco(source)
        split_classes, label_of = category_labels(coco, source)
        if classes is not None and split_classes != classes:
            raise file_error(source, "categories differ from the other split's")
        classes = split_classes
        images = _images_with_objects(
            coco, source, root / SPLIT_FOLDERS[split], classes, label_of, labels
        )
        ids = sorted(images)
        _check_unique(ids, images, all_ids, source)
        result.counts[f"{split} images"] = len(ids)
        result.counts[f"{split} images without objects (left out)"] = len(coco.imgs) - len(ids)
        params = {"coco": str(root), "splits": list(config.splits), "convention": CONVENTION,
                  "classes": list(classes)}  # fmt: skip
        plan = plan_outputs(out / MASKS, ids, ".png", STAGE, params, SIGNATURE)
        _link_images(root / SPLIT_FOLDERS[split], out / IMAGES, images, shard(ids))
        with make_progress() as progress:
            task = progress.add_task(
                f"{STAGE} {split}", total=len(plan.todo), status=f"{plan.skipped} done before"
            )
            for image_id in plan.todo:
                image = images[image_id]
                _check_image_file(root / SPLIT_FOLDERS[split], image, source)
                annotations = image_annotations(coco, image, source)
                mask = semantic_mask(coco, image, annotations, label_of, source)
                save_label_png(output_path(plan.out, image_id, ".png"), mask)
                progress.advance(task)
        result.written += len(plan.todo)
        result.skipped += plan.skipped
        if rank0:
            list_text = "".join(f"{i}\n" for i in ids)
            atomic_write_bytes(out / LISTS / f"{split}.txt", list_text.encode())
        all_ids += [(image_id, split) for image_id in ids]
        del coco, images
        gc.collect()  # the annotation JSON's objects go before the next split's are loaded
    assert classes is not None and plan is not None
    if rank0:
        write_class_list(out / "classes.txt", classes)
        write_labels_json(out / LABELS_FILE, labels)
    _wait_for_other_ranks()
    every_id = [image_id for image_id, _ in all_ids]
    result.files = finish_outputs(plan, every_id, ".png", STAGE)
    result.complete = result.files == len(every_id)
    result.manifest = plan.out / "manifest.json"
    return result


def _wait_for_other_ranks() -> None:
    """Under torchrun, wait for every shard, so that rank 0's manifest can say `complete`.

    Processes started by hand with only RANK / WORLD_SIZE (no MASTER_ADDR) shard without
    coordination; a re-run, which skips everything, then completes the manifest.
    """
    if shard_info().world_size == 1 or "MASTER_ADDR" not in os.environ:
        return
    import torch

    from wsss.engine import distributed

    created = distributed.init_distributed(torch.device("cpu"))
    try:
        distributed.barrier()
    finally:
        if created:
            distributed.cleanup()


def _check_inputs(root: Path, out: Path, splits: tuple[str, ...]) -> None:
    """Every input, before anything is written."""
    if not root.is_dir():
        raise file_error(root, "COCO root not found")
    for split in splits:
        if split not in SPLIT_FOLDERS:
            raise file_error(root, f"unknown split '{split}' (known: {', '.join(SPLIT_FOLDERS)})")
        if not annotation_file(root, split).is_file():
            raise file_error(annotation_file(root, split), "annotation file not found")
        if not (root / SPLIT_FOLDERS[split]).is_dir():
            raise file_error(root / SPLIT_FOLDERS[split], "image folder not found")
    for name in LABEL_FILES:  # a root holds one labels file, and ours is labels.json
        if name != LABELS_FILE and (out / name).is_file():
            raise file_error(out / name, f"would conflict with the {LABELS_FILE} written here")


def _check_image_file(folder: Path, image: dict, source: Path) -> None:
    """The mask is made at the size the annotation file states: the image must be that size
    (a resized or swapped image would get a mask that fits nothing)."""
    path = folder / image["file_name"]
    width, height = image_size(path)
    if (width, height) != (image["width"], image["height"]):
        raise file_error(
            source,
            f"image {image['id']}: the annotation file says {image['width']}x{image['height']}, "
            f"{path} is {width}x{height}",
        )


def _check_unique(
    ids: list[str], images: dict[str, dict], done: list[tuple[str, str]], source: Path
) -> None:
    """An id (a file stem) of two splits would give both one mask, one link and one label
    entry: the later split's images would silently stand for the earlier's."""
    earlier = dict(done)
    for image_id in ids:
        if image_id in earlier:
            raise file_error(
                source,
                f"image {images[image_id]['id']}: file name '{image_id}' is also an image of "
                f"the {earlier[image_id]} split; ids (file names without .jpg) must be unique "
                "across splits (rename the files, e.g. with COCO's split prefix)",
            )


def _images_with_objects(
    coco,
    source: Path,
    folder: Path,
    classes: tuple[str, ...],
    label_of: dict[int, int],
    labels: dict,
) -> dict[str, dict]:
    """The split's images with at least one annotation, by id; their labels go to `labels`."""
    images = {}
    for image in coco.imgs.values():
        check_image(image, source, folder)
        annotations = image_annotations(coco, image, source)
        if annotations:
            image_id = image_id_of(image)
            if image_id in images:
                raise file_error(
                    source,
                    f"images {images[image_id]['id']} and {image['id']} have the same file "
                    f"name '{image_id}'; ids (file names without .jpg) must be unique",
                )
            images[image_id] = image
            labels[image_id_of(image)] = image_class_names(annotations, classes, label_of)
    return images


def _link_images(
    source_dir: Path, links_dir: Path, images: dict[str, dict], ids: list[str]
) -> None:
    """Relative links `JPEGImages/<id>.jpg` -> the COCO image; working links are kept."""
    links_dir = ensure_dir(links_dir)
    if shard_info().world_size == 1:
        clean_stale_temporaries(links_dir)
    relative = Path(os.path.relpath(source_dir.resolve(), links_dir.resolve()))
    for image_id in pending_ids(ids, links_dir, ".jpg"):  # a dangling link counts as pending
        image = images[image_id]
        if not (source_dir / image["file_name"]).is_file():
            raise file_error(
                source_dir / image["file_name"], f"image not found (COCO image id {image['id']})"
            )
        atomic_symlink(relative / image["file_name"], links_dir / f"{image_id}.jpg")

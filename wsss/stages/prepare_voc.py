"""`wsss prepare-voc`: check a VOC 2012 tree, merge SBD into train_aug, cache image labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wsss.configs.datasets import PrepareVocConfig
from wsss.data.palette import save_label_png
from wsss.data.sbd import read_sbd_mask, sbd_ids
from wsss.data.voc import AUG_MASKS, LABEL_CACHE, LISTS, VocDataset, check_mask, image_size
from wsss.io import atomic_write_bytes, ensure_dir, safe_child, write_json, write_manifest
from wsss.ui import track


@dataclass
class PrepareVocResult:
    counts: dict[str, int] = field(default_factory=dict)
    converted_sbd: int = 0
    labelled_images: int = 0

    def summary_rows(self) -> list[tuple[str, object]]:
        return summary_rows(self)


def run(config: PrepareVocConfig) -> PrepareVocResult:
    voc = VocDataset.open(config.voc, config.class_list, label_cache=False)  # it rebuilds it
    result = PrepareVocResult()
    splits = {name: voc.split_ids(name) for name in ("train", "val")}
    if (voc.root / LISTS / "trainval.txt").is_file():
        splits["trainval"] = voc.split_ids("trainval")
    if config.check_images:
        for name, ids in splits.items():
            for image_id in track(ids, len(ids), f"check {name}"):
                _check_pair(voc, image_id)

    train_aug = set(splits["train"])
    if config.sbd is not None:
        sbd_root = Path(config.sbd)
        sbd_all = sorted(set(sbd_ids(sbd_root, "train")) | set(sbd_ids(sbd_root, "val")))
        result.counts["sbd"] = len(sbd_all)
        result.converted_sbd = _convert_sbd(voc, sbd_root, sbd_all, voc_masked=set(splits["train"]))
        train_aug |= set(sbd_all)
    train_aug -= set(splits["val"])
    train_aug_ids = sorted(train_aug)
    voc.check_image_ids(train_aug_ids)
    if config.sbd is not None:
        atomic_write_bytes(
            voc.root / LISTS / "train_aug.txt", ("\n".join(train_aug_ids) + "\n").encode()
        )

    labelled = sorted(set(train_aug_ids) | set().union(*splits.values()))
    cache = {
        "classes": list(voc.classes),
        "labels": {i: voc.image_classes(i) for i in track(labelled, len(labelled), "labels")},
        # What each entry was read from: a reader notices an annotation edited since.
        "sources": {i: voc.label_stamp(i) for i in labelled},
    }
    write_json(voc.root / LABEL_CACHE, cache)
    result.labelled_images = len(labelled)
    result.counts.update({name: len(ids) for name, ids in splits.items()})
    result.counts["train_aug"] = len(train_aug_ids)
    write_manifest(
        voc.root / ".wsss",
        "prepare-voc",
        {"voc": str(config.voc), "sbd": str(config.sbd) if config.sbd else None},
        counts=result.counts,
    )
    return result


def _check_pair(voc: VocDataset, image_id: str) -> None:
    """The image decodes and, when it has a mask, the mask matches its size and classes."""
    image = voc.load_image(image_id)
    if voc.has_mask(image_id):
        voc.load_mask(image_id, image.size)
    voc.image_classes(image_id)


def _convert_sbd(voc: VocDataset, sbd_root: Path, ids: list[str], voc_masked: set[str]) -> int:
    """Write SegmentationClassAug: the VOC mask where VOC has one, else the converted SBD mask."""
    out_dir = ensure_dir(voc.root / AUG_MASKS)
    converted = 0
    for image_id in track(ids, len(ids), "convert SBD"):
        target = safe_child(out_dir, image_id, ".png")
        if target.is_file():
            continue  # resumable: finished conversions are kept
        voc_mask = safe_child(voc.root / "SegmentationClass", image_id, ".png")
        if voc_mask.is_file():
            atomic_write_bytes(target, voc_mask.read_bytes())
            continue
        mat_path = safe_child(sbd_root / "cls", image_id, ".mat")
        mask = read_sbd_mask(mat_path)
        check_mask(mask, mat_path, voc.num_classes, image_size(voc.image_path(image_id)))
        save_label_png(target, mask)
        converted += 1
    for image_id in voc_masked:  # VOC train masks belong to train_aug as well
        target = safe_child(out_dir, image_id, ".png")
        source = safe_child(voc.root / "SegmentationClass", image_id, ".png")
        if not target.is_file() and source.is_file():
            atomic_write_bytes(target, source.read_bytes())
    return converted


def summary_rows(result: PrepareVocResult) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [(f"{k} ids", v) for k, v in result.counts.items()]
    rows += [
        ("SBD masks converted", result.converted_sbd),
        ("label cache entries", result.labelled_images),
    ]
    return rows

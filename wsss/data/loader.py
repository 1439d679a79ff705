"""Batches of uint8 images for inference, grouped by size so no image is padded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from wsss.data.transforms import pil_bicubic, to_chw_uint8
from wsss.data.voc import VocDataset, image_size
from wsss.errors import WsssError, check_count


def default_loader_workers(device: str | torch.device = "auto") -> int:
    """Image loading processes: up to 4 feeding a GPU, none on the CPU.

    On the CPU the network itself uses every core, and a loader process that takes one stalls
    all of torch's threads at their next barrier (docs/performance.md has the timings).
    """
    kind = device.type if isinstance(device, torch.device) else device
    uses_gpu = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
    return min(4, os.cpu_count() or 1) if uses_gpu else 0


class ImageDataset(Dataset):
    """uint8 CHW images of a list of ids, decoded in loader workers (optionally also raw as
    H x W x 3). Normalised by `Predictor.to_device` on the device: a quarter of the bytes to
    copy, and the loader workers keep up with a GPU's batched forward.

    With `pil_scales`, each item also holds the image resized to each of these scales with
    PIL's bicubic filter (`scaled`, uint8 CHW, one per scale): the reference's inference
    resize, done here on the CPU so that it is the same on every device."""

    def __init__(
        self,
        voc: VocDataset,
        ids: Sequence[str],
        raw: bool = False,
        pil_scales: Sequence[float] = (),
    ) -> None:
        self.voc, self.ids, self.raw = voc, list(ids), raw
        self.pil_scales = tuple(pil_scales)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.voc.load_image(self.ids[index])
        item: dict[str, Any] = {"index": index, "image": to_chw_uint8(image)}
        if self.raw:
            item["raw"] = np.asarray(image)
        if self.pil_scales:
            item["scaled"] = [to_chw_uint8(pil_bicubic(image, s)) for s in self.pil_scales]
        return item


def collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "index": [item["index"] for item in items],
        "image": torch.stack([item["image"] for item in items]),
    }
    if "raw" in items[0]:
        batch["raw"] = [item["raw"] for item in items]
    if "scaled" in items[0]:  # same-size images: each scale's views stack
        scaled = [item["scaled"] for item in items]
        batch["scaled"] = [torch.stack(views) for views in zip(*scaled, strict=True)]
    return batch


def size_grouped_batches(sizes: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices in batches of at most `batch_size` whose images all have the same size."""
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and sizes[batches[-1][0]] == sizes[i]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def image_loader(
    voc: VocDataset,
    ids: Sequence[str],
    batch_size: int,
    workers: int | None,
    device: torch.device,
    raw: bool = False,
    pil_scales: Sequence[float] = (),
) -> DataLoader:
    """Batches of same-size images; workers (default: by device) decode while the network runs
    (and, with `pil_scales`, resize them: `ImageDataset`)."""
    check_count("--batch-size", batch_size)
    check_count("--workers", workers, 0)
    if workers is None:
        workers = default_loader_workers(device)
    if batch_size == 1:
        batches = [[i] for i in range(len(ids))]
    else:
        batches = size_grouped_batches([image_size(voc.image_path(i)) for i in ids], batch_size)
    return DataLoader(
        ImageDataset(voc, ids, raw=raw, pil_scales=pil_scales),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=device.type == "cuda",
    )


class ImageSource(Protocol):
    def load_image(self, image_id: str) -> Image.Image: ...


class TolerantImages(Dataset):
    """uint8 CHW images one at a time, for a loop that goes on past an unreadable file: its
    item holds the one-line error instead of the pixels (`wsss predict --images`)."""

    def __init__(self, source: ImageSource, ids: Sequence[str]) -> None:
        self.source, self.ids = source, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image = self.source.load_image(self.ids[index])
        except WsssError as exc:
            return {"index": index, "error": str(exc)}
        return {"index": index, "image": to_chw_uint8(image)}


def single_image_loader(
    source: ImageSource, ids: Sequence[str], workers: int | None, device: torch.device
) -> DataLoader:
    """Images of any sizes one by one (`TolerantImages`), decoded ahead in worker processes
    (default: by device)."""
    check_count("--workers", workers, 0)
    if workers is None:
        workers = default_loader_workers(device)
    return DataLoader(TolerantImages(source, ids), batch_size=None, num_workers=workers)

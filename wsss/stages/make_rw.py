"""`wsss make-rw`: CAMs refined by a random walk over learned affinities.

Per image: the affinity net's boundary map (averaged with that of the flipped image; the
reference head's on the image zero-padded to 512, as its get_edge), the sparse transition
matrix of the pairs within `radius` (affinity^beta, row-normalised), the stride-4 CAMs masked
by 1 - boundary and propagated 2^exp_times steps, upsampled to the image like IRN (x4,
cropped), and written in the CAM file schema so that `eval-cam` and `make-pseudo` read them
as CAMs. Same-size images are walked together (`walk_batch`): the
walk is hundreds of small sparse products in sequence, and on a GPU one product for a
batch costs about what one for an image did.

The walk's length: the reference's 2^8 steps were set for VOC images (long side 500, a
125-cell grid). A walk spreads about sqrt(steps) cells, so on smaller images the same
number of steps crosses every gap in the predicted boundaries many times over. By default
(`exp_times=None`, "auto") the number of steps is scaled with the image's area:
exp_times = round(8 + 2 log2(long side / 500)), which is 8 on VOC and 4 on the demo's
128 px images (docs/random_walk.md has the sweep that found this).

The background, two ways (docs/random_walk.md):
- default (IRN, Puzzle-CAM): the class maps alone are propagated and normalised, and the
  background stays a threshold. P is row-stochastic, so a constant background channel
  would come out of the walk unchanged: the threshold plays the part of a propagated
  constant background. `eval-cam` sweeps it; `make-pseudo` uses the best. Each class is
  divided by its own maximum (`rw_normalise="class"`, IRN); the official Puzzle-CAM code
  divides all of an image's classes by their one maximum (`"global"`), so a weakly walked
  class stays weak beside a strong one.
- `bg_power=a` (AffinityNet): the background score (1 - max cam)^a is propagated too, and
  each class map is stored as its share rw_c / (rw_c + rw_bg). Threshold 0.5 then gives
  exactly AffinityNet's argmax over [bg, classes]; threshold t weights the background by
  t / (1 - t), so the eval-cam sweep still tunes it.

Resumable, atomic and sharded under torchrun like make-cam, with a manifest.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from wsss.affinity import (
    background_map,
    pair_affinities,
    pair_offsets,
    random_walk,
    transition_matrix,
)
from wsss.cam_math import CAM_STRIDE, normalize_cams, strided_size
from wsss.camfile import (
    CamRecord,
    cam_folder_params,
    cam_suffix,
    load_cam_file,
    save_cam_file,
)
from wsss.camfile import find_cam_file as cam_file_path
from wsss.checkpoints import open_model_stage
from wsss.configs.inference import MakeRwConfig
from wsss.data.loader import image_loader
from wsss.errors import WsssError, check_count, file_error
from wsss.inference import Predictor, default_batch_size
from wsss.models.affinity import AffinityNet
from wsss.overlay import write_overlays
from wsss.perimage import PerImageResult, PerImageRun
from wsss.torchrun import env_info
from wsss.transfers import upload, writing_loop

STAGE = "make-rw"
# The reference walk (IRN, Puzzle-CAM): 2^8 steps on VOC images, whose long side is 500.
REFERENCE_EXP_TIMES, REFERENCE_LONG_SIDE = 8, 500
MAX_EXP_TIMES = 16
SIGNATURE = ("checkpoint_sha256", "cams", "beta", "exp_times", "radius", "bg_power",
             "rw_normalise", "flip", "format", "classes")  # fmt: skip

MakeRwResult = PerImageResult


@dataclass(frozen=True)
class RwParams:
    """The walk: beta and 2^exp_times steps as in the reference; radius on the stride-4 grid."""

    beta: float = 10.0
    exp_times: int | None = None  # None: scaled to each image (`scaled_exp_times`)
    radius: int = 5
    bg_power: float | None = None
    normalise: Literal["class", "global"] = "class"  # the threshold background's scaling

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise WsssError(f"--beta must be positive, got {self.beta}")
        if self.exp_times is not None and not 0 <= self.exp_times <= MAX_EXP_TIMES:
            raise WsssError(f"--exp-times must be in 0..{MAX_EXP_TIMES}, got {self.exp_times}")
        if self.bg_power is not None and not self.bg_power > 0:
            raise WsssError(f"--bg-power must be positive, got {self.bg_power}")
        if self.normalise not in ("class", "global"):
            raise WsssError(f"--rw-normalise must be class or global, got '{self.normalise}'")
        if self.normalise == "global" and self.bg_power is not None:
            raise WsssError(
                "--rw-normalise global scales the threshold background's maps; with --bg-power "
                "each map is its class's share of the propagated background instead"
            )
        pair_offsets(self.radius)  # validates the radius

    def steps(self, image_size: tuple[int, int]) -> int:
        exp_times = self.exp_times
        if exp_times is None:
            exp_times = scaled_exp_times(image_size)
        return 2**exp_times


def scaled_exp_times(image_size: tuple[int, int]) -> int:
    """The reference's exp_times for VOC, scaled so the walk spreads as far relative to the image.

    A walk of s steps spreads ~sqrt(s) cells: keeping that a fixed fraction of the long side
    L scales s with L^2, i.e. exp_times = 8 + 2 log2(L / 500).
    """
    exp_times = REFERENCE_EXP_TIMES + 2 * math.log2(max(image_size) / REFERENCE_LONG_SIDE)
    return min(MAX_EXP_TIMES, max(0, round(exp_times)))


def rw_params(config: MakeRwConfig) -> RwParams:
    """The walk's parameters from the options."""
    return RwParams(
        config.beta, config.walk_steps_exponent, config.radius, config.bg_power,
        config.rw_normalise,
    )  # fmt: skip


def run(config: MakeRwConfig) -> MakeRwResult:
    walk = rw_params(config)
    suffix = cam_suffix(config.format)
    cams = Path(config.cams)
    if not cams.is_dir():
        raise file_error(cams, "CAM directory not found")
    if cams.resolve() == Path(config.out).resolve():
        raise file_error(cams, "--out must differ from --cams (the refined maps are CAM files)")
    check_count("--batch-size", config.batch_size)
    check_count("--loader-workers", config.loader_workers, 0)
    check_count("--overlays", config.overlays, 0)
    voc, ids, predictor, params = open_model_stage(config, AffinityNet.KIND)
    edge_input = predictor.model.edge_input  # the reference head's padding (row 7)
    cam_folder_params(cams, voc.classes)
    device = predictor.device
    params |= {
        "cams": str(cams.resolve()),
        "beta": walk.beta,
        "exp_times": "auto" if walk.exp_times is None else walk.exp_times,
        "radius": walk.radius,
        "bg_power": walk.bg_power,
        "background": "propagated" if walk.bg_power else "threshold",
        "rw_normalise": walk.normalise,
        "flip": config.flip,
        "format": config.format,
        "classes": list(voc.classes),
    }
    outputs = PerImageRun(STAGE, config.out, ids, suffix, params, SIGNATURE)
    voc.check_image_ids(outputs.todo)
    inputs = {image_id: cam_file_path(cams, image_id) for image_id in outputs.todo}  # fail early
    batch_size = rw_batch_size(device) if config.batch_size is None else config.batch_size
    loader = image_loader(voc, outputs.todo, batch_size, config.loader_workers, device)

    def write(batch_ids: list[str], records: list[CamRecord], maps: list[np.ndarray]) -> None:
        for image_id, record in zip(batch_ids, refined_records(records, *maps), strict=True):
            writer.submit(save_cam_file, outputs.output(image_id), record, config.format)
        advance(len(batch_ids))

    with torch.inference_mode(), writing_loop(outputs, device) as (advance, writer, readback):
        for batch in loader:
            batch_ids = [outputs.todo[i] for i in batch["index"]]
            images = predictor.to_device(batch["image"])
            size = (int(images.shape[-2]), int(images.shape[-1]))
            records = [load_cam_file(inputs[i], voc.num_classes, size) for i in batch_ids]
            boundary = predict_boundary(predictor, images, config.flip, edge_input)
            maps = walk_batch(records, boundary, walk)
            readback.submit(maps, functools.partial(write, batch_ids, records))
    overlays = []
    if config.overlays and env_info().is_main:
        overlays = write_overlays(voc, ids[: config.overlays], outputs.out, suffix)
    return outputs.finish("CAM files", overlays)


def rw_batch_size(device: torch.device) -> int:
    """Images walked together by default: a GPU's batch; one on the CPU, where walking 4 or 8
    images of 500 x 375 at once measured 20-25 % slower (docs/gpu.md)."""
    return default_batch_size(device) if device.type == "cuda" else 1


def predict_boundary(
    predictor: Predictor, images: torch.Tensor, flip: bool, pad_to: int | None = None
) -> torch.Tensor:
    """B x h x w boundary maps in [0, 1] of B same-size images (B x 3 x H x W), on the
    stride-4 grid. With `flip` the logits are averaged with those of the flipped image (as
    Puzzle-CAM). `pad_to` (the model's `edge_input`): each view, flipped one included, is
    zero-padded at its right and bottom to that size and the logits cropped back, as the
    reference's get_edge does; a side already longer is left as it is."""
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    views = torch.cat([images, images.flip(-1)]) if flip else images
    if pad_to is not None:
        views = F.pad(views, [0, max(0, pad_to - width), 0, max(0, pad_to - height)])
    logits = predictor(views).float()
    if pad_to is not None:
        h, w = strided_size(height, width, CAM_STRIDE)
        logits = logits[..., :h, :w]
    if flip:
        logits = (logits[:batch] + logits[batch:].flip(-1)) / 2
    return torch.sigmoid(logits[:, 0])


def walk_batch(
    records: list[CamRecord], boundary: torch.Tensor, params: RwParams
) -> list[torch.Tensor]:
    """The refined maps of B same-size images, walked together: [strided, hr], each
    B x M x h x w on the boundary's device, image i's maps first in its M (the most maps of
    the batch) and zeros after them. `refined_records` makes the CAM files of them.

    As in IRN, the maps are first multiplied by 1 - boundary: a seed sitting on a boundary
    (often the object's crisp discriminative part, which the net outlines) would stay
    trapped there and dominate the per-class maximum. One block-diagonal transition matrix
    holds the B images, so each step of the walk is one sparse product for all of them;
    a map's walk does not depend on the others (zero maps stay zero).
    """
    height, width = records[0].image_size
    counts = [len(record.cam) for record in records]
    if max(counts) == 0:  # no classes in the batch: the records stay as they are
        empty = boundary.new_zeros(len(records), 0, *boundary.shape[-2:])
        return [empty, boundary.new_zeros(len(records), 0, height, width)]
    cams = np.zeros((len(records), max(counts), *boundary.shape[-2:]), dtype=np.float32)
    for i, record in enumerate(records):
        cams[i, : counts[i]] = record.cam
    maps = upload(cams, boundary.device)
    if params.bg_power is not None:  # [background, classes...] per image
        background = torch.stack(
            [background_map(maps[i, : counts[i]], params.bg_power) for i in range(len(records))]
        )
        maps = torch.cat([background, maps], dim=1)
    offsets = pair_offsets(params.radius)
    transition = transition_matrix(pair_affinities(boundary, offsets), offsets, params.beta)
    walked = random_walk(
        maps * (1.0 - boundary[:, None]), transition, params.steps((height, width))
    )
    if params.bg_power is None:
        scale = normalize_cams if params.normalise == "class" else normalize_globally
        return [scale(walked), scale(_to_image(walked, height, width))]
    return [_class_share(walked), _class_share(_to_image(walked, height, width))]


def refined_records(
    records: list[CamRecord], strided: np.ndarray, hr: np.ndarray
) -> list[CamRecord]:
    """The CAM files of `walk_batch`'s maps (same keys; the module docstring has the values);
    a record without classes is kept as it is."""
    return [
        CamRecord(record.keys, strided[i, : len(record.cam)], hr[i, : len(record.cam)])
        if len(record.cam)
        else record
        for i, record in enumerate(records)
    ]


def refine_record(record: CamRecord, boundary: torch.Tensor, params: RwParams) -> CamRecord:
    """`walk_batch` of one image (h x w boundary)."""
    maps = [_numpy(m) for m in walk_batch([record], boundary[None], params)]
    return refined_records([record], *maps)[0]


def _to_image(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B x M stride-4 maps -> image size: x4 bilinear, cropped (IRN's rule; no shift at the
    border)."""
    size = (maps.shape[-2] * CAM_STRIDE, maps.shape[-1] * CAM_STRIDE)
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return up[..., :height, :width]


def normalize_globally(maps: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ReLU(A) / (max + eps) with one maximum per image over all of its B x M maps: classes
    keep their relative strength (the official Puzzle-CAM code's walk output)."""
    maps = maps.relu()
    return maps / (maps.amax(dim=(-3, -2, -1), keepdim=True) + eps)


def _class_share(walked: torch.Tensor) -> torch.Tensor:
    """rw_c / (rw_c + rw_bg) per class, from B x [bg, classes...]; in [0, 1]."""
    background, classes = walked[:, :1].clamp_min(0), walked[:, 1:].clamp_min(0)
    return classes / (classes + background).clamp_min(1e-12)


def _numpy(maps: torch.Tensor) -> np.ndarray:
    return maps.float().cpu().numpy().astype(np.float32, copy=False)

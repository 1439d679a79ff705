"""fp32 against bf16 (CPU autocast) and channels_last, every convolution stage side by side.

Each stage's network work runs in one process under each mode in turn (`alternate`), so load
drifts hit every mode alike and the ratios are measured in one run:

- trainers: one optimiser step of the stage's own objective on a fixed batch (train-cam plain
  and Puzzle-CAM, train-seg's DeepLabv3+, train-aff's affinity net with its frozen backbone),
  the models as the stage builds them (demo recipe backbone, output stride 16);
- make-cam: the stage's whole multi-scale + flip pass (`make_cams`) over one image at a time,
  and over a batch of the stage's own CPU batch size (`make-cam x4`: what the stage runs on
  same-size images);
- predict: `segment_probs` at one scale + flip (the demo recipe's predict);
- make-rw: the boundary net's forward with its flip (`predict_boundary`; the walk's sparse
  sums stay in fp32 whatever the mode).

The modes: fp32 NCHW (today's CPU default), fp32 channels_last, bf16 NCHW and bf16
channels_last (`--amp bf16`; the layout forced by WSSS_CHANNELS_LAST).

`measure_folding` (the `fold` job): the four inference rows in bf16 + channels_last with the
model prepared as the stages prepare it (`Predictor.prepare`: BatchNorm folded into the
convolutions, which are cast once) and as they did before (eval mode and layout only),
beside fp32 NCHW, taking turns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import BenchSettings, Numbers, alternate, seconds_of
from wsss.engine.device import CHANNELS_LAST_ENV, amp_policy, set_amp
from wsss.inference import Predictor, TtaConfig, default_batch_size, make_cams, segment_probs
from wsss.models.affinity import AffinityNet
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus
from wsss.puzzle import PuzzleConfig
from wsss.stages.make_rw import predict_boundary
from wsss.stages.train_aff import AffinityObjective
from wsss.stages.train_cam import PuzzleObjective
from wsss.stages.train_seg import SegObjective

MODES = {  # name: (--amp, channels_last)
    "fp32": ("off", "0"),
    "fp32_cl": ("off", "1"),
    "bf16": ("bf16", "0"),
    "bf16_cl": ("bf16", "1"),
}
CAM_BATCH = default_batch_size(torch.device("cpu"))
CAM_BATCHED = f"make-cam x{CAM_BATCH}"
CLASSES = 20
STAGES = ("train-cam plain", "train-cam puzzle", "train-seg", "train-aff", "make-cam",
          CAM_BATCHED, "predict", "make-rw")  # fmt: skip
CPU = torch.device("cpu")


def _in_mode(mode: str) -> Any:
    """The process in `mode` (what `--amp` does in a stage), and its policy."""
    amp, channels_last = MODES[mode]
    os.environ[CHANNELS_LAST_ENV] = channels_last
    set_amp(amp)
    return amp_policy(CPU)


Build = Callable[[], torch.nn.Module]
Timed = Callable[[str], float]  # seconds of one call in a mode
Call = Callable[[Predictor], object]  # one inference call of a stage


def _trainer_step(
    build: Build, batch: dict[str, torch.Tensor], objective: Callable[[torch.nn.Module], Any]
) -> Timed:
    """Seconds of one SGD step of `objective(model)` in a mode; each mode has its own model,
    built once from the same seed, in the mode's layout."""
    prepared: dict[str, Any] = {}

    def step(mode: str) -> float:
        policy = _in_mode(mode)
        if mode not in prepared:
            torch.manual_seed(0)
            model = build().to(memory_format=policy.memory_format).train()
            policy.keep_outputs_fp32(model)
            module = objective(model)
            params = [p for p in module.parameters() if p.requires_grad]
            prepared[mode] = (module, torch.optim.SGD(params, lr=1e-3, momentum=0.9))
        module, optimizer = prepared[mode]
        inputs = {k: v.contiguous(memory_format=policy.memory_format) if v.dim() == 4 else v
                  for k, v in batch.items()}  # fmt: skip

        def once() -> None:
            with policy.autocast():
                loss = module(inputs, 1.0)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return seconds_of(once)

    return step


def _inference(build: Build, call: Call, fold: bool = True) -> Timed:
    """Seconds of one `call` in a mode; `fold=False` prepares the model as before BatchNorm
    was folded (eval mode and layout only: `fold` rows)."""
    prepared: dict[str, Predictor] = {}

    def run(mode: str) -> float:
        policy = _in_mode(mode)
        if mode not in prepared:
            torch.manual_seed(0)
            model = build()
            prepared[mode] = (
                Predictor.prepare(model, CPU)
                if fold
                else Predictor(model.eval().to(memory_format=policy.memory_format), CPU)
            )
        with torch.inference_mode():
            return seconds_of(lambda: call(prepared[mode]))

    return run


def _inference_stages(settings: BenchSettings, backbone: str) -> dict[str, tuple[Build, Call, int]]:
    """The inference rows: (network, one call, images per call)."""
    size, batch = settings.size, settings.train_batch
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(batch, 3, size, size, generator=generator)
    one = images[:1]
    cam_images = torch.randn(CAM_BATCH, 3, size, size, generator=generator)
    cam_net = lambda: CamClassifier(backbone, CLASSES)  # noqa: E731
    seg_net = lambda: DeepLabV3Plus(backbone, CLASSES + 1)  # noqa: E731
    aff_net = lambda: AffinityNet(backbone)  # noqa: E731
    return {
        "make-cam": (cam_net, lambda p: make_cams(p, one, [[0, 3]], TtaConfig()), 1),
        CAM_BATCHED: (cam_net, lambda p: make_cams(p, cam_images, [[0, 3]] * CAM_BATCH,
                                                   TtaConfig()), CAM_BATCH),
        "predict": (seg_net, lambda p: segment_probs(p, images, TtaConfig(scales=(1.0,))), batch),
        "make-rw": (aff_net, lambda p: predict_boundary(p, one, True), 1),
    }  # fmt: skip


def measure_precision(settings: BenchSettings, backbone: str) -> Numbers:
    """Images per second of each stage in each mode, and each mode's ratio to fp32 NCHW."""
    size, batch = settings.size, settings.train_batch
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = (torch.rand(batch, CLASSES, generator=generator) < 0.15).float()
    masks = torch.randint(0, CLASSES + 1, (batch, size, size), generator=generator)
    cam_net = lambda: CamClassifier(backbone, CLASSES)  # noqa: E731
    seg_net = lambda: DeepLabV3Plus(backbone, CLASSES + 1)  # noqa: E731
    aff_net = lambda: AffinityNet(backbone)  # noqa: E731
    puzzle = PuzzleConfig()
    plain = PuzzleConfig(pieces=1, alpha=0.0, use_pcl=False)
    inference = _inference_stages(settings, backbone)
    stages: dict[str, tuple[Timed, int]] = {
        "train-cam plain": (_trainer_step(cam_net, {"image": images, "label": labels},
                                          lambda m: PuzzleObjective(m, plain)), batch),
        "train-cam puzzle": (_trainer_step(cam_net, {"image": images, "label": labels},
                                           lambda m: PuzzleObjective(m, puzzle)), batch),
        "train-seg": (_trainer_step(seg_net, {"image": images, "mask": masks},
                                    SegObjective), batch),
        "train-aff": (_trainer_step(aff_net, {"image": images, "mask": masks},
                                    lambda m: AffinityObjective(m, 5)), batch),
        **{name: (_inference(build, call), count)
           for name, (build, call, count) in inference.items()},
    }  # fmt: skip
    assert tuple(stages) == STAGES
    seconds = _alternating(
        {stage: {mode: (lambda m=mode, r=run: r(m)) for mode in MODES}
         for stage, (run, _) in stages.items()}, settings
    )  # fmt: skip
    return {"size": size, "batch": batch, **_rates(seconds, {s: c for s, (_, c) in stages.items()})}


def measure_folding(settings: BenchSettings, backbone: str) -> Numbers:
    """The inference rows in bf16 + channels_last with BatchNorm folded and the convolutions
    cast once (`Predictor.prepare`) and without, beside fp32 (never folded), taking turns;
    ratios over fp32."""
    stages, counts = {}, {}
    for stage, (build, call, count) in _inference_stages(settings, backbone).items():
        folded, plain = _inference(build, call), _inference(build, call, fold=False)
        stages[stage] = {
            "fp32": lambda r=plain: r("fp32"),
            "bf16_cl": lambda r=plain: r("bf16_cl"),
            "bf16_cl_folded": lambda r=folded: r("bf16_cl"),
        }
        counts[stage] = count
    return {"size": settings.size, **_rates(_alternating(stages, settings), counts)}


def _alternating(
    stages: dict[str, dict[str, Callable[[], float]]], settings: BenchSettings
) -> dict[str, dict[str, float]]:
    """Median seconds of each run of each stage, a stage's runs taking turns after one
    warm-up call each (it builds the model and oneDNN's kernels); the process's precision
    settings restored after."""
    saved = os.environ.get(CHANNELS_LAST_ENV)
    try:
        seconds = {}
        for stage, runs in stages.items():
            for run in runs.values():
                run()
            seconds[stage] = alternate(runs, settings.min_seconds, min_rounds=3)
        return seconds
    finally:
        set_amp(settings.amp)
        if saved is None:
            os.environ.pop(CHANNELS_LAST_ENV, None)
        else:
            os.environ[CHANNELS_LAST_ENV] = saved


def _rates(seconds: dict[str, dict[str, float]], counts: dict[str, int]) -> Numbers:
    """ "STAGE|RUN_images_per_s" and "STAGE|RUN_ratio" (over the stage's first run)."""
    out: Numbers = {}
    for stage, runs in seconds.items():
        first = next(iter(runs.values()))
        for name, value in runs.items():
            out[f"{stage}|{name}_images_per_s"] = counts[stage] / value
            out[f"{stage}|{name}_ratio"] = first / value
    return out

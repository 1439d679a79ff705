"""`--compile` (torch.compile) on the CPU against eager, for the two trainers the demo spends
its time in (train-cam plain, train-seg), in fp32 NCHW and in bf16 + channels_last.

One optimiser step of each stage's own objective on a fixed batch, as benchmarks/precision.py
times it, the eager and the compiled module taking turns in one process (the compile itself,
its first call, is timed apart). Issue #26 asks for whatever else makes the CPU stages faster,
measured before it is changed.

    python benchmarks/compile_cpu.py [--size 128] [--batch 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import alternate  # noqa: E402
from benchmarks.precision import CLASSES, _trainer_step  # noqa: E402
from wsss.models.classifier import CamClassifier  # noqa: E402
from wsss.models.deeplab import DeepLabV3Plus  # noqa: E402
from wsss.puzzle import PuzzleConfig  # noqa: E402
from wsss.stages.train_cam import PuzzleObjective  # noqa: E402
from wsss.stages.train_seg import SegObjective  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="per row, each arm")
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    labels = (torch.rand(args.batch, CLASSES, generator=generator) < 0.15).float()
    masks = torch.randint(0, CLASSES + 1, (args.batch, args.size, args.size), generator=generator)
    plain = PuzzleConfig(pieces=1, alpha=0.0, use_pcl=False)
    stages = {
        "train-cam plain": (lambda: CamClassifier(args.backbone, CLASSES),
                            {"image": images, "label": labels},
                            lambda m: PuzzleObjective(m, plain)),
        "train-seg": (lambda: DeepLabV3Plus(args.backbone, CLASSES + 1),
                      {"image": images, "mask": masks}, SegObjective),
    }  # fmt: skip
    print(f"{args.backbone}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}")  # fmt: skip
    print("| stage | mode | eager images/s | compiled images/s | compiled / eager | compile s |")
    print("|---|---|---|---|---|---|")
    for stage, (build, batch, objective) in stages.items():
        for mode in ("fp32", "bf16_cl"):
            eager = _trainer_step(build, batch, objective)
            compiled = _trainer_step(build, batch, lambda m, o=objective: torch.compile(o(m)))
            eager(mode)  # builds the model and oneDNN's kernels
            start = time.perf_counter()
            compiled(mode)  # traces and compiles
            compile_seconds = time.perf_counter() - start
            arms = {"eager": lambda e=eager, m=mode: e(m),
                    "compiled": lambda c=compiled, m=mode: c(m)}  # fmt: skip
            seconds = alternate(arms, args.seconds, min_rounds=3)
            rates = {name: args.batch / s for name, s in seconds.items()}
            print(f"| {stage} | {mode} | {rates['eager']:.2f} | {rates['compiled']:.2f} | "
                  f"{rates['compiled'] / rates['eager']:.2f} | {compile_seconds:.0f} |",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

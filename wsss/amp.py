"""The --amp option's choices and default, declared once for the option, the engine, the
pipeline and the experiments (torch-free, so that the option declarations can read it)."""

from __future__ import annotations

from typing import Literal, get_args

Amp = Literal["gpu", "auto", "bf16", "off"]
AMP_CHOICES: tuple[str, ...] = get_args(Amp)
# auto: bf16 on a CUDA GPU or a CPU with native bf16, fp32 elsewhere. The tuning set put bf16
# inside fp32's seed spread on CAMs, labels and segmenter (docs/quality.md, "bf16 on the CPU").
AMP_DEFAULT: Amp = "auto"
AMP_HELP = (
    "Precision: auto (default: mixed precision on CUDA, bf16 on a CPU with native bf16 - "
    "AVX512-BF16, AMX or Arm BF16 - else fp32), gpu (mixed precision on CUDA, fp32 on any "
    "CPU), bf16 (on any device) or off (fp32)."
)

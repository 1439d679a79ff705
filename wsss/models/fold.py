"""Inference copies of the networks: every eval-mode BatchNorm folded into the convolution
before it, so a forward runs one layer where it ran two.

A folded BatchNorm is a per-channel scale and shift of its convolution's output; in eval mode
both are constants, so they move into the convolution's weight and bias (torch's
`fuse_conv_bn_eval`). In fp32 the outputs move by rounding only (1e-6 to 1e-5 on the
normalised CAMs of random networks); under bf16 autocast the normalisation no longer runs in
bf16, and the result was no farther from fp32's than unfolded on those networks.
BENCHMARKS.md has what it saves.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck

from wsss.models.backbone import ResNetBackbone

# Modules whose forward applies `bn<i>` straight to `conv<i>`'s output (torchvision's blocks,
# the stem of the ResNet backbone); in an nn.Sequential the order of the children says it.
_NAMED_PAIRS = (BasicBlock, Bottleneck, ResNetBackbone)


def _pairs(module: nn.Module) -> Iterator[tuple[str, str]]:
    """Names of (convolution, the BatchNorm applied to its output) among `module`'s children."""
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        yield from zip(names, names[1:], strict=False)
    elif isinstance(module, _NAMED_PAIRS):
        yield from ((f"conv{i}", f"bn{i}") for i in (1, 2, 3))


def _foldable(conv: object, norm: object) -> bool:
    # Exactly BatchNorm2d with running statistics: its subclasses (timm's BatchNormAct2d)
    # do more than normalise, and without statistics eval mode normalises by the batch.
    return (
        type(conv) is nn.Conv2d
        and type(norm) is nn.BatchNorm2d
        and norm.track_running_stats
        and norm.running_mean is not None
    )


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it (the BatchNorm becomes an
    Identity). The model must be in eval mode: training would update the statistics that are
    folded. Returns how many were folded."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    folded = 0
    for module in list(model.modules()):
        for conv_name, norm_name in list(_pairs(module)):
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if _foldable(conv, norm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
                folded += 1
    return folded

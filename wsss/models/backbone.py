"""The backbone factory: a name in, a four-stage feature extractor out.

The CAM classifier, DeepLabv3+ and the affinity head all get their backbone here, so the
output stride, the stage layout and weight loading are decided once. Weights come from
"none" (random init), "imagenet" (torchvision's official V1 weights, as the reference
used, downloaded into the usual torch hub cache) or a local file, which is the way on a
machine without internet.

torchvision can only dilate Bottleneck ResNets (50/101). For BasicBlock ResNets (18/34)
the stride-2 convolutions of the late stages are set to stride 1 *without* dilation: the
output stride is right but those stages see a smaller receptive field than their
pretrained weights expect. Prefer resnet50+ when the pretrained features matter.

`dilate=False` does the same to a Bottleneck ResNet: the stages kept at stride 1 for the
output stride are not dilated (layer4's 3x3 convolutions keep dilation 1 at output stride
16). That is the official Puzzle-CAM code's ResNet-50 (`strides=(2, 2, 2, 1)`, issue #25
row 1); the weights are the same tensors either way, only the forward differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models._api import WeightsEnum

from wsss.errors import WsssError, file_error

STAGES = ("stage1", "stage2", "stage3", "stage4")
# The stem's output (conv1, bn1, relu, maxpool: stride 4), beside the stages where a backbone
# has one (the torchvision ResNets); the reference AffinityNet has a branch on it.
STEM = "stem"
TIMM_PREFIX = "timm:"

# name -> (constructor, official ImageNet weights, uses Bottleneck blocks)
_RESNETS: dict[str, tuple[Callable[..., resnet.ResNet], WeightsEnum, bool]] = {
    "resnet18": (resnet.resnet18, resnet.ResNet18_Weights.IMAGENET1K_V1, False),
    "resnet34": (resnet.resnet34, resnet.ResNet34_Weights.IMAGENET1K_V1, False),
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights.IMAGENET1K_V1, True),
    "resnet101": (resnet.resnet101, resnet.ResNet101_Weights.IMAGENET1K_V1, True),
}
# The torchvision ResNets, then the paper's ResNeSts; any other `timm:<name>` works too.
BACKBONES: tuple[str, ...] = (
    *_RESNETS,
    "timm:resnest50d",
    "timm:resnest101e",
    "timm:resnest269e",
)


class Backbone(nn.Module):
    """Four feature maps: stage1 at stride 4 (low-level detail) ... stage4 at `output_stride`;
    `STEM` too where `channels` names it."""

    channels: dict[str, int]
    output_stride: int

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


class ResNetBackbone(Backbone):
    """A torchvision ResNet without its head; parameter names match torchvision's (minus fc)."""

    def __init__(self, name: str, output_stride: int, dilate: bool = True) -> None:
        super().__init__()
        build, _, bottleneck = _RESNETS[name]
        # Which of layer2..layer4 keep stride 1: the last one for OS 16, the last two for OS 8.
        keep = [False, output_stride == 8, True]
        if bottleneck and dilate:
            net = build(weights=None, replace_stride_with_dilation=keep)
        else:
            net = build(weights=None)
            for layer, flag in zip((net.layer2, net.layer3, net.layer4), keep, strict=True):
                if flag:
                    _drop_stride(layer)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        expansion = type(net.layer1[0]).expansion
        self.channels = {stage: 64 * 2**i * expansion for i, stage in enumerate(STAGES)}
        self.channels[STEM] = net.conv1.out_channels
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        layers = (self.layer1, self.layer2, self.layer3, self.layer4)
        features = {STEM: x}
        for stage, layer in zip(STAGES, layers, strict=True):
            x = layer(x)
            features[stage] = x
        return features


def _drop_stride(layer: nn.Sequential) -> None:
    """Stride 1 without dilation for a stage: its stride sits in the downsample conv and in
    conv1 of a BasicBlock, conv2 of a Bottleneck (torchvision's ResNet v1.5)."""
    first = layer[0]
    strided = first.conv2 if isinstance(first, resnet.Bottleneck) else first.conv1
    strided.stride = (1, 1)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    first.stride = 1


class TimmBackbone(Backbone):
    """A timm model in `features_only` mode; the last four feature levels become the stages.

    For ResNet/ResNeSt these are layer1..layer4 (strides 4, 8, 16, 32 before dilation).
    """

    def __init__(self, name: str, output_stride: int, pretrained: str) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise WsssError(
                f"backbone '{TIMM_PREFIX}{name}' needs timm: pip install 'wsss[timm]'"
            ) from None
        # A local file is loaded here, not by timm: timm loads it non-strictly and only warns,
        # so a file for another model would silently leave the backbone random.
        path = None if pretrained in ("imagenet", "none") else _weights_path(pretrained)
        try:
            self.body = timm.create_model(
                name, features_only=True, output_stride=output_stride,
                pretrained=pretrained == "imagenet",
            )  # fmt: skip
        except Exception as exc:  # timm raises many types: unknown name, download, ...
            raise WsssError(
                f"timm model '{name}': could not build the timm backbone: {_reason(exc)}"
            ) from None
        if path is not None:
            # the classification head is not part of the feature model: its keys may be extra
            load_matching(self.body, read_weights_file(path), str(path), allow_unexpected=True)
        levels = self.body.feature_info.channels()
        if len(levels) < len(STAGES):
            raise WsssError(f"timm model '{name}' has {len(levels)} feature levels, need 4")
        self._first = len(levels) - len(STAGES)
        self.channels = dict(zip(STAGES, levels[self._first :], strict=True))
        self.output_stride = output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(STAGES, self.body(x)[self._first :], strict=True))


def build_backbone(
    name: str, output_stride: Literal[8, 16] = 16, pretrained: str = "none", dilate: bool = True
) -> Backbone:
    """Build by name (see `BACKBONES`, or `timm:<name>`); `pretrained` is none|imagenet|PATH;
    `dilate=False`: the stages kept at stride 1 are not dilated (the module's docstring)."""
    if output_stride not in (8, 16):
        raise WsssError(f"output stride must be 8 or 16, got {output_stride}")
    if name.startswith(TIMM_PREFIX):
        if not dilate:
            raise WsssError(
                f"backbone '{name}': timm dilates the stages kept at stride 1; an undilated "
                "backbone (--no-backbone-dilation) is a torchvision ResNet"
            )
        return TimmBackbone(name[len(TIMM_PREFIX) :], output_stride, pretrained)
    if name not in _RESNETS:
        raise WsssError(
            f"unknown backbone '{name}': choose from {', '.join(BACKBONES)} or timm:<name>"
        )
    backbone = ResNetBackbone(name, output_stride, dilate)
    if pretrained == "imagenet":
        load_matching(backbone, _download(_RESNETS[name][1]), f"ImageNet weights for {name}")
    elif pretrained != "none":
        path = _weights_path(pretrained)
        load_matching(backbone, read_weights_file(path), str(path))
    return backbone


def _weights_path(pretrained: str) -> Path:
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise file_error(path, "weights file not found (pretrained: none, imagenet or a file)")
    return path


def _download(weights: WeightsEnum) -> dict[str, Tensor]:
    """Fetch into the torch hub cache; offline this fails, so say how to get around it."""
    try:
        return weights.get_state_dict(progress=True, map_location="cpu", weights_only=True)
    except Exception as exc:  # URLError, HTTPError, timeouts, corrupt cache file ...
        raise WsssError(
            f"{weights.url}: could not get the ImageNet weights ({_reason(exc)}); download "
            "the file elsewhere and pass its local path as the pretrained weights"
        ) from None


def read_weights_file(path: str | Path) -> dict[str, Tensor]:
    """A state_dict from `.pth`/`.pt` (also wrapped in "state_dict"/"model") or `.safetensors`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise file_error(path, "reading .safetensors needs: pip install safetensors") from None
        loader: Callable[[], object] = lambda: load_file(str(path), device="cpu")  # noqa: E731
    else:
        loader = lambda: torch.load(path, map_location="cpu", weights_only=True)  # noqa: E731
    try:
        state = loader()
    except Exception as exc:  # torch/safetensors raise many types for corrupt or unsafe files
        raise file_error(path, f"not a readable weights file: {_reason(exc)}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise file_error(path, "not a state_dict (expected a dict of tensors)")
    return dict(state)


def load_matching(
    module: nn.Module, state: Mapping[str, Tensor], source: str, allow_unexpected: bool = False
) -> None:
    """Load a torchvision-style state_dict, ignoring `fc.*`; anything else must match exactly
    (with `allow_unexpected`, keys the module lacks are ignored: a whole model's head).

    A "module." prefix (DataParallel checkpoints) is stripped. BatchNorm's
    `num_batches_tracked` may be absent (old torchvision files lack it).
    """
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [] if allow_unexpected else [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    found = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": shapes}
    problems = [
        f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
        for what, keys in found.items()
        if keys
    ]
    if problems:
        raise file_error(source, f"weights do not fit the backbone: {'; '.join(problems)}")
    module.load_state_dict(state, strict=False)


def _reason(exc: BaseException) -> str:
    """First line of an exception message, short enough for a one-line error."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]

"""Inference networks with BatchNorm folded into their convolutions (`Predictor.prepare`):
the same function of the input, one layer instead of two, and under bf16 the convolutions
cast once instead of on every call, to the same bits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from wsss.amp import AMP_DEFAULT
from wsss.engine.device import amp_policy, set_amp
from wsss.inference import Predictor
from wsss.models.affinity import AffinityNet
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus
from wsss.models.fold import fold_batchnorm

CPU = torch.device("cpu")
NETWORKS = {
    "classifier resnet18": lambda: CamClassifier("resnet18", 3),
    "classifier resnet50, undilated": lambda: CamClassifier("resnet50", 3, dilate=False),
    "deeplab bn head": lambda: DeepLabV3Plus("resnet18", 4),
    "deeplab gn head": lambda: DeepLabV3Plus("resnet18", 4, head_norm="gn"),
    "affinity, reference head": lambda: AffinityNet("resnet50", head="reference"),
}


def _trained_looking(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and affine terms, as training leaves them (fresh ones are
    an identity that a wrong fold would not change)."""
    generator = torch.Generator().manual_seed(1)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.normal_(0, 0.5, generator=generator)
            layer.running_var.uniform_(0.3, 3.0, generator=generator)
            layer.weight.data.uniform_(0.5, 1.5, generator=generator)
            layer.bias.data.normal_(0, 0.2, generator=generator)
    return model.eval()


def _outputs(output) -> list[torch.Tensor]:
    return list(output.values()) if isinstance(output, dict) else [output]


@pytest.mark.parametrize("name", NETWORKS)
def test_folding_leaves_no_batchnorm_and_the_same_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = _trained_looking(NETWORKS[name]())
    norms = sum(type(layer) is nn.BatchNorm2d for layer in model.modules())
    x = torch.randn(2, 3, 40, 40)
    with torch.inference_mode():
        before = _outputs(model(x))
        assert fold_batchnorm(model) == norms  # every one of them follows a convolution
        after = _outputs(model(x))
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in model.modules())
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_folding_a_model_in_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(CamClassifier("resnet18", 3).train())


def test_convolutions_cast_once_give_autocasts_bits() -> None:
    """`cast_convolutions` does once what bf16 autocast does to the weights on every call."""
    torch.manual_seed(0)
    model = _trained_looking(DeepLabV3Plus("resnet18", 4))
    policy = amp_policy(CPU, "bf16")
    x = torch.randn(2, 3, 40, 40).contiguous(memory_format=policy.memory_format)
    fold_batchnorm(model)
    model.to(memory_format=policy.memory_format)
    cast = copy.deepcopy(model)
    policy.cast_convolutions(cast)
    assert {p.dtype for m in cast.modules() if isinstance(m, nn.Conv2d) for p in m.parameters()
            } == {torch.bfloat16}  # fmt: skip
    with torch.inference_mode(), policy.autocast():
        assert torch.equal(cast(x), model(x))
    amp_policy(CPU, "off").cast_convolutions(cast := copy.deepcopy(model))  # fp32: nothing cast
    assert {p.dtype for p in cast.parameters()} == {torch.float32}


def test_prepare_folds_in_bf16_and_leaves_fp32_as_it_was() -> None:
    """fp32 keeps its BatchNorm layers: its outputs are bit for bit those of before."""
    torch.manual_seed(0)
    model = _trained_looking(CamClassifier("resnet18", 3))
    x = torch.randn(1, 3, 48, 48)
    try:
        with torch.inference_mode():
            expected = model(x)
            set_amp("off")
            fp32 = Predictor.prepare(copy.deepcopy(model), CPU)
            assert torch.equal(fp32(x), expected)
            set_amp("bf16")
            bf16 = Predictor.prepare(copy.deepcopy(model), CPU)
            got = bf16(x)
    finally:
        set_amp(AMP_DEFAULT)  # the process default
    assert any(isinstance(layer, nn.BatchNorm2d) for layer in fp32.model.modules())
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in bf16.model.modules())
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.05 * float(expected.abs().max()))

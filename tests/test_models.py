"""Backbone factory, CAM classifier and DeepLabv3+: one shared test base over all models."""

from __future__ import annotations

import itertools
import json
import math
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from wsss.errors import WsssError
from wsss.models import batchnorm_layers
from wsss.models.backbone import STAGES, build_backbone
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus

MODELS = {"classifier": CamClassifier, "deeplab": DeepLabV3Plus}
COMBOS = list(itertools.product(("resnet18", "resnet50"), (8, 16), MODELS))
COMBO_IDS = [f"{b}-os{s}-{k}" for b, s, k in COMBOS]
NUM_CLASSES = 5
HEIGHT, WIDTH = 65, 97  # odd on purpose
MULTIPLIERS = {
    "pretrained_weights": (1.0, 1.0),
    "pretrained_biases": (2.0, 0.0),
    "new_weights": (10.0, 1.0),
    "new_biases": (20.0, 0.0),
}


def build(kind: str, backbone: str, stride: int) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[kind](backbone, NUM_CLASSES, output_stride=stride)


def expected_shape(kind: str, stride: int) -> tuple[int, ...]:
    if kind == "deeplab":
        return (2, NUM_CLASSES, HEIGHT, WIDTH)
    # Every stride-2 layer of a ResNet rounds up, so the maps are ceil(size / stride).
    return (2, NUM_CLASSES, math.ceil(HEIGHT / stride), math.ceil(WIDTH / stride))


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("backbone", "stride", "kind"), COMBOS, ids=COMBO_IDS)
def test_forward_backward_at_odd_size(backbone, stride, kind, images) -> None:
    model = build(kind, backbone, stride).train()
    out = model(images)
    assert tuple(out.shape) == expected_shape(kind, stride)
    out.square().mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trainable)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("backbone", "stride", "kind"), COMBOS, ids=COMBO_IDS)
def test_save_load_and_rebuild_from_config(backbone, stride, kind, tmp_path) -> None:
    model = build(kind, backbone, stride).eval()
    with torch.no_grad():  # BN statistics must travel with the weights too
        for bn in batchnorm_layers(model):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)

    config = json.loads(json.dumps(model.config()))  # as stored in a checkpoint
    torch.manual_seed(123)
    clone = type(model).from_config(config).eval()
    assert clone.config() == model.config()
    assert str(clone) == str(model)
    assert not torch.equal(clone.classifier.weight, model.classifier.weight)
    clone.load_state_dict(torch.load(path, weights_only=True))
    for key, value in model.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value), key
    small = torch.randn(2, 3, 33, 49)  # the outputs, not just the tensors, must agree
    with torch.no_grad():
        assert torch.equal(clone(small), model(small))


@pytest.mark.parametrize("kind", MODELS)
def test_from_config_rejects_a_drifted_config(kind) -> None:
    config = build(kind, "resnet18", 16).config()
    del config["backbone"]
    config["dropout"] = 0.3
    with pytest.raises(WsssError, match="missing backbone; unknown dropout"):
        MODELS[kind].from_config(config)


def test_deeplab_doubles_aspp_rates_at_stride_8() -> None:
    model = DeepLabV3Plus("resnet18", 3, output_stride=8)
    rates = [branch[0].dilation[0] for branch in model.aspp.convs[1:4]]
    assert rates == [12, 24, 36]
    assert DeepLabV3Plus.from_config(model.config()).aspp.convs[1][0].dilation == (12, 12)


@pytest.mark.parametrize(
    ("kind", "freeze_bn"), [("classifier", False), ("classifier", True), ("deeplab", False)]
)
@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_param_groups_cover_trainable_params_once(kind, freeze_bn, backbone) -> None:
    if kind == "classifier":
        model = CamClassifier(backbone, NUM_CLASSES, freeze_bn=freeze_bn)
    else:
        model = DeepLabV3Plus(backbone, NUM_CLASSES)
    groups = model.param_groups()
    ids = [id(p) for group in groups for p in group["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    for group in groups:
        assert (group["lr_mult"], group["weight_decay_mult"]) == MULTIPLIERS[group["name"]]
    where = {id(p): group["name"] for group in groups for p in group["params"]}
    assert where[id(model.backbone.conv1.weight)] == "pretrained_weights"
    assert where[id(model.classifier.weight)] == "new_weights"
    if kind == "deeplab":
        assert where[id(model.classifier.bias)] == "new_biases"
        assert where[id(model.decoder[1].weight)] == "new_biases"  # BN scale of a new layer
    if freeze_bn:
        assert id(model.backbone.bn1.weight) not in where
        assert {group["name"] for group in groups} == {"pretrained_weights", "new_weights"}
    elif kind == "classifier":
        assert where[id(model.backbone.bn1.weight)] == "pretrained_biases"


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_freeze_bn_keeps_statistics_through_a_train_step(freeze_bn) -> None:
    torch.manual_seed(0)
    model = CamClassifier("resnet18", NUM_CLASSES, freeze_bn=freeze_bn)
    model.eval().train()  # train() must re-freeze after any mode switch
    bns = list(batchnorm_layers(model.backbone))
    before = [{k: v.clone() for k, v in bn.state_dict().items()} for bn in bns]
    classifier_before = model.classifier.weight.detach().clone()
    optimizer = torch.optim.SGD(
        [{"params": g["params"]} for g in model.param_groups()], lr=0.1, momentum=0.9
    )
    labels = torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 1]])
    loss = F.multilabel_soft_margin_loss(model.logits(model(torch.randn(2, 3, 64, 64))), labels)
    loss.backward()
    optimizer.step()
    unchanged = all(
        torch.equal(value, state[key])
        for bn, state in zip(bns, before, strict=True)
        for key, value in bn.state_dict().items()
    )
    assert unchanged == freeze_bn
    assert all(bn.training != freeze_bn for bn in bns)
    assert model.training
    assert not torch.equal(model.classifier.weight, classifier_before)


# ---------------------------------------------------------------- backbone factory


def test_bottleneck_stages_are_dilated_and_basic_ones_only_unstrided() -> None:
    r50 = build_backbone("resnet50", output_stride=8)
    assert r50.layer3[1].conv2.dilation == (2, 2)
    assert r50.layer4[1].conv2.dilation == (4, 4)
    r18 = build_backbone("resnet18", output_stride=16)
    assert r18.layer4[0].conv1.stride == (1, 1)
    assert r18.layer4[0].downsample[0].stride == (1, 1)
    assert r18.layer4[1].conv1.dilation == (1, 1)
    assert r18.layer3[0].conv1.stride == (2, 2)
    assert r18.channels == {"stem": 64, "stage1": 64, "stage2": 128, "stage3": 256,
                            "stage4": 512}  # fmt: skip
    assert r50.channels["stage4"] == 2048


@pytest.mark.parametrize("stride", [16, 8])
def test_undilated_bottleneck_stages_keep_stride_1_without_dilation(stride: int) -> None:
    """dilate=False: the reference's ResNet (issue #25 row 1); same tensors, same output size."""
    dilated = build_backbone("resnet50", output_stride=stride)
    plain = build_backbone("resnet50", output_stride=stride, dilate=False)
    kept = ["layer4"] if stride == 16 else ["layer3", "layer4"]
    for name in kept:
        layer = getattr(plain, name)
        assert layer[0].conv2.stride == (1, 1) and layer[0].downsample[0].stride == (1, 1)
        assert all(block.conv2.dilation == (1, 1) for block in layer)
        assert all(block.conv2.padding == (1, 1) for block in layer)
        assert getattr(dilated, name)[1].conv2.dilation != (1, 1)
    assert plain.layer2[0].conv2.stride == (2, 2)
    shapes = {k: v.shape for k, v in plain.state_dict().items()}
    assert shapes == {k: v.shape for k, v in dilated.state_dict().items()}
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        assert plain.eval()(x)["stage4"].shape == dilated.eval()(x)["stage4"].shape
    assert build_backbone("resnet18", dilate=False).layer4[0].conv1.stride == (1, 1)
    with pytest.raises(WsssError, match="timm dilates"):
        build_backbone("timm:resnest50d", dilate=False)


def test_deeplab_group_norm_head_and_align_corners() -> None:
    """The reference's head: GroupNorm (4 groups) in the ASPP and decoder, under the same
    names as the BatchNorm head less the running statistics; align_corners in both resizes."""
    torch.manual_seed(0)
    bn = DeepLabV3Plus("resnet18", 3)
    gn = DeepLabV3Plus("resnet18", 3, head_norm="gn", align_corners=True)
    head = [gn.aspp, gn.low_level, gn.decoder]
    assert not any(isinstance(m, nn.BatchNorm2d) for part in head for m in part.modules())
    norms = [m for part in head for m in part.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 9 and {m.num_groups for m in norms} == {4}
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    expected = {
        k for k in bn.state_dict() if k.startswith("backbone.") or not k.endswith(statistics)
    }
    assert set(gn.state_dict()) == expected
    assert gn.config()["head_norm"] == "gn" and gn.config()["align_corners"] is True
    gn.train()(torch.randn(1, 3, 33, 49)).sum().backward()  # one image: no BatchNorm in the head
    corners = DeepLabV3Plus("resnet18", 3, align_corners=True)
    corners.load_state_dict(bn.state_dict())
    x = torch.randn(1, 3, 33, 49)
    with torch.no_grad():
        assert not torch.allclose(corners.eval()(x), bn.eval()(x))
    with pytest.raises(WsssError, match="head norm must be one of bn|gn"):
        DeepLabV3Plus("resnet18", 3, head_norm="ln")


@pytest.mark.parametrize("kind", MODELS)
def test_configs_of_earlier_checkpoints_take_the_added_defaults(kind) -> None:
    """A checkpoint written before dilate / align_corners / head_norm existed rebuilds today's
    default network."""
    model = build(kind, "resnet18", 16)
    config = model.config()
    for key in type(model).ADDED_KEYS:
        del config[key]
    assert MODELS[kind].from_config(config).config() == model.config()


@pytest.fixture
def resnet18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return torchvision.models.resnet18(weights=None).state_dict()


def assert_loaded(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = backbone.state_dict()
    assert set(own) == {k for k in state if not k.startswith("fc.")}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("wrapping", ["plain", "state_dict", "model", "module-prefix"])
def test_local_weights_file_is_loaded(wrapping, resnet18_state, tmp_path) -> None:
    payload = {
        "plain": resnet18_state,
        "state_dict": {"state_dict": resnet18_state, "epoch": 3},
        "model": {"model": resnet18_state},
        "module-prefix": {f"module.{k}": v for k, v in resnet18_state.items()},
    }[wrapping]
    path = tmp_path / "r18.pth"
    torch.save(payload, path)
    assert_loaded(build_backbone("resnet18", 8, pretrained=str(path)), resnet18_state)


def test_old_files_without_num_batches_tracked_load(resnet18_state, tmp_path) -> None:
    state = {k: v for k, v in resnet18_state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    backbone = build_backbone("resnet18", pretrained=str(path))
    assert torch.equal(backbone.bn1.running_var, state["bn1.running_var"])


def corrupt(state: dict, how: str) -> object:
    state = dict(state)
    if how == "shape":
        state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    elif how == "missing":
        del state["layer2.0.conv1.weight"]
    elif how == "unexpected":
        state["head.weight"] = torch.zeros(2)
    elif how == "not-a-state-dict":
        return [1, 2, 3]
    return state


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("shape", r"1 shape mismatches \(conv1.weight \(64, 3, 3, 3\) vs \(64, 3, 7, 7\)\)"),
        ("missing", r"1 missing keys \(layer2.0.conv1.weight\)"),
        ("unexpected", r"1 unexpected keys \(head.weight\)"),
        ("not-a-state-dict", "not a state_dict"),
        ("garbage", "not a readable weights file"),
        ("absent", "weights file not found"),
    ],
)
def test_bad_weights_files_are_one_line_errors(how, message, resnet18_state, tmp_path) -> None:
    path = tmp_path / "weights.pth"
    if how == "garbage":
        path.write_bytes(b"\x80\x02 definitely not a checkpoint")
    elif how != "absent":
        torch.save(corrupt(resnet18_state, how), path)
    with pytest.raises(WsssError, match=message) as error:
        build_backbone("resnet18", pretrained=str(path))
    assert str(error.value).startswith(str(path))
    assert "\n" not in str(error.value)


def test_weights_of_another_architecture_are_refused(resnet18_state, tmp_path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    with pytest.raises(WsssError, match=r"r18.pth: .*missing keys.*shape mismatches"):
        build_backbone("resnet50", pretrained=str(path))


def test_safetensors_without_the_package_says_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"{}")
    with pytest.raises(WsssError, match="pip install safetensors"):
        build_backbone("resnet18", pretrained=str(path))


def test_imagenet_weights_come_through_the_torch_cache(resnet18_state, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    urls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        urls.append(url)
        torch.save(resnet18_state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    assert_loaded(build_backbone("resnet18", pretrained="imagenet"), resnet18_state)
    assert urls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert (tmp_path / "hub" / "checkpoints" / Path(urls[0]).name).is_file()


def test_imagenet_without_internet_is_a_one_line_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WsssError, match="could not get the ImageNet weights") as error:
        build_backbone("resnet50", pretrained="imagenet")
    message = str(error.value)
    assert "\n" not in message
    assert "resnet50-" in message and "local path" in message


def test_timm_backbones_without_timm_say_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(WsssError, match=r"pip install 'wsss\[timm\]'"):
        build_backbone("timm:resnest101e")


@pytest.mark.parametrize("stride", [16, 8])
def test_timm_backbone_gives_four_stages_at_the_output_stride(stride) -> None:
    pytest.importorskip("timm")
    backbone = build_backbone("timm:resnest14d", stride, "none").eval()
    with torch.no_grad():
        stages = backbone(torch.randn(1, 3, 64, 64))
    assert [stages[s].shape[1] for s in STAGES] == [backbone.channels[s] for s in STAGES]
    assert stages["stage1"].shape[-1] == 64 // 4
    assert stages["stage4"].shape[-1] == 64 // stride


def test_timm_backbone_loads_a_local_weights_file(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    source = timm.create_model("resnest14d")
    path = tmp_path / "resnest14d.pth"
    torch.save(source.state_dict(), path)
    loaded = build_backbone("timm:resnest14d", 16, str(path)).body.state_dict()
    # Every backbone tensor comes from the file; only the classifier head is left out.
    assert set(loaded) == set(source.state_dict()) - {"fc.weight", "fc.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, source.state_dict()[key]), key
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WsssError, match="weights do not fit the backbone") as error:
        build_backbone("timm:resnest14d", 16, str(tmp_path / "other.pth"))
    assert str(tmp_path / "other.pth") in str(error.value) and "\n" not in str(error.value)


def test_cam_classifier_on_a_timm_backbone() -> None:
    pytest.importorskip("timm")
    model = CamClassifier("timm:resnest14d", 5, 16, "none")
    maps = model(torch.randn(2, 3, 64, 64))
    assert maps.shape == (2, 5, 4, 4)


@pytest.mark.parametrize(
    ("name", "stride", "message"),
    [("resnet42", 16, "unknown backbone 'resnet42'"), ("resnet18", 32, "output stride")],
)
def test_bad_backbone_options(name, stride, message) -> None:
    with pytest.raises(WsssError, match=message):
        build_backbone(name, output_stride=stride)

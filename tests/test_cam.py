"""Multi-scale + flip inference: hand-computed merges, class selection, sizes, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_tinyvoc import make_tiny_voc
from PIL import Image
from torch import nn

from wsss.configs.inference import MakeCamConfig
from wsss.data.loader import image_loader, size_grouped_batches
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.inference import Predictor, TtaConfig, make_cams, segment_probs
from wsss.option import options

EPS = 1e-5  # the shared normaliser's epsilon


class PoolRamp(nn.Module):
    """Class maps at stride 4: the pooled input channels times a left-to-right ramp.

    The ramp makes the map depend on position, so a flipped view that is not flipped back
    gives a different sum.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, 4, ceil_mode=True)
        ramp = torch.linspace(0.5, 2.0, pooled.shape[-1])
        return pooled * ramp


class ScaleAware(nn.Module):
    """Maps of a fixed 8 x 12 size: P + s * Q with s the input scale (from the input height)."""

    def __init__(self, base_height: int) -> None:
        super().__init__()
        self.base_height = base_height
        generator = torch.Generator().manual_seed(0)
        self.p = torch.rand(3, 8, 12, generator=generator)
        self.q = torch.rand(3, 8, 12, generator=generator)
        self.p[2] = -1.0  # class 2: negative everywhere, a dead map
        self.q[2] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.shape[-2] / self.base_height
        return (self.p + scale * self.q).expand(x.shape[0], -1, -1, -1)


def _normalised(raw: torch.Tensor) -> np.ndarray:
    raw = raw.clamp_min(0)
    return (raw / (raw.amax(dim=(-2, -1), keepdim=True) + EPS)).numpy()


def test_flip_pair_is_flipped_back_and_summed() -> None:
    x = torch.randn(1, 3, 32, 48)
    (record,) = make_cams(PoolRamp(), x, [[0, 1, 2]], TtaConfig(scales=(1.0,), flip=True))
    pooled = F.avg_pool2d(x, 4)[0]
    ramp = torch.linspace(0.5, 2.0, 12)
    # relu(pool(x) * r) + flip(relu(pool(flip x) * r)) = relu(pool(x)) * (r + flip(r))
    expected = pooled.clamp_min(0) * (ramp + ramp.flip(0))
    np.testing.assert_allclose(record.cam, _normalised(expected), rtol=1e-5, atol=1e-6)
    # hr_cam: the same sum brought to the image size (32 x 48 is a multiple of 16: no crop)
    hr = F.interpolate(expected[None], size=(32, 48), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(record.hr_cam, _normalised(hr), rtol=1e-5, atol=1e-6)


def test_without_flip_the_ramp_stays() -> None:
    x = torch.randn(1, 3, 32, 48)
    (record,) = make_cams(PoolRamp(), x, [[0]], TtaConfig(scales=(1.0,), flip=False))
    expected = F.avg_pool2d(x, 4)[0, :1].clamp_min(0) * torch.linspace(0.5, 2.0, 12)
    np.testing.assert_allclose(record.cam, _normalised(expected), rtol=1e-5, atol=1e-6)


def test_scales_are_summed_and_dead_maps_stay_zero() -> None:
    model = ScaleAware(base_height=32)
    tta = TtaConfig(scales=(0.5, 1.0, 2.0), flip=True)
    (record,) = make_cams(model, torch.zeros(1, 3, 32, 48), [[2, 0]], tta)
    # sum over 3 scales of relu(P + sQ) = 3P + 3.5Q (P, Q >= 0), plus its flipped-back mirror
    summed = 3 * model.p + 3.5 * model.q
    expected = summed + summed.flip(-1)
    np.testing.assert_array_equal(record.keys, [0, 1, 3])  # sorted, background first
    np.testing.assert_allclose(record.cam[0], _normalised(expected[0]), rtol=1e-5, atol=1e-6)
    assert np.all(record.cam[1] == 0) and np.all(record.hr_cam[1] == 0)  # relu(-1) = 0
    assert record.hr_cam[0].max() == pytest.approx(1.0, abs=1e-4)


def test_scale_merging_matches_the_written_rule() -> None:
    """Each scale: resize the image, run, relu + flip back, resize to the common size, sum."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 36, 52)
    height, width = 36, 52
    strided, up = (9, 13), (48, 64)  # ceil(H/4), ceil(H/16)*16
    expected_st = torch.zeros(3, *strided)
    expected_hr = torch.zeros(3, height, width)
    for scale in (0.5, 1.5):
        size = (round(height * scale), round(width * scale))
        xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        out = PoolRamp()(xs)[0].clamp_min(0) + PoolRamp()(xs.flip(-1))[0].clamp_min(0).flip(-1)
        expected_st += F.interpolate(out[None], size=strided, mode="bilinear", align_corners=False)[
            0
        ]
        hr = F.interpolate(out[None], size=up, mode="bilinear", align_corners=False)[0]
        expected_hr += hr[:, :height, :width]
    (record,) = make_cams(PoolRamp(), x, [[0, 1, 2]], TtaConfig(scales=(0.5, 1.5)))
    np.testing.assert_allclose(record.cam, _normalised(expected_st), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(record.hr_cam, _normalised(expected_hr), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(37, 53), (48, 48), (1, 7)])
def test_strided_size_rule(height: int, width: int) -> None:
    (record,) = make_cams(PoolRamp(), torch.randn(1, 3, height, width), [[1]], TtaConfig())
    assert record.cam.shape == (1, -(-height // 4), -(-width // 4))
    assert record.hr_cam.shape == (1, height, width)


def test_only_labelled_classes_and_unlabelled_images() -> None:
    x = torch.rand(2, 3, 32, 32) + 0.1  # positive input: every class map is alive
    records = make_cams(PoolRamp(), x, [[2], []], TtaConfig(scales=(1.0,)))
    np.testing.assert_array_equal(records[0].keys, [0, 3])
    assert records[0].hr_cam.shape == (1, 32, 32)
    assert records[0].hr_cam.max() == pytest.approx(1.0, abs=1e-4)
    assert records[0].cam.max() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_array_equal(records[1].keys, [0])
    assert records[1].hr_cam.shape == (0, 32, 32) and records[1].cam.shape == (0, 8, 8)


def test_batched_equals_per_image() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, stride=2, padding=1),
    ).eval()
    images = torch.randn(3, 3, 30, 42)
    classes = [[0, 3], [1], [2, 3]]
    tta = TtaConfig()
    batched = make_cams(model, images, classes, tta)
    for i in range(3):
        (single,) = make_cams(model, images[i : i + 1], [classes[i]], tta)
        np.testing.assert_array_equal(single.keys, batched[i].keys)
        np.testing.assert_allclose(single.cam, batched[i].cam, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(single.hr_cam, batched[i].hr_cam, rtol=1e-5, atol=1e-6)


def test_segment_probs_average_softmax_over_flips() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 20, 28)
    probs = segment_probs(model, x, TtaConfig(scales=(1.0,), flip=True))
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1).flip(-1)) / 2
    torch.testing.assert_close(probs, expected)
    multi = segment_probs(model, x, TtaConfig(scales=(0.5, 1.0, 1.5)))
    assert multi.shape == (2, 4, 20, 28)
    torch.testing.assert_close(multi.sum(1), torch.ones(2, 20, 28))


def test_predictor_on_cpu_keeps_float32() -> None:
    predictor = Predictor.prepare(nn.Conv2d(3, 2, 1), torch.device("cpu"))
    assert not predictor.model.training
    assert predictor(torch.randn(1, 3, 4, 4)).dtype == torch.float32


def test_size_grouped_batches() -> None:
    sizes = [(2, 2), (3, 3), (2, 2), (3, 3), (2, 2)]
    assert size_grouped_batches(sizes, 2) == [[0, 2], [4], [1, 3]]
    assert size_grouped_batches(sizes, 1) == [[i] for i in (0, 2, 4, 1, 3)]


def test_image_loader_batches_same_size_images(tmp_path: Path) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=6, size=32)
    for image_id in ("img_001", "img_004"):
        path = root / "JPEGImages" / f"{image_id}.jpg"
        Image.open(path).resize((40, 24)).save(path)
    voc = VocDataset.open(root)
    ids = voc.split_ids("train")
    batches = list(image_loader(voc, ids, 4, 0, torch.device("cpu"), raw=True))
    assert sorted(i for batch in batches for i in batch["index"]) == list(range(6))
    for batch in batches:
        assert batch["image"].shape[0] == len(batch["index"]) == len(batch["raw"])
        assert batch["raw"][0].shape[:2] == tuple(batch["image"].shape[-2:])
    assert sorted(tuple(b["image"].shape[-2:]) for b in batches) == [(24, 40), (32, 32)]


SCALES = {o.name: o for o in options(MakeCamConfig)}["scales"]


@pytest.mark.parametrize("text", ["0,1", "-0.5", "a,b", ""])
def test_bad_scales(text: str) -> None:
    """--scales and make_cam.scales parse alike; the stage's TtaConfig refuses the rest."""
    with pytest.raises(WsssError, match="--scales"):
        TtaConfig(scales=SCALES.parse(text))


def test_parse_scales() -> None:
    assert TtaConfig(scales=SCALES.parse("0.5, 1.0,2")).scales == (0.5, 1.0, 2.0)


def test_loader_images_normalised_on_the_device_equal_normalize_bit_for_bit() -> None:
    from wsss.data.transforms import normalize, normalize_uint8, to_chw_uint8

    rng = np.random.default_rng(0)
    image = np.stack([rng.permutation(256).reshape(16, 16) for _ in range(3)], -1)
    image = image.astype(np.uint8)  # every value in every channel, at different places
    batch = torch.stack([to_chw_uint8(image), to_chw_uint8(image[::-1])])
    assert batch.dtype == torch.uint8
    on_device = normalize_uint8(batch)
    assert on_device.dtype == torch.float32
    assert torch.equal(on_device[0], normalize(image))
    assert torch.equal(on_device[1], normalize(np.ascontiguousarray(image[::-1])))

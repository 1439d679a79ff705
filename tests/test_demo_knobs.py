"""The demo generator's knobs: each changes what it claims, and only through its arguments.

(The defaults reproducing the original bytes is pinned in test_demo_data.py.)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cli.main import main
from wsss.data.classes import read_class_list
from wsss.data.demo import (
    DEMO_CLASSES,
    MAX_CLASSES,
    DemoKnobs,
    body_look,
    class_styles,
    generate_demo,
    render_sample,
    sample_rng,
)
from wsss.data.palette import IGNORE, read_label_png
from wsss.errors import WsssError

SIZE = 64
SEED = 5


def renders(n: int, **knobs) -> list:
    chosen = DemoKnobs(**knobs)
    return [render_sample(SEED, i, SIZE, knobs=chosen) for i in range(n)]


def class_colour_spread(samples: list, classes: int = 5) -> float:
    """How far the per-class mean colour of body pixels (off the part) lies from their mean."""
    means = []
    for value in range(1, classes + 1):
        pixels = [s.image[(s.label == value) & (s.parts == 0)] for s in samples]
        means.append(np.concatenate(pixels).astype(float).mean(axis=0))
    means = np.array(means)
    return float(np.linalg.norm(means - means.mean(axis=0), axis=1).max())


def textured_background(samples: list) -> float:
    """Share of background pixels (away from objects) on strong local colour edges."""
    shares = []
    for s in samples:
        grey = s.image.astype(float).mean(axis=-1)
        edges = np.hypot(*np.gradient(grey)) > 6
        background = ndimage.binary_erosion(s.label == 0, iterations=3)
        shares.append(edges[background].mean())
    return float(np.mean(shares))


def test_no_body_evidence_draws_every_class_body_alike() -> None:
    styles = class_styles(5)
    looks = [body_look(sample_rng(1, 2), style, 0.0) for style in styles]
    assert all(look == looks[0] for look in looks)
    # ... while at the default every class draws from its own statistics.
    looks = [body_look(sample_rng(1, 2), style, 1.0) for style in styles]
    assert len({look[1] for look in looks}) == len(styles)


def test_body_evidence_sets_how_far_class_body_colours_lie_apart() -> None:
    none, default, strong = (
        class_colour_spread(renders(120, body_evidence=e)) for e in (0.0, 1.0, 3.0)
    )
    assert none < 0.6 * default
    assert strong > 1.2 * default


def test_more_distractors_more_body_like_texture_in_the_background() -> None:
    plain = {"clutter": 0.0, "noise": 0.0}
    shares = [textured_background(renders(30, distractors=d, **plain)) for d in (0, 2, 6)]
    assert shares[0] == 0.0
    assert shares[0] < shares[1] < shares[2]
    assert shares[2] > 2 * shares[1]


def test_clutter_adds_marks_and_waves_to_the_background() -> None:
    plain = {"distractors": 0, "noise": 0.0}
    shares = [textured_background(renders(30, clutter=c, **plain)) for c in (0.0, 1.0, 3.0)]
    assert shares[0] == 0.0 < shares[1] < shares[2]


def test_objects_per_image_and_their_size() -> None:
    single = renders(20, max_objects=1)
    assert all(len(s.objects) == 1 for s in single)
    many = renders(20, min_objects=5, max_objects=6, object_scale=0.8)
    counts = [len(s.objects) for s in many]
    assert max(counts) <= 6 and np.mean(counts) >= 4.5
    share = [np.mean([(s.label > 0).mean() for s in renders(20, max_objects=1, object_scale=k)])
             for k in (0.5, 1.0)]  # fmt: skip
    assert share[0] < 0.7 * share[1]


def test_part_scale_sets_the_parts_share_of_its_object() -> None:
    def part_share(scale: float) -> float:
        samples = renders(20, max_objects=1, part_scale=scale)
        return float(np.mean([(s.parts > 0).sum() / (s.label > 0).sum() for s in samples]))

    assert 1.6 < part_share(2.0) / part_share(1.0) < 2.4


def test_shape_variety_zero_draws_round_bodies() -> None:
    def aspects(variety: float) -> np.ndarray:
        boxes = [o.bbox for s in renders(30, max_objects=1, shape_variety=variety)
                 for o in s.objects if not o.truncated]  # fmt: skip
        return np.array([(x1 - x0 + 1) / (y1 - y0 + 1) for x0, y0, x1, y1 in boxes])

    round_, varied = aspects(0.0), aspects(2.0)
    assert np.all(np.abs(round_ - 1) < 0.15)
    assert np.abs(np.log(varied)).mean() > 2 * np.abs(np.log(round_)).mean()


def test_noise_is_the_only_difference_it_makes() -> None:
    quiet = render_sample(SEED, 0, SIZE, knobs=DemoKnobs(noise=0.0))
    loud = render_sample(SEED, 0, SIZE, knobs=DemoKnobs(noise=0.1))
    assert np.array_equal(quiet.label, loud.label)
    diff = (loud.image.astype(float) - quiet.image.astype(float)) / 255
    assert 0.07 < diff.std() < 0.11


def test_more_classes_in_the_class_list_the_masks_and_the_annotations(tmp_path: Path) -> None:
    root = tmp_path / "twelve"
    summary = generate_demo(root, n_train=40, n_val=0, size=SIZE, seed=SEED, classes=12,
                            progress=False)  # fmt: skip
    names = read_class_list(root / "classes.txt")
    assert len(names) == 12 and names[:5] == DEMO_CLASSES and summary.classes == names
    top = 0
    for image_id in (root / "ImageSets/Segmentation/train.txt").read_text().split():
        label = read_label_png(root / "SegmentationClass" / f"{image_id}.png")
        values = set(np.unique(label).tolist()) - {0, IGNORE}
        top = max(top, *values)
        xml = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
        assert {o.findtext("name") for o in xml.iter("object")} == {names[v - 1] for v in values}
    assert 5 < top <= 12


def test_every_class_has_its_own_part_symbol() -> None:
    styles = class_styles(MAX_CLASSES)
    symbols = {(s.part_shape, s.part_colour, s.part_accent) for s in styles}
    assert len(symbols) == MAX_CLASSES
    assert class_styles(5) == class_styles(MAX_CLASSES)[:5]


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"classes": MAX_CLASSES + 1}, "classes"),
        ({"min_objects": 3, "max_objects": 2}, "exceeds max_objects"),
        ({"part_scale": 0.0}, "part_scale"),
    ],
)
def test_bad_knobs_are_one_line_errors(tmp_path: Path, knobs: dict, message: str) -> None:
    with pytest.raises(WsssError, match=message):
        generate_demo(tmp_path / "bad", progress=False, **knobs)
    assert not (tmp_path / "bad").exists()


def test_cli_passes_every_knob(tmp_path: Path) -> None:
    knobs = {"body_evidence": 0.3, "part_scale": 1.5, "clutter": 2.0, "distractors": 4,
             "min_objects": 2, "max_objects": 4, "object_scale": 0.7, "classes": 7,
             "shape_variety": 1.5, "noise": 0.05}  # fmt: skip
    options = [item for key, value in knobs.items()
               for item in (f"--{key.replace('_', '-')}", str(value))]  # fmt: skip
    sizes = ["--train", "6", "--val", "2", "--size", "48", "--seed", "9"]
    assert main(["demo-data", str(tmp_path / "cli"), *sizes, *options]) == 0
    direct = tmp_path / "direct"
    generate_demo(direct, n_train=6, n_val=2, size=48, seed=9, progress=False, **knobs)
    for path in sorted(direct.rglob("*")):
        if path.is_file():
            name = path.relative_to(direct)
            assert (tmp_path / "cli" / name).read_bytes() == path.read_bytes(), name
    assert main(["demo-data", str(tmp_path / "bad"), "--classes", "99"]) == 2

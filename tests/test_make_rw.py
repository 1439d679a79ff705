"""`wsss make-rw` on a tiny dataset: files, consumers, the walk, the commands (train-aff's own
tests are in test_train_aff.py; resume and shards in test_stage_contract.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from conftest import CLASSES, RW_SIZE
from typer.testing import CliRunner

from cli.commands import register
from wsss.cam_math import normalize_cams, strided_size
from wsss.camfile import CamRecord, load_cam_file
from wsss.data.palette import read_label_png
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.option import options
from wsss.pseudo import threshold_indices
from wsss.stages.make_pseudo import MakePseudoConfig
from wsss.stages.make_pseudo import run as make_pseudo
from wsss.stages.make_rw import (
    MakeRwConfig,
    RwParams,
    refine_record,
    refined_records,
    run,
    scaled_exp_times,
    walk_batch,
)

SIZE = RW_SIZE


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(rw_setup: dict[str, Path], out: Path, **changes) -> MakeRwConfig:
    base = MakeRwConfig(
        checkpoint=rw_setup["checkpoint"],
        cams=rw_setup["cams"],
        data=rw_setup["root"],
        split="train",
        out=out,
        exp_times=4,
        device="cpu",
        loader_workers=0,
    )
    return replace(base, **changes)


def test_refined_files_keep_the_cam_schema(rw_setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rw"
    result = run(_config(rw_setup, out, overlays=1))
    voc = VocDataset.open(rw_setup["root"])
    ids = voc.split_ids("train")
    assert result.written == result.files == len(ids)
    for image_id in ids:
        source = load_cam_file(rw_setup["cams"] / f"{image_id}.npy")
        record = load_cam_file(out / f"{image_id}.npy", voc.num_classes, (SIZE, SIZE))
        np.testing.assert_array_equal(record.keys, source.keys)
        assert record.cam.shape == source.cam.shape and record.hr_cam.shape == source.hr_cam.shape
        for maps in (record.cam, record.hr_cam):
            peaks = maps.reshape(len(maps), -1).max(axis=1)
            np.testing.assert_allclose(peaks, 1.0, atol=1e-3)  # normalised per class
            assert maps.min() >= 0.0
        assert not np.allclose(record.cam, normalize_cams(torch.from_numpy(source.cam)).numpy())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "make-rw" and manifest["complete"] is True
    assert manifest["params"]["exp_times"] == 4 and manifest["params"]["background"] == "threshold"
    assert [p.stem for p in (out / "overlays").glob("*.png")] == ids[:1]


def test_make_pseudo_reads_the_refined_maps(rw_setup: dict[str, Path], tmp_path: Path) -> None:
    out = run(_config(rw_setup, tmp_path / "rw")).out
    labels = make_pseudo(
        MakePseudoConfig(
            cams=out,
            data=rw_setup["root"],
            split="train",
            out=tmp_path / "pseudo",
            threshold=0.3,
            crf=False,
            crf_workers=1,
            score=True,
        )  # fmt: skip
    )
    assert labels.files == 6 and labels.scores is not None
    image_id = VocDataset.open(rw_setup["root"]).split_ids("train")[0]
    record = load_cam_file(out / f"{image_id}.npy")
    expected = record.keys[threshold_indices(record.hr_cam, 0.3)]
    np.testing.assert_array_equal(read_label_png(tmp_path / "pseudo" / f"{image_id}.png"), expected)


def test_batched_walks_write_what_one_image_at_a_time_writes(
    rw_setup: dict[str, Path], tmp_path: Path
) -> None:
    one = run(_config(rw_setup, tmp_path / "one", batch_size=1)).out
    four = run(_config(rw_setup, tmp_path / "four", batch_size=4)).out  # batches of 4 and 2
    assert json.loads((four / "manifest.json").read_text())["complete"] is True
    for path in sorted(one.glob("img_*.npy")):
        a, b = load_cam_file(path), load_cam_file(four / path.name)
        np.testing.assert_array_equal(a.keys, b.keys)
        # Only the network's batched forward may round differently; the walk is the same.
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-4)
        np.testing.assert_allclose(a.hr_cam, b.hr_cam, atol=1e-4)


@pytest.mark.parametrize("bg_power", [None, 2.0])
def test_a_batch_of_records_is_refined_as_each_alone(bg_power: float | None) -> None:
    """Records with different numbers of classes (none too) share one walk, padded."""
    records = [_record(2, (6, 9), 0), _record(0, (6, 9), 1), _record(3, (6, 9), 2)]
    boundary = torch.rand(3, 6, 9, generator=torch.Generator().manual_seed(0))
    params = RwParams(radius=3, exp_times=4, bg_power=bg_power)
    maps = [m.numpy() for m in walk_batch(records, boundary, params)]
    for i, (record, batched) in enumerate(
        zip(records, refined_records(records, *maps), strict=True)
    ):
        alone = refine_record(record, boundary[i], params)
        np.testing.assert_array_equal(batched.keys, record.keys)
        np.testing.assert_array_equal(batched.cam, alone.cam)
        np.testing.assert_array_equal(batched.hr_cam, alone.hr_cam)
    assert refined_records(records, *maps)[1] is records[1]  # no classes: kept as it is


def test_missing_cam_file_fails_before_any_work(rw_setup: dict[str, Path], tmp_path: Path) -> None:
    cams = tmp_path / "cams"
    cams.mkdir()
    for path in sorted(rw_setup["cams"].glob("*.npy"))[1:]:
        (cams / path.name).write_bytes(path.read_bytes())
    with pytest.raises(WsssError, match="img_000.npy: CAM file .*not found"):
        run(_config(rw_setup, tmp_path / "rw", cams=cams))
    assert not list((tmp_path / "rw").glob("*.npy"))


# -- the refinement of one record ----------------------------------------------------------------


def _record(classes: int = 2, size: tuple[int, int] = (3, 4), seed: int = 0) -> CamRecord:
    rng = np.random.default_rng(seed)
    cam = rng.random((classes, *size), dtype=np.float32)
    hr = rng.random((classes, size[0] * 4 - 2, size[1] * 4 - 3), dtype=np.float32)
    return CamRecord(keys=np.arange(classes + 1), cam=cam, hr_cam=hr)


def test_a_boundary_keeps_each_side_to_itself() -> None:
    record = _record(classes=1, size=(6, 9))
    record.cam[:] = 0.0
    record.cam[0, 2, 1] = 1.0  # one seed on the left
    boundary = torch.zeros(6, 9)
    boundary[:, 4] = 1.0  # a wall at column 4
    refined = refine_record(record, boundary, RwParams(radius=3, exp_times=8))
    left, wall, right = refined.cam[0, :, :4], refined.cam[0, :, 4], refined.cam[0, :, 5:]
    assert left.min() > 0.99 and (wall == 0).all() and (right == 0).all()
    assert refined.hr_cam.shape == (1, 22, 33)  # x4 = 24 x 36, cropped to the image
    # no boundary at all: the seed reaches the whole image
    everywhere = refine_record(record, torch.zeros(6, 9), RwParams(radius=3, exp_times=8))
    assert everywhere.cam.min() > 0.99


def test_seeds_on_a_boundary_are_dropped() -> None:
    record = _record(classes=2, size=(5, 5))
    boundary = torch.zeros(5, 5)
    boundary[2, 2] = 1.0
    moved = record.cam.copy()
    moved[:, 2, 2] = 100.0  # a huge seed on the boundary pixel changes nothing
    params = RwParams(radius=2, exp_times=3)
    a = refine_record(record, boundary, params)
    b = refine_record(CamRecord(record.keys, moved, record.hr_cam), boundary, params)
    np.testing.assert_allclose(a.cam, b.cam, rtol=1e-5)
    assert (a.cam[:, 2, 2] == 0).all()


def test_propagated_background_at_threshold_half_is_the_argmax() -> None:
    record = _record(classes=3)
    # boundary 0.999 everywhere: affinities 0.001^10 (no walk) and every map scaled alike
    nearly_walls = torch.full((3, 4), 0.999)
    refined = refine_record(record, nearly_walls, RwParams(radius=3, bg_power=2.0))
    background = (1 - record.cam.max(axis=0, keepdims=True)) ** 2
    argmax = np.concatenate([background, record.cam]).argmax(axis=0)
    np.testing.assert_array_equal(threshold_indices(refined.cam, 0.5), argmax)
    share = record.cam / (record.cam + background)
    np.testing.assert_allclose(refined.cam, share, rtol=1e-4)


@pytest.mark.parametrize(
    ("size", "exp_times"),
    [((375, 500), 8), ((500, 333), 8), ((128, 128), 4), ((1000, 750), 10), ((250, 200), 6),
     ((16, 16), 0), ((100_000, 10), 16)],
)  # fmt: skip
def test_walk_length_scales_with_the_image_area(size: tuple[int, int], exp_times: int) -> None:
    assert scaled_exp_times(size) == exp_times
    assert RwParams().steps(size) == 2**exp_times  # the default is the scaled length
    assert RwParams(exp_times=3).steps(size) == 8  # a given length is kept


def test_auto_walk_spreads_as_far_relative_to_the_image() -> None:
    """One seed in a plain image: the auto walk covers about the same share of a small and a
    large image, while the reference's fixed 2^8 steps flood the small one."""

    def spread(size: int, params: RwParams) -> float:
        grid = strided_size(size, size)
        cam = np.zeros((1, *grid), dtype=np.float32)
        cam[0, grid[0] // 2, grid[1] // 2] = 1.0
        record = CamRecord(np.array([0, 1]), cam, np.zeros((1, size, size), np.float32))
        walked = refine_record(record, torch.zeros(grid), params).cam[0]
        return float((walked > 0.75).mean())

    small, large = spread(128, RwParams()), spread(512, RwParams())
    assert 0.05 < small < 0.5 and 0.5 < small / large < 2
    assert spread(128, RwParams(exp_times=8)) == 1.0  # flat: the seed is everywhere


def test_exp_times_option() -> None:
    opt = {o.name: o for o in options(MakeRwConfig)}["exp_times"]
    assert opt.parse("auto") == "auto" and opt.parse("6") == 6
    with pytest.raises(WsssError, match="--exp-times: 'six' is not a valid int or auto or none"):
        opt.parse("six")


def test_record_without_classes_is_kept() -> None:
    record = _record(classes=0)
    refined = refine_record(record, torch.zeros(3, 4), RwParams())
    assert refined.cam.shape == (0, 3, 4) and refined.keys.tolist() == [0]


def test_global_normalisation_keeps_the_classes_relative_strength() -> None:
    """--rw-normalise global (the official code): one maximum per image over all classes;
    the default divides each class by its own. With one class the two agree."""
    record = _record(classes=2, size=(6, 9))
    record.cam[1] *= 0.25  # a weak second class
    boundary = torch.zeros(6, 9)
    per_class = refine_record(record, boundary, RwParams(exp_times=2))
    shared = refine_record(record, boundary, RwParams(exp_times=2, normalise="global"))
    for maps in (shared.cam, shared.hr_cam):
        assert maps.max() == pytest.approx(1.0, abs=1e-4) and maps.min() >= 0.0
        assert maps[1].max() < 0.5  # still weak beside the strong class
    ratio = per_class.cam[1].max() / shared.cam[1].max()
    np.testing.assert_allclose(shared.cam[1] * ratio, per_class.cam[1], rtol=1e-4, atol=1e-6)
    one = CamRecord(record.keys[:2], record.cam[:1], record.hr_cam[:1])
    a = refine_record(one, boundary, RwParams(exp_times=2))
    b = refine_record(one, boundary, RwParams(exp_times=2, normalise="global"))
    np.testing.assert_allclose(a.hr_cam, b.hr_cam, atol=1e-6)


def test_rw_normalise_is_recorded_and_part_of_the_signature(
    rw_setup: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "rw"
    run(_config(rw_setup, out, rw_normalise="global"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["rw_normalise"] == "global"
    with pytest.raises(WsssError, match="rw_normalise=global"):
        run(_config(rw_setup, out))  # the default would mix two kinds of maps


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"beta": 0.0}, "--beta"), ({"exp_times": 20}, "--exp-times"), ({"bg_power": -1.0}, "--bg"),
     ({"normalise": "max"}, "--rw-normalise"),
     ({"normalise": "global", "bg_power": 2.0}, "--rw-normalise global")],
)  # fmt: skip
def test_bad_walk_parameters(changes: dict, message: str) -> None:
    with pytest.raises(WsssError, match=message):
        RwParams(**changes)


def test_reference_head_walks_on_the_boundary_of_the_padded_image(
    rw_setup: dict[str, Path], tmp_path: Path
) -> None:
    """A checkpoint with the reference head (train-aff --aff-head reference): make-rw takes
    the boundary map on the image and its mirror, each zero-padded to 512 at the right and
    bottom (as the reference's get_edge), not on the image as it is."""
    from helpers_tinyvoc import save_model

    from wsss.data.transforms import normalize
    from wsss.models.affinity import AffinityNet

    torch.manual_seed(0)
    model = AffinityNet("resnet18", head="reference").eval()
    checkpoint = save_model(tmp_path / "aff.pt", model, CLASSES)
    config = _config(rw_setup, tmp_path / "rw", checkpoint=checkpoint, split="val", amp="off")
    out = run(config).out  # fp32, as the oracle below computes
    voc = VocDataset.open(rw_setup["root"])
    image_id = voc.split_ids("val")[0]
    image = normalize(voc.load_image(image_id))[None]
    h, w = strided_size(SIZE, SIZE)

    def boundary(pad: int) -> torch.Tensor:  # the oracle: pad by hand, crop, merge the flip
        views = torch.cat([image, image.flip(-1)])
        padded = torch.zeros(2, 3, SIZE + pad, SIZE + pad)
        padded[..., :SIZE, :SIZE] = views
        with torch.no_grad():
            logits = model(padded)[:, 0, :h, :w]
        return torch.sigmoid((logits[0] + logits[1].flip(-1)) / 2)

    source = load_cam_file(rw_setup["cams"] / f"{image_id}.npy")
    written = load_cam_file(out / f"{image_id}.npy")
    params = RwParams(exp_times=4)
    expected = refine_record(source, boundary(512 - SIZE), params)
    np.testing.assert_allclose(written.cam, expected.cam, atol=1e-5)
    unpadded = refine_record(source, boundary(0), params)
    assert np.abs(written.cam - unpadded.cam).max() > 1e-3  # the padding matters


# -- the commands --------------------------------------------------------------------------------


def test_commands(rw_setup: dict[str, Path], tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    usage = runner.invoke(app, ["train-aff", "--help"])
    assert usage.exit_code == 0 and "--labels" in usage.output and "--radius" in usage.output
    args = ["make-rw", "--checkpoint", str(rw_setup["checkpoint"]), "--cams", str(rw_setup["cams"])]
    args += ["--data", str(rw_setup["root"]), "--split", "val", "--out", str(tmp_path / "rw")]
    done = runner.invoke(app, [*args, "--exp-times", "2", "--bg-power", "4", "--workers", "0"])
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "rw" / "manifest.json").read_text())
    assert manifest["params"]["bg_power"] == 4.0 and manifest["params"]["split"] == "val"
    assert manifest["params"]["exp_times"] == 2
    assert len(list((tmp_path / "rw").glob("*.npy"))) == 3
    default = runner.invoke(app, [*args[:-1], str(tmp_path / "rw_auto"), "--workers", "0"])
    assert default.exit_code == 0, default.output
    manifest = json.loads((tmp_path / "rw_auto" / "manifest.json").read_text())
    assert manifest["params"]["exp_times"] == "auto"

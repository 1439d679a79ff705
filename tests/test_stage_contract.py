"""The contract every per-image stage keeps (make-cam, make-rw, make-pseudo, predict): a rerun
skips finished files and clears a killed run's temporaries, a torchrun shard writes its own
share, and resuming a folder with other settings is refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from helpers_tinyvoc import cams_from_mask, make_tiny_voc, stage_config

from wsss.data.voc import VocDataset
from wsss.errors import WsssError


@dataclass
class Stage:
    run: Callable[[Any], Any]
    config: Callable[[Path], Any]  # the stage's config writing to a given folder
    data: Path
    suffix: str
    other_settings: dict[str, Any]  # a change of a setting the folder's files depend on
    refusal: str  # what the refusal names
    ids: list[str] | None = None  # the images in order (default: the data's train split)


def make_cam(request: pytest.FixtureRequest) -> Stage:
    from wsss.stages.make_cam import MakeCamConfig, run

    setup = request.getfixturevalue("cam_setup")
    config = lambda out: stage_config(MakeCamConfig, setup, out, scales=(1.0,), flip=False)  # noqa: E731
    return Stage(run, config, setup[0], ".npy", {"scales": (0.5,)}, "scales")


def make_rw(request: pytest.FixtureRequest) -> Stage:
    from wsss.stages.make_rw import MakeRwConfig, run

    setup = request.getfixturevalue("rw_setup")
    config = lambda out: MakeRwConfig(  # noqa: E731
        checkpoint=setup["checkpoint"], cams=setup["cams"], data=setup["root"], split="train",
        out=out, exp_times=4, device="cpu", loader_workers=0, flip=False,
    )  # fmt: skip
    changed = {"beta": 5.0}
    return Stage(run, config, setup["root"], ".npy", changed, "beta")


def make_pseudo(request: pytest.FixtureRequest) -> Stage:
    from wsss.camfile import save_cam_file
    from wsss.stages import make_pseudo
    from wsss.stages.make_pseudo import MakePseudoConfig, run

    # In-process shards have no process group to sum their scores over.
    request.getfixturevalue("monkeypatch").setattr(
        make_pseudo._Tally, "sum_over_processes", lambda self: None
    )
    base = request.getfixturevalue("tmp_path")
    voc = VocDataset.open(make_tiny_voc(base / "voc", n=6, size=40))
    for image_id in voc.split_ids("train"):
        save_cam_file(base / "cams" / f"{image_id}.npy", cams_from_mask(voc, image_id, shift=2))
    config = lambda out: MakePseudoConfig(  # noqa: E731
        cams=base / "cams", data=voc.root, split="train", out=out, threshold=0.3, crf=False,
        crf_workers=1,
    )  # fmt: skip
    return Stage(run, config, voc.root, ".png", {"threshold": 0.5}, "threshold=0.3 \\(now 0.5\\)")


def predict(request: pytest.FixtureRequest) -> Stage:
    from wsss.stages.predict import PredictConfig, run

    setup = request.getfixturevalue("seg_setup")
    config = lambda out: stage_config(PredictConfig, setup, out, flip=False)  # noqa: E731
    return Stage(run, config, setup[0], ".png", {"flip": True}, "flip")


def predict_images(request: pytest.FixtureRequest) -> Stage:
    """predict --images: a folder of image files instead of a split."""
    from wsss.stages.predict import PredictConfig, run

    root, checkpoint = request.getfixturevalue("seg_setup")
    config = lambda out: PredictConfig(  # noqa: E731
        checkpoint=checkpoint, images=(str(root / "JPEGImages"),), out=out, flip=False,
        device="cpu", loader_workers=0,
    )  # fmt: skip
    ids = sorted(p.stem for p in (root / "JPEGImages").glob("*.jpg"))
    return Stage(run, config, root, ".png", {"window": 32}, "window", ids)


@pytest.fixture(
    params=[make_cam, make_rw, make_pseudo, predict, predict_images], ids=lambda f: f.__name__
)
def stage(request: pytest.FixtureRequest, one_thread: None) -> Stage:
    return request.param(request)


def test_a_rerun_skips_finished_files_and_clears_temporaries(stage: Stage, tmp_path: Path):
    out = tmp_path / "out"
    config = stage.config(out)
    stage.run(config)
    files = sorted(out.glob(f"*{stage.suffix}"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    files[1].unlink()
    leftover = out / f".{files[2].name}.abc123.tmp"  # what a killed atomic write leaves
    leftover.write_bytes(b"partial")
    again = stage.run(config)
    assert (again.written, again.skipped, again.files) == (1, len(files) - 1, len(files))
    assert files[1].is_file() and not leftover.exists()
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in files if p != files[1])


def test_a_shard_writes_its_share(stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "out"
    result = stage.run(stage.config(out))
    ids = stage.ids or VocDataset.open(stage.data).split_ids("train")
    assert sorted(p.stem for p in out.glob(f"*{stage.suffix}")) == ids[1::2]
    assert result.written == len(ids[1::2])
    assert not (out / "manifest.json").exists()  # rank 0 writes it


def test_resuming_with_other_settings_is_refused(stage: Stage, tmp_path: Path):
    out = tmp_path / "out"
    stage.run(stage.config(out))
    with pytest.raises(WsssError, match=stage.refusal):
        stage.run(replace(stage.config(out), **stage.other_settings))


def test_a_folder_made_before_a_signature_key_existed_resumes(stage: Stage, tmp_path: Path):
    """A manifest written before an option joined the signature was made with the option's
    first value (`wsss.resume.ADDED_KEYS`): resuming it with that value is no change."""
    import json

    from wsss.resume import ADDED_KEYS

    out = tmp_path / "out"
    stage.run(stage.config(out))
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    dropped = [key for key in ADDED_KEYS if key in manifest["params"]]
    for key in dropped:
        del manifest["params"][key]
    path.write_text(json.dumps(manifest))
    again = stage.run(stage.config(out))  # refused before, 'holds outputs made with merge=None'
    assert again.written == 0 and again.skipped == again.files

"""`wsss train-cam` on a tiny generated dataset: learning, exact resume, the CLI's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_tinyvoc import Interrupt, make_tiny_voc, read_metrics, stop_after_epoch

from cli.main import main
from wsss.engine.checkpoint import load_checkpoint, save_checkpoint
from wsss.errors import WsssError
from wsss.models.classifier import CamClassifier
from wsss.stages.train_cam import TrainCamConfig, _warm_start, run

TINY = dict(
    split="train", backbone="resnet18", pretrained="none", crop=32, scale_range=(32, 40),
    batch_size=2, device="cpu", loader_workers=0, optimizer="adamw", lr=1e-3, weight_decay=1e-4,
    schedule="cosine",
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def test_puzzle_training_lowers_the_loss_and_records_everything(voc4: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = TrainCamConfig(
        data=voc4, out=out, epochs=8, alpha=1.0, alpha_warmup=0.0, eval_split="val",
        eval_every=3, **TINY,
    )  # fmt: skip
    result = run(config)
    lines = read_metrics(out)
    # The per-epoch loss is noisy on 4 images: compare two-epoch means (0.49 measured).
    loss = [line["loss"] for line in lines]
    assert sum(loss[-2:]) < 0.7 * sum(loss[:2])
    assert {"cls", "p_cls", "re", "alpha", "lr", "images_per_s"} <= set(lines[0])
    assert lines[0]["alpha"] == 1.0 and lines[0]["p_cls"] > 0 and lines[0]["re"] > 0
    assert [line["epoch"] for line in lines if "eval" in line] == [3, 6, 8]
    final = load_checkpoint(out / "final.pt", "cam_classifier")
    assert final["classes"] == ["cat", "dog"] and final["epoch"] == 8
    assert final["model_config"]["backbone"] == "resnet18"
    assert final["args"]["pieces"] == 4 and final["args"]["scale_range"] == [32, 40]
    best = max((line for line in lines if "eval" in line), key=lambda line: line["eval"]["metric"])
    assert result.best_eval["metric"] == best["eval"]["metric"]
    assert load_checkpoint(out / "best.pt", "cam_classifier")["epoch"] == best["epoch"]


def test_eval_every_defaults_to_the_counted_rule(voc4: Path, tmp_path: Path) -> None:
    from wsss.data.voc import VocDataset
    from wsss.engine.evaluation import auto_eval_every

    voc = VocDataset.open(voc4)
    train, val = voc.split_ids("train"), voc.split_ids("val")
    expected = auto_eval_every(voc, val, len(train), 32, train_passes=6)
    assert expected > 1  # tiny crops, full-size evaluation: evaluating every epoch is too dear
    run(TrainCamConfig(data=voc4, out=tmp_path / "run", epochs=expected, eval_split="val", **TINY))
    lines = read_metrics(tmp_path / "run")
    assert [line["epoch"] for line in lines if "eval" in line] == [expected]
    final = load_checkpoint(tmp_path / "run" / "final.pt", "cam_classifier")
    assert final["args"]["eval_every"] == expected  # recorded resolved, so resume agrees


def test_plain_cam_baseline_runs_through_the_same_path_with_the_paper_sgd(
    voc4: Path, tmp_path: Path
) -> None:
    settings = {**TINY, "optimizer": "sgd", "schedule": "poly", "lr": 0.01}
    run(TrainCamConfig(data=voc4, out=tmp_path / "run", epochs=1, pieces=1, alpha=0, **settings))
    (line,) = read_metrics(tmp_path / "run")
    assert line["p_cls"] == 0 and line["re"] == 0 and line["loss"] == line["cls"]
    groups = load_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]["param_groups"]
    # The paper's multipliers: backbone x1, its biases x2 without decay, new classifier x10.
    assert [(g["name"], g["lr_mult"], g["weight_decay"]) for g in groups] == [
        ("pretrained_weights", 1.0, 1e-4),
        ("pretrained_biases", 2.0, 0.0),
        ("new_weights", 10.0, 1e-4),
    ]
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in groups)


@pytest.mark.parametrize("amp", ["gpu", "bf16"])
def test_resume_ends_with_the_uninterrupted_weights(voc4: Path, tmp_path: Path, amp: str) -> None:
    """Exact in fp32 and in the CPU's bf16 alike (same machine, same thread count)."""

    def config(out: Path, resume: bool = False) -> TrainCamConfig:
        return TrainCamConfig(data=voc4, out=out, epochs=2, resume=resume, amp=amp, **TINY)

    straight = run(config(tmp_path / "a"))
    with pytest.raises(Interrupt):
        run(config(tmp_path / "b"), on_epoch_end=stop_after_epoch(1))
    run(config(tmp_path / "b", resume=True))
    a = load_checkpoint(straight.final, "cam_classifier")["model"]
    b = load_checkpoint(tmp_path / "b" / "final.pt", "cam_classifier")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert [m["loss"] for m in read_metrics(tmp_path / "a")] == [
        m["loss"] for m in read_metrics(tmp_path / "b")
    ]
    assert all(value.dtype != torch.bfloat16 for value in a.values())  # weights stay fp32


def test_bf16_takes_effect_and_its_losses_stay_close_to_fp32(voc4: Path, tmp_path: Path) -> None:
    from wsss.engine.device import amp_policy
    from wsss.puzzle import PuzzleConfig, puzzle_losses

    losses = {}
    for amp in ("off", "bf16"):
        run(TrainCamConfig(data=voc4, out=tmp_path / amp, epochs=1, amp=amp, **TINY))
        (line,) = read_metrics(tmp_path / amp)
        losses[amp] = line["loss"]
    assert losses["off"] != losses["bf16"]  # the setting reached the training loop
    # One forward on the same weights: the three losses within bf16's rounding (training
    # then drifts apart, as two fp32 runs on other thread counts do).
    torch.manual_seed(0)
    model = CamClassifier("resnet18", 20).train()
    images, labels = torch.randn(4, 3, 64, 64), (torch.rand(4, 20) < 0.2).float()
    fp32 = puzzle_losses(model, images, labels, PuzzleConfig(), 4.0)
    policy = amp_policy(torch.device("cpu"), "bf16")
    policy.keep_outputs_fp32(model)
    with policy.autocast():
        bf16 = puzzle_losses(model, images, labels, PuzzleConfig(), 4.0)
    for term in ("cls", "p_cls", "re", "loss"):
        assert bf16[term].dtype == torch.float32
        assert float(bf16[term]) == pytest.approx(float(fp32[term]), rel=0.02), term


def test_warm_start_loads_a_trained_classifier_and_checks_its_classes(tmp_path: Path) -> None:
    torch.manual_seed(1)
    trained = CamClassifier("resnet18", 2)
    path = save_checkpoint(
        tmp_path / "cam.pt", "cam_classifier", model=trained.state_dict(),
        classes=["cat", "dog"], model_config=trained.config(),
    )  # fmt: skip
    torch.manual_seed(2)
    fresh = CamClassifier("resnet18", 2, output_stride=8)
    _warm_start(fresh, path, ("cat", "dog"))
    expected = trained.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in fresh.state_dict().items())
    with pytest.raises(WsssError, match="cam.pt: model was trained on 2 classes"):
        _warm_start(fresh, path, ("cat", "cow", "dog"))


def test_no_backbone_dilation_is_recorded_and_rebuilt(voc4: Path, tmp_path: Path) -> None:
    """--no-backbone-dilation (issue #25 row 1) goes into the model's config in the
    checkpoint, so make-cam rebuilds the undilated network; a warm start must match it."""
    from wsss.checkpoints import load_model

    out = tmp_path / "run"
    settings = {**TINY, "backbone": "resnet50"}
    run(TrainCamConfig(data=voc4, out=out, epochs=1, backbone_dilation=False, **settings))
    final = load_checkpoint(out / "final.pt", "cam_classifier")
    assert final["model_config"]["dilate"] is False and final["args"]["backbone_dilation"] is False
    model, _ = load_model(out / "final.pt", "cam_classifier", ("cat", "dog"))
    assert {block.conv2.dilation for block in model.backbone.layer4} == {(1, 1)}
    with pytest.raises(WsssError, match="backbone is undilated, this run's is dilated"):
        _warm_start(CamClassifier("resnet50", 2), out / "final.pt", ("cat", "dog"))


def test_options_added_later_match_checkpoints_saved_before_them(tmp_path: Path) -> None:
    """A checkpoint saved before --backbone-dilation existed was made with its default."""
    from wsss.engine.trainer import check_same_args

    check_same_args(tmp_path, {"epochs": 1}, {"epochs": 1, "backbone_dilation": True})
    with pytest.raises(WsssError, match="backbone_dilation"):
        check_same_args(tmp_path, {"epochs": 1}, {"epochs": 1, "backbone_dilation": False})


def test_warm_start_refuses_a_checkpoint_of_another_kind(voc4: Path, tmp_path: Path) -> None:
    foreign = save_checkpoint(tmp_path / "seg.pt", "deeplab", model={}, classes=["cat", "dog"])
    with pytest.raises(WsssError, match="seg.pt: checkpoint of kind 'deeplab'"):
        run(TrainCamConfig(data=voc4, out=tmp_path / "run", epochs=1, init=foreign, **TINY))


def test_split_with_an_unlabelled_image_is_a_one_line_error(tmp_path: Path) -> None:
    root = make_tiny_voc(tmp_path / "voc", n=2, size=32)
    (root / "Annotations" / "img_001.xml").write_text("<annotation></annotation>")
    with pytest.raises(WsssError, match="img_001.xml: image has no class label"):
        run(TrainCamConfig(data=root, out=tmp_path / "run", epochs=1, **TINY))


def test_help_lists_the_puzzle_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-cam", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--pieces", "--alpha-warmup", "--re-level", "--puzzle-start", "--init"):
        assert option in text


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--pieces", "3", "--pieces must be a square number"),
        ("--alpha", "-1", "--alpha must be >= 0"),
        ("--alpha-warmup", "1.5", "--alpha-warmup is a fraction"),
        ("--scale-range", "640", "--scale-range: '640' is not a valid 2 comma-separated ints"),
        ("--scale-range", "640,320", "--scale-range must be two sizes LOW,HIGH"),
        ("--optimizer", "lamb", "--optimizer must be one of sgd|adamw"),
        ("--re-level", "pixel", "--re-level must be one of feature|cam"),
        ("--output-stride", "32", "--output-stride must be one of 8|16"),
        ("--warmup-epochs", "15", "--warmup-epochs must be in [0, --epochs)"),
        ("--init", "missing.pt", "missing.pt: --init checkpoint not found"),
        ("--data", "nowhere", "nowhere: dataset root not found"),
    ],
)
def test_bad_options_give_one_line_errors(
    voc4: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    args = ["train-cam", "--data", str(voc4), "--out", str(tmp_path / "run"), "--device", "cpu"]
    args += ["--pretrained", "none", option, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()

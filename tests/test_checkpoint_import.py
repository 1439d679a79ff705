"""`wsss import-checkpoint --from puzzlecam`: the official code's state dicts as wsss checkpoints.

The files are made here the way the reference writes them: every reference key of the golden
manifest's key map (the names the reference model itself had when the golden files were
made), under DataParallel's `module.` prefix, each tensor filled by the parity script's
seeded fill through that map. Imported, the wsss model must give the reference's golden
outputs; the strictness is checked key by key.
"""

from __future__ import annotations

import re
import shutil
from functools import cache
from pathlib import Path

import pytest
import torch
from test_reference_parity import (
    assert_maps_close,
    golden,
    image_path,
    image_tensor,
    manifest,
    reference_views,
)

from benchmarks.reference_parity import NUM_CLASSES, seeded_tensor
from cli.main import main
from wsss.checkpoints import load_model
from wsss.data.classes import VOC_CLASSES
from wsss.errors import WsssError
from wsss.inference import TtaConfig, segment_probs
from wsss.models.affinity import AffinityNet
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus

pytestmark = pytest.mark.usefixtures("one_thread")

# The reference's GroupNorm head has the BatchNorm head's names less the running statistics.
_NOT_IN_GN_HEAD = re.compile(r"(aspp|decoder)\..*\.(running_mean|running_var|num_batches_tracked)")


@cache
def _shapes(kind: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    model = {
        "classifier": lambda: CamClassifier("resnet50", NUM_CLASSES),
        "deeplab": lambda: DeepLabV3Plus("resnet50", NUM_CLASSES + 1),
        "affinity": lambda: AffinityNet("resnet50", head="reference"),
    }[kind]()
    return {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}


def reference_state(kind: str, head: str = "bn", prefix: str = "module.") -> dict:
    """A state dict as the reference saves its `kind` model (`head`: DeepLab's bn or gn)."""
    mapping = manifest()["key_maps"][kind]["map"]
    state = {}
    for theirs, ours in mapping.items():
        if head == "gn" and _NOT_IN_GN_HEAD.fullmatch(theirs):
            continue
        shape, dtype = _shapes(kind)[ours]
        state[prefix + theirs] = seeded_tensor(ours, tuple(shape), dtype)
    return state


def write(tmp_path: Path, state: dict, name: str = "ref.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def import_cli(kind: str, file: Path, out: Path, *extra: str) -> int:
    return main(["import-checkpoint", "--from", "puzzlecam", kind, str(file), "--out", str(out),
                 *extra])  # fmt: skip


def test_imported_classifier_gives_the_reference_cams(tmp_path: Path) -> None:
    """A DataParallel classifier file: 637 names (the aliases too) onto 319 tensors, layer4
    undilated; its maps are the reference's."""
    out = tmp_path / "cls.pt"
    assert import_cli("classifier", write(tmp_path, reference_state("classifier")), out) == 0
    model, checkpoint = load_model(out, CamClassifier.KIND, VOC_CLASSES)
    assert checkpoint["model_config"]["dilate"] is False
    assert checkpoint["imported"]["from"] == "puzzlecam"
    assert len(checkpoint["model"]) == 319
    data = golden("classifier")
    with torch.no_grad():
        for name in ("a", "b"):
            maps = model.eval()(image_tensor(name))
            assert_maps_close(maps, data[f"reference_{name}_maps"], what="maps")


def test_make_cam_on_an_imported_classifier_is_the_reference_make_cam(tmp_path: Path) -> None:
    """The released weights' use: make-cam --resize pil-bicubic at the reference's four scales
    from the imported file gives the reference's CAMs."""
    from test_reference_parity import run_make_cam

    out = tmp_path / "cls.pt"
    file = write(tmp_path, reference_state("classifier", prefix=""))
    assert import_cli("classifier", file, out) == 0
    run_make_cam(tmp_path, out, "s4", scales=(0.5, 1.0, 1.5, 2.0), resize="pil-bicubic")


def test_imported_deeplab_gives_the_reference_logits(tmp_path: Path) -> None:
    """The BatchNorm head (use_gn False): align_corners and the undilated backbone come with
    it; logits and the four-scale TTA are the reference's."""
    out = tmp_path / "seg.pt"
    assert import_cli("deeplab", write(tmp_path, reference_state("deeplab")), out) == 0
    model, checkpoint = load_model(out, DeepLabV3Plus.KIND, VOC_CLASSES)
    config = checkpoint["model_config"]
    assert (config["dilate"], config["align_corners"], config["head_norm"]) == (False, True, "bn")
    with torch.no_grad():
        logits = model.eval()(image_tensor("c"))
    assert_maps_close(logits, golden("deeplab")["logits_c"], what="logits")
    scales = (0.5, 1.0, 1.5, 2.0)
    tta = TtaConfig(scales=scales, flip=True, resize="pil-bicubic")
    probs = segment_probs(model, image_tensor("c"), tta, "logits", reference_views("c", scales))
    assert_maps_close(probs[0], golden("deeplab")["s4_probs"], what="probs")


def test_predict_on_an_imported_deeplab_is_the_reference_prediction(tmp_path: Path) -> None:
    """predict --resize pil-bicubic --merge logits at the four scales, from the imported
    file: the reference's label map (its inference_segmentation.py without CRF)."""
    from wsss.data.palette import read_label_png
    from wsss.stages.predict import PredictConfig, run

    out = tmp_path / "seg.pt"
    assert import_cli("deeplab", write(tmp_path, reference_state("deeplab")), out) == 0
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    shutil.copy(image_path("c"), root / "JPEGImages" / "c.jpg")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("c\n")
    # amp off: fp32, as the reference's golden labels are
    config = PredictConfig(
        checkpoint=out, data=root, split="val", out=tmp_path / "pred", device="cpu", amp="off",
        loader_workers=0, scales=(0.5, 1.0, 1.5, 2.0), resize="pil-bicubic", merge="logits",
    )  # fmt: skip
    run(config)
    labels = read_label_png(tmp_path / "pred" / "c.png")
    assert (labels == golden("deeplab")["s4_pred"]).all()


def test_imported_group_norm_deeplab(tmp_path: Path) -> None:
    """The reference's default head (GroupNorm, 4 groups): no running statistics in the file;
    every tensor arrives where the map says."""
    state = reference_state("deeplab", head="gn", prefix="")
    assert not any(k.startswith("aspp.") and "running" in k for k in state)
    out = tmp_path / "seg.pt"
    assert import_cli("deeplab", write(tmp_path, state), out) == 0
    model, checkpoint = load_model(out, DeepLabV3Plus.KIND, VOC_CLASSES)
    assert checkpoint["model_config"]["head_norm"] == "gn"
    assert isinstance(model.aspp.convs[0][1], torch.nn.GroupNorm)
    assert model.aspp.convs[0][1].num_groups == 4
    mapping = manifest()["key_maps"]["deeplab"]["map"]
    ours = model.state_dict()
    for theirs, value in state.items():
        assert torch.equal(ours[mapping[theirs]], value), theirs
    with torch.no_grad():
        assert torch.isfinite(model.eval()(image_tensor("c"))).all()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s.pop("module.model.layer4.2.bn3.weight"),
            "missing key model.layer4.2.bn3.weight",
        ),
        (lambda s: s.pop("module.stage5.0.2.bn3.weight"), "missing key stage5.0.2.bn3.weight"),
        (lambda s: s.pop("module.classifier.weight"), "missing key classifier.weight"),
        (lambda s: s.update({"module.fc.weight": torch.zeros(3)}), "extra key module.fc.weight"),
        (
            lambda s: s["module.stage5.0.2.bn3.weight"].add_(1.0),
            "stage5.0.2.bn3.weight and module.model.layer4.2.bn3.weight differ",
        ),
        (
            lambda s: s.update(
                {
                    k: v[:, :8]
                    for k, v in s.items()
                    if k.endswith(("model.layer1.0.conv1.weight", "stage2.0.0.conv1.weight"))
                }
            ),
            "has shape \\(64, 8, 1, 1\\), the CAM classifier expects \\(64, 64, 1, 1\\)",
        ),
    ],
    ids=["missing", "missing-alias", "missing-head", "extra", "aliases-differ", "shape"],
)
def test_a_file_that_does_not_fit_is_a_one_line_error(
    tmp_path: Path, capsys, change, message: str
) -> None:
    state = reference_state("classifier")
    change(state)
    file = write(tmp_path, state)
    assert import_cli("classifier", file, tmp_path / "out.pt") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "out.pt").exists()


def test_wrong_kind_classes_and_source_are_one_line_errors(tmp_path: Path, capsys) -> None:
    classifier = write(tmp_path, reference_state("classifier"), "cls.pth")
    assert import_cli("deeplab", classifier, tmp_path / "o.pt") == 2
    assert "extra key module.classifier.weight" in capsys.readouterr().err
    assert import_cli("affinity", classifier, tmp_path / "o.pt") == 2
    assert "extra key module.classifier.weight" in capsys.readouterr().err
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n")
    assert (
        import_cli("classifier", classifier, tmp_path / "o.pt", "--class-list", str(classes)) == 2
    )
    assert "20 foreground classes, the class list 2" in capsys.readouterr().err
    args = ["import-checkpoint", "--from", "irn", "classifier", str(classifier), "--out", "o.pt"]
    assert main(args) == 2
    assert "--from" in capsys.readouterr().err
    assert import_cli("classifier", tmp_path / "nope.pth", tmp_path / "o.pt") == 2
    assert "not found" in capsys.readouterr().err


def test_a_resnest_file_is_refused(tmp_path: Path) -> None:
    from wsss.checkpoint_import import reference_model

    state = {
        "model.layer1.0.conv2.conv.weight": torch.zeros(1),
        "classifier.weight": torch.zeros(1),
    }
    with pytest.raises(WsssError, match="ResNeSt"):
        reference_model(state, "classifier", "file.pth")


def test_the_package_map_is_the_parity_scripts_map() -> None:
    """Every reference key of the golden manifest has the wsss name the parity script gave it,
    and each wsss key's reference names are exactly the manifest's."""
    from wsss.checkpoint_import import reference_keys, wsss_key

    for kind in ("classifier", "deeplab", "affinity"):
        mapping = manifest()["key_maps"][kind]["map"]
        assert {k: wsss_key(k, kind) for k in mapping} == mapping
        inverse: dict[str, set[str]] = {}
        for theirs, ours in mapping.items():
            inverse.setdefault(ours, set()).add(theirs)
        assert {k: set(reference_keys(k, kind)) for k in inverse} == inverse
        assert all(reference_keys(k, kind)[0] == min(v, key=_primary) for k, v in inverse.items())


def _primary(name: str) -> int:
    """The aliases: stage1..5 and the AffinityNet's ModuleLists of them and of its branches."""
    return 1 if name.startswith(("stage", "backbone.", "edge_layers.")) else 0


def test_imported_weights_equal_the_file(tmp_path: Path) -> None:
    state = reference_state("classifier", prefix="")
    out = tmp_path / "cls.pt"
    assert import_cli("classifier", write(tmp_path, state), out) == 0
    model, _ = load_model(out, CamClassifier.KIND, VOC_CLASSES)
    mapping = manifest()["key_maps"]["classifier"]["map"]
    ours = model.state_dict()
    assert all(torch.equal(ours[mapping[k]], v) for k, v in state.items())
    assert (len(state), len(ours)) == (637, 319)


def test_imported_affinitynet_gives_the_reference_boundary_map(tmp_path: Path) -> None:
    """A DataParallel AffinityNet file as train_affinitynet.py saves it (the walk's
    `path_indices_<n>` buffers too): 988 names onto 335 tensors; loaded as make-rw loads it,
    its boundary map (padded to 512, flip merge) is the reference's get_edge."""
    from wsss.checkpoints import open_model
    from wsss.stages.make_rw import predict_boundary

    state = reference_state("affinity")
    state["module.path_indices_0"] = torch.zeros(3, 4, dtype=torch.int64)
    out = tmp_path / "aff.pt"
    assert import_cli("affinity", write(tmp_path, state), out) == 0
    predictor, checkpoint, _ = open_model(out, AffinityNet.KIND, "cpu", VOC_CLASSES, "off")
    config = checkpoint["model_config"]
    assert (config["head"], config["dilate"], config["backbone"]) == ("reference", False,
                                                                     "resnet50")  # fmt: skip
    assert (len(checkpoint["model"]), checkpoint["imported"]["kind"]) == (335, "affinity")
    model = predictor.model
    assert model.edge_input == 512
    with torch.no_grad():
        boundary = predict_boundary(predictor, image_tensor("a"), True, model.edge_input)
    assert_maps_close(boundary, golden("affinitynet")["edge_a"], what="boundary")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("module.fc_edge6.weight"), "missing key fc_edge6.weight"),
        (lambda s: s.pop("module.edge_layers.2.1.bias"), "missing key edge_layers.2.1.bias"),
        (
            lambda s: s.pop("module.backbone.4.0.2.bn3.weight"),
            "missing key backbone.4.0.2.bn3.weight",
        ),
        (
            lambda s: s.update({"module.fc_edge7.weight": torch.zeros(1)}),
            "extra key module.fc_edge7.weight",
        ),
        (
            lambda s: s["module.edge_layers.0.1.weight"].add_(1.0),
            "edge_layers.0.1.weight and module.fc_edge1.1.weight differ",
        ),
    ],
    ids=["missing", "missing-edge-alias", "missing-backbone-alias", "extra", "aliases-differ"],
)
def test_an_affinity_file_that_does_not_fit_is_a_one_line_error(
    tmp_path: Path, capsys, change, message: str
) -> None:
    state = reference_state("affinity")
    change(state)
    assert import_cli("affinity", write(tmp_path, state), tmp_path / "out.pt") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "out.pt").exists()

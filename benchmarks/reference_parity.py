"""Golden outputs of the official Puzzle-CAM code, for the parity tests (issue #25).

    .venv/bin/python benchmarks/reference_parity.py --reference /tmp/PuzzleCAM \\
        --out tests/golden/reference

The reference is the public repository shjo-april/PuzzleCAM (commit `REFERENCE_COMMIT`). It
has no licence file, so none of its code is in this project: this script imports a checkout
named on the command line, runs it on the CPU and stores only numbers (small `.npz` files,
the input images it ran on and `manifest.json`). `tests/test_reference_parity.py` compares
wsss with those files, without the checkout and without a network.

Environment patches, never the maths (`ReferenceRuntime`):
- `Tensor.cuda` and `Module.cuda` return the object itself (everything runs on the CPU);
- `torch.utils.model_zoo.load_url` returns the seeded ResNet weights below instead of
  downloading the ImageNet ones;
- modules the reference imports but no code run here calls (cv2, imageio, pandas,
  torch.utils.tensorboard) are stand-ins when not installed; a stand-in raises if called;
- `PIL.Image.CUBIC` (removed in Pillow 10) is set to `PIL.Image.BICUBIC`, its old value.

The reference computes several steps inline in its scripts (the puzzle losses in
`train_classification_with_puzzle.py`, make-cam's merge in `inference_classification.py`,
the confident labels, the walk's post-processing, the segmentation TTA, the affinity loss).
Those are run as they stand: the script's own import lines, then the lines of `BLOCKS`
(file, first and last line at `REFERENCE_COMMIT`, checked by the files' sha256), executed
with the loop variables set to our inputs. Nothing is copied: the lines are read from the
checkout at run time.

Weights: nothing is downloaded. Every tensor is filled from a seed derived from its wsss
name (`seeded_tensor`), so the reference network and the wsss one get the same values
through the key maps below, and the tests rebuild the wsss side without any stored weight.
The key maps (reference state_dict name -> wsss name, strict: every reference tensor has
exactly one wsss counterpart and every wsss tensor is covered) are the package's
(`wsss.checkpoint_import.PREFIXES`, what `wsss import-checkpoint` uses):

Classifier (`core.networks.Classifier('resnet50')` -> `wsss.models.classifier.CamClassifier`)
    model.<rest>                      -> backbone.<rest>   (conv1, bn1, layer1..layer4)
    stage1.0.* / stage1.1.*           -> backbone.conv1.* / backbone.bn1.*   (aliases)
    stage{2,3,4,5}.0.<rest>           -> backbone.layer{1,2,3,4}.<rest>      (aliases)
    classifier.weight                 -> classifier.weight
DeepLabv3+ (`core.networks.DeepLabv3_Plus('resnet50', use_group_norm=False)` ->
`wsss.models.deeplab.DeepLabV3Plus`): the backbone as above, and
    aspp.aspp{1,2,3,4}.atrous_conv.*  -> aspp.convs.{0,1,2,3}.0.*
    aspp.aspp{1,2,3,4}.bn.*           -> aspp.convs.{0,1,2,3}.1.*
    aspp.global_avg_pool.1.*          -> aspp.convs.4.1.*    (image pooling conv)
    aspp.global_avg_pool.2.*          -> aspp.convs.4.2.*    (its BatchNorm)
    aspp.conv1.* / aspp.bn1.*         -> aspp.project.0.* / aspp.project.1.*
    decoder.conv1.* / decoder.bn1.*   -> low_level.0.* / low_level.1.*
    decoder.classifier.{0,1,4,5}.*    -> decoder.{0,1,4,5}.*
    decoder.classifier.8.*            -> classifier.*
  The golden files use the BatchNorm variant; the reference's default head is GroupNorm
  (`--use_gn True`, wsss `head_norm="gn"`), the same names less the running statistics.
AffinityNet (`core.networks.AffinityNet('resnet50')` -> `wsss.models.affinity.AffinityNet`
with `head="reference"`, train-aff --aff-head reference): the backbone as above (also under
the aliases backbone.{0..4}.*), and
    fc_edge1.{0,1}.*                  -> stem.{0,1}.*               (the stem branch)
    fc_edge{2,3,4,5}.{0,1}.*          -> levels.{0,1,2,3}.{0,1}.*   (conv, GroupNorm)
    fc_edge6.*                        -> boundary.*                 (160 inputs)
    edge_layers.{0,...,5}.*           -> the same (aliases of fc_edge1..6)
A checkpoint of the official code is a DataParallel file: strip "module." first.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

REFERENCE_REPO = "https://github.com/shjo-april/PuzzleCAM"
REFERENCE_COMMIT = "659b4c1b464a86faf363314acd71a5ce9480ff9b"
# The files whose lines or functions run here, as they are at REFERENCE_COMMIT.
REFERENCE_FILES = {
    "core/networks.py": "9a6e1abb97a9b65ce0c3ae30ee0d2beb6a46e9dbd1b90df09b1903643788c002",
    "core/arch_resnet/resnet.py": None,
    "core/puzzle_utils.py": "1b74152ee38aca1db8946f74a9d838fbf98d04e0663f2ffcdb02e226c7dcf738",
    "core/aff_utils.py": "ff0f80d987579cbc33795cc5dac9889cc1575f8c60979a9c06fde2ae1f26cec5",
    "core/deeplab_utils.py": "c9eee15fac5fcd248a91e9b95cf33a80edf38cb07a6bd2cbc3115ba0228999fb",
    "tools/ai/torch_utils.py": "56da4c50429113e9b621de8e31066159919da4d28923aff89d4e6f194c8a6e11",
    "tools/ai/augment_utils.py": "1fa9f704acc82c90c1bfb162b88803d8b4b29eb8b65e8bc04911d4ccfd6defcf",
    "tools/ai/demo_utils.py": "88640bbc909d7d3dd060045f8fd5546f7abb4d24e80e29e9f676e97a3fce325a",
    "tools/ai/evaluate_utils.py": (
        "be129c9f0af552b774e384d13b3c58b453ca492cb8021ae60a9bf2a133ad1af5"
    ),
    "train_classification_with_puzzle.py": (
        "195a73212e73a70889691b5697a1db985b5e0c5f7db37702460a305d9f816df3"
    ),
    "inference_classification.py": (
        "04e787a96e648aabf95028820a8d134c254eee1d996781d844b79a14ddbbb2c4"
    ),
    "make_affinity_labels.py": "31106aff3531dda3fa7801e1aeed5f9eecf5931bc6765d5d9812670871f5d60b",
    "make_pseudo_labels.py": "4bcbb4a792ee0af2b03dce8d535318e38e6e2a80aa113fabe9264e1441619d83",
    "inference_rw.py": "80cf02ef7f4ad2cbd96aa6372fae0aa6afabb21f131e15f91b12253ed9b207cc",
    "inference_segmentation.py": "479f4ce18786514bebc14facbd01bdf66edc1a1245156b4b6e55b75cd1acaefb",
    "train_affinitynet.py": "9d8577b6ef02936d041f5f5c18b10e47ad9f5351d7817b554d796f02b8352d35",
    "evaluate.py": "bc18603b9baa726f404753927823058d33bad64d59e72f93a5ef8e123736d60a",
}
# Inline steps of the reference scripts: (file, first line, last line), 1-based, inclusive.
BLOCKS = {
    "puzzle_step": ("train_classification_with_puzzle.py", 326, 381),  # forward .. total loss
    "alpha": ("train_classification_with_puzzle.py", 376, 379),  # the alpha schedule
    "get_cam": ("inference_classification.py", 129, 150),  # one scale + flip
    "make_cam": ("inference_classification.py", 161, 181),  # merge scales, normalise, keys
    "confident": ("make_affinity_labels.py", 94, 111),  # fg/bg thresholds + CRF, combine
    "pseudo": ("make_pseudo_labels.py", 90, 100),  # threshold rw + CRF
    "rw_edge": ("inference_rw.py", 144, 155),  # normalise, flip pair, get_edge
    "rw_walk": ("inference_rw.py", 163, 166),  # propagate, x4 upsample, global max
    "seg_inference": ("inference_segmentation.py", 129, 137),  # one view pair -> logits
    "seg_tta": ("inference_segmentation.py", 144, 169),  # scales, merge, softmax, argmax
    "aff_loss": ("train_affinitynet.py", 204, 213),  # the affinity loss
}

SEED = "wsss-reference-parity-1"
NUM_CLASSES = 20  # the classifier's classes (VOC)
IMAGES_DIR = "inputs"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The input images: crops of the demo generator's images (seed 0, 128 px), saved as JPEG
# once; reference and tests read the same files. (demo index, rows, cols, the demo classes
# in the crop, the image-level labels fed to both codes). The networks are random, so the
# labels are VOC indices whose class maps are partly positive on these images (a map that
# is negative everywhere gives an all-zero CAM and tests nothing).
INPUTS = {
    "a": (1, (10, 80), (20, 120), (2, 3), (3, 7)),  # 70 x 100, two classes
    "b": (5, (40, 104), (14, 110), (3,), (15,)),  # 64 x 96, one class
    "c": (4, (10, 58), (20, 84), (0,), (0,)),  # 48 x 64 (DeepLab rows)
}


# -- deterministic weights -----------------------------------------------------------------


def _seed_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{SEED}:{name}".encode()).digest()[:8], "little")


def seeded_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The value of the tensor called `name` (a wsss state_dict key):
    conv weights He-normal, norm weights U(0.5, 1), biases N(0, 0.1), BatchNorm running
    means N(0, 0.1) and variances U(0.5, 1.5), counters 0. Same name, same values."""
    rng = np.random.Generator(np.random.PCG64(_seed_of(name)))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=dtype)
    if leaf == "running_var":
        values = rng.uniform(0.5, 1.5, shape)
    elif leaf == "running_mean" or leaf == "bias":
        values = rng.normal(0.0, 0.1, shape)
    elif leaf == "weight" and len(shape) == 1:
        values = rng.uniform(0.5, 1.0, shape)
    elif leaf == "weight":
        fan_in = int(np.prod(shape[1:]))
        values = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    else:
        raise ValueError(f"no fill rule for {name}")
    return torch.from_numpy(values.astype(np.float32)).to(dtype)


def seeded_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A wsss model's state_dict filled by `seeded_tensor` (its own names)."""
    return {k: seeded_tensor(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def tensor_digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


# -- key maps: reference name -> wsss name ---------------------------------------------------


def reference_key_map(key: str, kind: str) -> str:
    """wsss name of a reference state_dict key (`kind`: classifier | deeplab | affinity; the
    affinity net is wsss's with the reference head): the package's map, the one `wsss
    import-checkpoint` uses, so the golden files check it."""
    from wsss.checkpoint_import import PARALLEL_PREFIX, wsss_key

    name = wsss_key(key.removeprefix(PARALLEL_PREFIX), kind)  # a DataParallel checkpoint
    if name is None:
        raise KeyError(f"no wsss name for the reference tensor {key} ({kind})")
    return name


def reference_state(reference_model: torch.nn.Module, kind: str) -> dict[str, torch.Tensor]:
    """The reference model's state_dict filled through the key map with the wsss values."""
    return {
        key: seeded_tensor(reference_key_map(key, kind), tuple(v.shape), v.dtype)
        for key, v in reference_model.state_dict().items()
    }


def check_strict(
    reference_model: torch.nn.Module, wsss_model: torch.nn.Module, kind: str
) -> dict[str, str]:
    """Every reference tensor equals its wsss counterpart, and every wsss tensor is covered;
    returns the map (reference key -> wsss key) for the manifest."""
    ref, ours = reference_model.state_dict(), wsss_model.state_dict()
    mapping = {key: reference_key_map(key, kind) for key in ref}
    covered = set()
    for key, target in mapping.items():
        if target not in ours:
            raise AssertionError(f"{key} -> {target}: not a wsss tensor")
        if not torch.equal(ref[key].float(), ours[target].float()):
            raise AssertionError(f"{key} -> {target}: values differ")
        covered.add(target)
    missing = sorted(set(ours) - covered)
    if missing:
        raise AssertionError(f"wsss tensors without a reference counterpart: {missing[:5]}")
    return mapping


# -- the inputs ------------------------------------------------------------------------------


def write_inputs(folder: Path) -> dict[str, dict]:
    """The demo crops of `INPUTS` as JPEG files (quality 95) under `folder`."""
    from PIL import Image

    from wsss.data.demo import render_sample

    folder.mkdir(parents=True, exist_ok=True)
    described = {}
    for name, (index, rows, cols, demo_classes, labels) in INPUTS.items():
        sample = render_sample(0, index, 128)
        pixels = sample.image[rows[0] : rows[1], cols[0] : cols[1]]
        label = sample.label[rows[0] : rows[1], cols[0] : cols[1]]
        present = sorted(int(v) - 1 for v in np.unique(label) if 0 < v < 255)
        assert present == list(demo_classes), (name, present)
        Image.fromarray(pixels).save(folder / f"{name}.jpg", quality=95)
        described[name] = {
            "file": f"{IMAGES_DIR}/{name}.jpg",
            "from": f"wsss.data.demo.render_sample(seed=0, index={index}, size=128)",
            "crop_rows": list(rows),
            "crop_cols": list(cols),
            "size_hw": [rows[1] - rows[0], cols[1] - cols[0]],
            "demo_classes": list(demo_classes),
            "labels": list(labels),
        }
    return described


def read_image(folder: Path, name: str):
    """The input image as the reference reads it (VOC_Dataset.get_image: PIL, RGB)."""
    from PIL import Image

    return Image.open(folder / IMAGES_DIR / f"{name}.jpg").convert("RGB")


def one_hot(classes: tuple[int, ...] | list[int]) -> np.ndarray:
    label = np.zeros(NUM_CLASSES, dtype=np.float32)
    label[list(classes)] = 1.0
    return label


def affinity_label_map() -> np.ndarray:
    """A 24 x 32 label map on the stride-4 grid: background, classes 2 and 4, 255 bands."""
    yy, xx = np.mgrid[0:24, 0:32]
    labels = np.zeros((24, 32), dtype=np.uint8)
    labels[(yy - 10) ** 2 + (xx - 9) ** 2 < 40] = 2
    labels[(yy >= 6) & (yy < 20) & (xx >= 18) & (xx < 28)] = 4
    ring = ((yy - 10) ** 2 + (xx - 9) ** 2 >= 40) & ((yy - 10) ** 2 + (xx - 9) ** 2 < 60)
    labels[ring] = 255
    labels[:, 29:] = 255
    return labels


def affinity_edge_map() -> np.ndarray:
    """A 24 x 32 boundary map in [0, 1] (smooth noise), for the affinities on pairs."""
    rng = np.random.Generator(np.random.PCG64(_seed_of("affinity-edge")))
    coarse = rng.uniform(0.0, 1.0, (7, 9)).astype(np.float32)
    edge = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None, None], size=(24, 32), mode="bicubic", align_corners=True
    )[0, 0]
    return edge.clamp(0.0, 1.0).numpy() ** 2


def probe_edge_net() -> torch.nn.Conv2d:
    """A one-layer stand-in boundary net (8x8 conv, stride 4, padding 3: ceil(H/4) cells): its cells
    over the image do not depend on what lies past the right/bottom border, so the
    reference's zero padding to 512 in `get_edge` changes nothing, and a flip bug shows."""
    net = torch.nn.Conv2d(3, 1, 8, stride=4, padding=3)
    rng = np.random.Generator(np.random.PCG64(_seed_of("probe-edge")))
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(rng.normal(0.0, 0.2, (1, 3, 8, 8)).astype(np.float32)))
        net.bias.fill_(-1.5)
    return net.eval()


def miou_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Hand cases for the mIoU conventions: (gt, prediction), values 0..20 and 255."""
    gt = np.zeros((6, 8), dtype=np.uint8)
    gt[1:4, 1:4] = 1
    gt[2:6, 5:8] = 15
    gt[0, :] = 255
    pred = np.zeros_like(gt)
    pred[1:4, 0:3] = 1
    pred[3:6, 5:8] = 15
    pred[5, 0:2] = 2  # a class absent from the ground truth
    plain = pred.copy()
    with_ignore = pred.copy()
    with_ignore[2, 5:8] = 255  # predicted 255 on labelled pixels (class 15)
    return {"plain": (gt, plain), "with_255": (gt, with_ignore)}


# -- running the reference --------------------------------------------------------------------


class _Stub(types.ModuleType):
    """A module the reference imports but nothing run here calls."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"{self.__name__}.{name} called: not available in this run")

        return unavailable


@contextlib.contextmanager
def _patched(obj, name: str, value) -> Iterator[None]:
    missing = object()
    old = getattr(obj, name, missing)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if old is missing:
            delattr(obj, name)
        else:
            setattr(obj, name, old)


class ReferenceRuntime:
    """The reference checkout imported with the environment patches (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.hashes = self._check_files()
        self.commit = self._commit()
        self._stack = contextlib.ExitStack()

    def _check_files(self) -> dict[str, str]:
        hashes = {}
        for rel, expected in REFERENCE_FILES.items():
            path = self.root / rel
            if not path.is_file():
                raise SystemExit(f"{path}: not found; is {self.root} a PuzzleCAM checkout?")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if expected is not None and digest != expected:
                raise SystemExit(
                    f"{path}: differs from commit {REFERENCE_COMMIT[:7]} (sha256 {digest[:12]}); "
                    "BLOCKS' line numbers were set for that commit"
                )
            hashes[rel] = digest
        return hashes

    def _commit(self) -> str:
        import subprocess

        try:
            result = subprocess.run(
                ["git", "-C", str(self.root), "rev-parse", "--show-toplevel", "HEAD"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            top, commit = result.stdout.split()
            if Path(top).resolve() == self.root:  # not a repository the folder sits in
                return commit
        except (OSError, ValueError, subprocess.CalledProcessError):
            pass
        # an archive of the commit: its files' sha256 were checked against it
        return f"{REFERENCE_COMMIT} (files checked by sha256; the checkout has no .git)"

    def __enter__(self) -> ReferenceRuntime:
        import PIL.Image
        import torch.utils.model_zoo
        import torchvision  # noqa: F401  (before the stand-ins: it looks for pandas itself)

        stack = self._stack
        for name in ("cv2", "imageio", "pandas", "torch.utils.tensorboard"):
            try:
                __import__(name)
            except ImportError:
                stub = _Stub(name)
                if name == "torch.utils.tensorboard":
                    stub.SummaryWriter = stub.__getattr__("SummaryWriter")
                stack.enter_context(_patched_module(name, stub))
        stack.enter_context(_patched(torch.Tensor, "cuda", lambda self, *a, **k: self))
        stack.enter_context(_patched(torch.nn.Module, "cuda", lambda self, *a, **k: self))
        stack.enter_context(_patched(torch.utils.model_zoo, "load_url", self._load_url))
        if not hasattr(PIL.Image, "CUBIC"):
            stack.enter_context(_patched(PIL.Image, "CUBIC", PIL.Image.BICUBIC))
        sys.path.insert(0, str(self.root))
        stack.callback(sys.path.remove, str(self.root))
        import core.networks  # noqa: F401  (imported with the patches in place)

        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @staticmethod
    def _load_url(url: str, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The 'ImageNet' ResNet: the seeded values of the wsss backbone, with the fc keys
        the reference pops."""
        from core.arch_resnet import resnet

        depth = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}
        name = next(n for n, u in resnet.urls_dic.items() if u == url)
        shell = resnet.ResNet(resnet.Bottleneck, depth[name], strides=(2, 2, 2, 1))
        state = {
            k: seeded_tensor("backbone." + k, tuple(v.shape), v.dtype)
            for k, v in shell.state_dict().items()
        }
        state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
        return state

    # -- script blocks
    def script_namespace(self, script: str, **values) -> dict:
        """A namespace as the script's own imports leave it (its lines up to the argument
        parser), plus `values`."""
        lines = (self.root / script).read_text().splitlines()
        end = next(i for i, line in enumerate(lines) if line.startswith("parser = "))
        namespace: dict = {"__name__": "reference_" + Path(script).stem}
        exec(compile("\n".join(lines[:end]), f"{script}:1-{end}", "exec"), namespace)
        namespace.update(values)
        return namespace

    def run_block(self, name: str, namespace: dict) -> dict:
        script, first, last = BLOCKS[name]
        lines = (self.root / script).read_text().splitlines()[first - 1 : last]
        code = textwrap.dedent("\n".join(lines))
        exec(compile(code, f"{script}:{first}-{last}", "exec"), namespace)
        return namespace

    def block_ref(self, name: str) -> str:
        script, first, last = BLOCKS[name]
        return f"{script}:{first}-{last}"


@contextlib.contextmanager
def _patched_module(name: str, module: types.ModuleType) -> Iterator[None]:
    parent_name, _, child = name.rpartition(".")
    saved = sys.modules.get(name)
    sys.modules[name] = module
    parent = sys.modules.get(parent_name) if parent_name else None
    had = parent is not None and hasattr(parent, child)
    if parent is not None:
        old_attr = getattr(parent, child, None)
        setattr(parent, child, module)
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved
        if parent is not None:
            if had:
                setattr(parent, child, old_attr)
            else:
                delattr(parent, child)


# -- the rows ----------------------------------------------------------------------------------


class Golden:
    """Collects the arrays of each golden file and the manifest's entries."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: dict[str, dict] = {}

    def save(self, file: str, row: dict, **arrays) -> None:
        packed = {
            k: np.asarray(v.detach().cpu() if torch.is_tensor(v) else v) for k, v in arrays.items()
        }
        np.savez_compressed(self.out / f"{file}.npz", **packed)
        row = dict(row)
        row["arrays"] = {k: [list(v.shape), str(v.dtype)] for k, v in packed.items()}
        self.rows[file] = row
        print(f"  {file}.npz: {', '.join(sorted(packed))}")


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def build_reference_classifier(dilated: bool = False):
    """The reference classifier, seeded; `dilated` gives its layer4 blocks after the first
    dilation 2 (padding 2), as the reference ResNet builds them with `dilations=(1, 1, 1, 2)`
    (the architecture wsss has)."""
    import core.networks as networks

    model = networks.Classifier("resnet50", NUM_CLASSES, mode="normal")
    if dilated:
        for block in list(model.model.layer4)[1:]:
            block.conv2.dilation, block.conv2.padding = (2, 2), (2, 2)
    model.load_state_dict(reference_state(model, "classifier"))
    return model.eval()


def wsss_classifier(dilated: bool = True):
    """wsss's classifier, seeded; `dilated=False` is the reference's ResNet-50 (issue #25 row
    1: layer4 at stride 1 without dilation; the weights are the same tensors)."""
    from wsss.models.classifier import CamClassifier

    model = CamClassifier("resnet50", NUM_CLASSES, dilate=dilated)
    model.load_state_dict(seeded_state(model))
    return model.eval()


def build_reference_affinitynet():
    """The reference AffinityNet, seeded (get_edge and forward need no path index)."""
    import core.networks as networks

    model = networks.AffinityNet("resnet50")
    model.load_state_dict(reference_state(model, "affinity"))
    model.eval()  # its train() override returns None
    return model


def wsss_affinitynet():
    """wsss's AffinityNet with the reference's head and backbone (rows 7 and 1), seeded."""
    from wsss.models.affinity import AffinityNet

    model = AffinityNet("resnet50", dilate=False, head="reference")
    model.load_state_dict(seeded_state(model))
    return model.eval()


def generate(reference: Path, out: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.npz")) + [out / "manifest.json"]:
        stale.unlink(missing_ok=True)
    inputs = write_inputs(out / IMAGES_DIR)
    golden = Golden(out)
    with ReferenceRuntime(reference) as ref, torch.no_grad():
        key_maps = _row_weights(golden)
        _row_normalize(ref, golden, out)
        _row_cam_normalizer(golden)
        _row_tiles(golden)
        _row_alpha(ref, golden)
        _row_classifier(golden, out)
        with torch.enable_grad():
            _row_puzzle_losses(ref, golden, out)
        cams = _row_make_cam(ref, golden, out)
        _row_crf(ref, golden, out, cams)
        _row_affinity(ref, golden)
        edges = _row_edge_probe(ref, golden, out)
        _row_walk(ref, golden, out, cams, edges)
        _row_affinitynet(ref, golden, out)
        _row_deeplab(ref, golden, out)
        _row_miou(ref, golden)
        manifest = {
            "what": "golden outputs of the official Puzzle-CAM code (issue #25)",
            "reference": {
                "repository": REFERENCE_REPO,
                "commit": ref.commit,
                "files_sha256": ref.hashes,
                "blocks": {name: ref.block_ref(name) for name in BLOCKS},
            },
            "regenerate": (
                ".venv/bin/python benchmarks/reference_parity.py --reference PATH "
                "--out tests/golden/reference"
            ),
            "environment": _versions(),
            "patches": [
                "Tensor.cuda / Module.cuda -> identity (CPU)",
                "torch.utils.model_zoo.load_url -> seeded ResNet weights (no download)",
                "cv2, imageio, pandas, torch.utils.tensorboard -> stand-ins if not installed",
                "PIL.Image.CUBIC -> PIL.Image.BICUBIC if missing (Pillow >= 10)",
            ],
            "weights": {"seed": SEED, "fill": "benchmarks/reference_parity.py:seeded_tensor"},
            "key_maps": key_maps,
            "inputs": inputs,
            "rows": golden.rows,
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


def _versions() -> dict[str, str]:
    import PIL

    versions = {"torch": torch.__version__, "numpy": np.__version__, "Pillow": PIL.__version__}
    try:
        from importlib.metadata import version

        versions["pydensecrf2"] = version("pydensecrf2")
    except Exception:  # noqa: BLE001 - only a note in the manifest
        versions["pydensecrf2"] = "unknown"
    return versions


def _row_weights(golden: Golden) -> dict:
    """The key maps, checked strictly against the wsss models, with the tensors' digests."""
    import core.networks as networks

    from wsss.models.deeplab import DeepLabV3Plus

    print("weights and key maps")
    maps: dict[str, dict] = {}
    ref = build_reference_classifier()
    ours = wsss_classifier()
    maps["classifier"] = {"map": check_strict(ref, ours, "classifier")}
    maps["classifier"]["digests"] = {k: tensor_digest(v) for k, v in ours.state_dict().items()}
    ref_seg = networks.DeepLabv3_Plus("resnet50", NUM_CLASSES + 1, mode="fix")
    ref_seg.load_state_dict(reference_state(ref_seg, "deeplab"))
    seg = DeepLabV3Plus("resnet50", NUM_CLASSES + 1)
    seg.load_state_dict(seeded_state(seg))
    maps["deeplab"] = {"map": check_strict(ref_seg, seg, "deeplab")}
    maps["deeplab"]["digests"] = {k: tensor_digest(v) for k, v in seg.state_dict().items()}
    ref_aff = build_reference_affinitynet()
    aff = wsss_affinitynet()
    maps["affinity"] = {"map": check_strict(ref_aff, aff, "affinity")}
    maps["affinity"]["digests"] = {k: tensor_digest(v) for k, v in aff.state_dict().items()}
    return maps


def _row_normalize(ref: ReferenceRuntime, golden: Golden, out: Path) -> None:
    from tools.ai.augment_utils import Normalize

    print("input normalisation")
    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    arrays = {name: normalize(read_image(out, name)) for name in INPUTS}
    golden.save(
        "normalize",
        {
            "row": "input normalisation",
            "reference": "tools/ai/augment_utils.py:Normalize (on VOC_Dataset.get_image: PIL RGB)",
            "wsss": "wsss.data.transforms.normalize / to_chw_uint8 + normalize_uint8",
            "layout": "H x W x 3 float32 per input image",
        },
        **arrays,
    )


def _row_cam_normalizer(golden: Golden) -> None:
    from tools.ai.torch_utils import make_cam

    print("CAM normaliser")
    rng = np.random.Generator(np.random.PCG64(_seed_of("cam-normalizer")))
    maps = rng.normal(0.0, 3.0, (2, 5, 6, 7)).astype(np.float32)
    maps[0, 2] = -np.abs(maps[0, 2])  # an all-negative map
    x = torch.from_numpy(maps)
    golden.save(
        "cam_normalizer",
        {
            "row": "CAM normaliser",
            "reference": "tools/ai/torch_utils.py:make_cam (ReLU(x - eps) / (max + eps))",
            "wsss": "wsss.cam_math.normalize_cams",
        },
        maps=maps,
        cams=make_cam(x),
    )


def _row_tiles(golden: Golden) -> None:
    from core.puzzle_utils import merge_features, tile_features

    print("tiling and merging")
    rng = np.random.Generator(np.random.PCG64(_seed_of("tiles")))
    x = torch.from_numpy(rng.normal(size=(2, 3, 8, 12)).astype(np.float32))
    tiled = tile_features(x, 4)
    tiled9 = tile_features(x[..., :6, :12], 9)
    golden.save(
        "tiles",
        {
            "row": "tiling and merging",
            "reference": "core/puzzle_utils.py:tile_features, merge_features",
            "wsss": "wsss.puzzle.tile, wsss.puzzle.merge",
        },
        x=x,
        tiled4=tiled,
        merged4=merge_features(tiled * 2.0 + 1.0, 4, 2),
        tiled9=tiled9,
        merged9=merge_features(tiled9 - 0.5, 9, 2),
    )


def _row_alpha(ref: ReferenceRuntime, golden: Golden) -> None:
    print("alpha schedule")
    max_iteration = 200
    alphas = []
    for iteration in range(max_iteration):
        args = argparse.Namespace(alpha=4.0, alpha_schedule=0.5)
        ns = {"args": args, "iteration": iteration, "max_iteration": max_iteration}
        alphas.append(ref.run_block("alpha", ns)["alpha"])
    golden.save(
        "alpha",
        {
            "row": "alpha schedule",
            "reference": ref.block_ref("alpha") + " (alpha 4, alpha_schedule 0.5)",
            "wsss": "wsss.puzzle.alpha_at(iteration / max_iteration, 4, 0.5)",
        },
        iterations=np.arange(max_iteration),
        max_iteration=np.array(max_iteration),
        alpha=np.array(alphas, dtype=np.float64),
    )


def _images_tensor(out: Path, names: list[str]) -> torch.Tensor:
    from tools.ai.augment_utils import Normalize

    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return torch.stack(
        [torch.from_numpy(normalize(read_image(out, n)).transpose(2, 0, 1)) for n in names]
    )


def _row_classifier(golden: Golden, out: Path) -> None:
    print("classifier: CAMs and logits")
    arrays = {}
    for variant, dilated in (("reference", False), ("dilated", True)):
        model = build_reference_classifier(dilated=dilated)
        for name in ("a", "b"):
            logits, features = model(_images_tensor(out, [name]), with_cam=True)
            arrays[f"{variant}_{name}_logits"] = logits
            arrays[f"{variant}_{name}_maps"] = features
    golden.save(
        "classifier",
        {
            "row": "classifier CAMs / logits (issue #25 row 1)",
            "reference": "core/networks.py:Classifier.forward(x, with_cam=True), resnet50, eval",
            "variants": {
                "reference": "as the reference runs: strides (2,2,2,1), no dilation",
                "dilated": "the reference ResNet built with dilations=(1,1,1,2) (wsss's layout)",
            },
            "wsss": "wsss.models.classifier.CamClassifier('resnet50', 20)",
        },
        **arrays,
    )


PUZZLE_IMAGES = ("b", "a")  # the batch: image b and the top-left 64 x 96 of image a


def puzzle_batch(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The puzzle row's batch: normalised images (2 x 3 x 64 x 96) and one-hot labels."""
    from tools.ai.augment_utils import Normalize

    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    images = []
    for name in PUZZLE_IMAGES:
        image = np.asarray(read_image(folder, name))[:64, :96]
        images.append(torch.from_numpy(normalize(image).transpose(2, 0, 1).copy()))
    labels = torch.from_numpy(np.stack([one_hot(INPUTS["b"][4]), one_hot(INPUTS["a"][4])]))
    return torch.stack(images), labels


def _row_puzzle_losses(ref: ReferenceRuntime, golden: Golden, out: Path) -> None:
    print("puzzle losses")
    arrays = {}
    images, labels = puzzle_batch(out)
    arrays["images"], arrays["labels"] = images, labels
    for level in ("feature", "cam"):
        model = build_reference_classifier()
        ns = ref.script_namespace("train_classification_with_puzzle.py")
        x = images.clone().requires_grad_(True)
        args = argparse.Namespace(
            num_pieces=4, batch_size=2, level=level, re_loss_option="masking",
            alpha=4.0, alpha_schedule=0.5,
        )  # fmt: skip
        ns.update(
            model=model,
            images=x,
            labels=labels,
            args=args,
            loss_option=["cl", "pcl", "re"],
            class_loss_fn=torch.nn.MultiLabelSoftMarginLoss(reduction="none"),
            gap_fn=model.global_average_pooling_2d,
            re_loss_fn=ns["L1_Loss"],
            iteration=30,
            max_iteration=100,
        )
        ref.run_block("puzzle_step", ns)
        ns["loss"].backward()
        for key in ("class_loss", "p_class_loss", "re_loss", "loss"):
            arrays[f"{level}_{key}"] = ns[key].detach()
        arrays[f"{level}_alpha"] = np.array(ns["alpha"])
        if level == "feature":  # the gradients of the default level only: they are large
            arrays[f"{level}_grad_classifier"] = model.classifier.weight.grad
            arrays[f"{level}_grad_images"] = x.grad
    golden.save(
        "puzzle_losses",
        {
            "row": "the three Puzzle-CAM losses and their gradients",
            "reference": ref.block_ref("puzzle_step")
            + " (loss_option cl_pcl_re, L1, masking, 4 pieces, alpha 4, schedule 0.5, "
            "iteration 30 of 100; model in eval mode)",
            "wsss": "wsss.puzzle.puzzle_losses with PuzzleConfig(re_level=...)",
        },
        **arrays,
    )


MAKE_CAM_SCALES = {"s1": (1.0,), "s4": (0.5, 1.0, 1.5, 2.0)}


def _row_make_cam(ref: ReferenceRuntime, golden: Golden, out: Path) -> dict:
    print("make-cam")
    model = build_reference_classifier()
    arrays, cams = {}, {}
    for tag, scales in MAKE_CAM_SCALES.items():
        for name in ("a", "b"):
            image = read_image(out, name)
            ns = ref.script_namespace("inference_classification.py")
            ns.update(
                model=model,
                normalize_fn=ns["Normalize"](IMAGENET_MEAN, IMAGENET_STD),
                scales=list(scales),
                ori_image=image,
                label=one_hot(INPUTS[name][4]),
            )
            ns["ori_w"], ns["ori_h"] = image.size
            ref.run_block("get_cam", ns)
            ref.run_block("make_cam", ns)
            arrays[f"{tag}_{name}_keys"] = ns["keys"]
            arrays[f"{tag}_{name}_cam"] = ns["strided_cams"]
            arrays[f"{tag}_{name}_hr_cam"] = ns["hr_cams"]
            cams[(tag, name)] = (_numpy(ns["keys"]), _numpy(ns["strided_cams"]),
                                 _numpy(ns["hr_cams"]))  # fmt: skip
    golden.save(
        "make_cam",
        {
            "row": "make-cam (issue #25 row 2)",
            "reference": ref.block_ref("get_cam") + " + " + ref.block_ref("make_cam"),
            "scales": {k: list(v) for k, v in MAKE_CAM_SCALES.items()},
            "wsss": "wsss.stages.make_cam.run / wsss.inference.make_cams",
        },
        **arrays,
    )
    return cams


CONFIDENT_THRESHOLDS = {"readme": (0.40, 0.10), "default": (0.30, 0.05)}
RW_THRESHOLD = 0.35


def _row_crf(ref: ReferenceRuntime, golden: Golden, out: Path, cams: dict) -> None:
    print("CRF: confident and plain pseudo labels")
    arrays = {}
    for name in ("a", "b"):
        keys, _, hr = cams[("s4", name)]
        for tag, (fg, bg) in CONFIDENT_THRESHOLDS.items():
            ns = ref.script_namespace("make_affinity_labels.py")
            ns.update(
                image=np.asarray(read_image(out, name)),
                cam_dict={"keys": keys, "hr_cam": hr},
                args=argparse.Namespace(fg_threshold=fg, bg_threshold=bg),
            )
            ref.run_block("confident", ns)
            arrays[f"confident_{tag}_{name}"] = ns["conf"].astype(np.uint8)
        for iterations in (1, 10):
            ns = ref.script_namespace("make_pseudo_labels.py")
            ns.update(
                ori_image=read_image(out, name),
                predict_dict={"keys": keys, "rw": hr},
                args=argparse.Namespace(threshold=RW_THRESHOLD, crf_iteration=iterations),
            )
            ref.run_block("pseudo", ns)
            arrays[f"pseudo_t{iterations}_{name}"] = ns["conf"].astype(np.uint8)
    golden.save(
        "crf",
        {
            "row": "dense CRF pseudo labels (issue #25 row 3)",
            "reference": ref.block_ref("confident")
            + " (crf_inference_label, 10 iterations) and "
            + ref.block_ref("pseudo")
            + " (threshold 0.35, crf_iteration 1 and 10)",
            "inputs": "make_cam.npz s4_<image>_keys / s4_<image>_hr_cam (fed as 'rw' too)",
            "confident_thresholds": {k: list(v) for k, v in CONFIDENT_THRESHOLDS.items()},
            "wsss": "wsss.pseudo.confident_labels / pseudo_label with CrfParams",
        },
        **arrays,
    )


AFFINITY_RADIUS = 10


def _row_affinity(ref: ReferenceRuntime, golden: Golden) -> None:
    from core.aff_utils import GetAffinityLabelFromIndices, PathIndex
    from core.networks import AffinityNet as RefAffinityNet
    from tools.ai.augment_utils import Resize_For_Mask

    print("affinity labels, affinities, loss")
    labels = affinity_label_map()
    size = labels.shape
    path_index = PathIndex(radius=AFFINITY_RADIUS, default_size=size)
    bg, fg, neg = GetAffinityLabelFromIndices(path_index.src_indices, path_index.dst_indices)(
        labels
    )
    edge = torch.from_numpy(affinity_edge_map())
    # AffinityNet.to_affinity is a method over the path-index buffers; run it as it stands
    # on an object holding just those.
    holder = types.SimpleNamespace(
        n_path_lengths=len(path_index.path_indices),
        _buffers={
            f"path_indices_{i}": torch.from_numpy(p) for i, p in enumerate(path_index.path_indices)
        },
    )
    aff = RefAffinityNet.to_affinity(holder, edge[None, None])
    ns = ref.script_namespace("train_affinitynet.py")
    ns.update(aff=aff, bg_pos_label=bg[None], fg_pos_label=fg[None], neg_label=neg[None])
    ref.run_block("aff_loss", ns)
    square = np.zeros((64, 64), dtype=np.uint8)
    square[10:40, 5:30], square[30:60, 35:62], square[38:42, :] = 3, 7, 255
    small = Resize_For_Mask(16)({"mask": square})["mask"]
    golden.save(
        "affinity",
        {
            "row": "affinity labels and affinities on pairs, affinity loss (rows 4-6)",
            "reference": "core/aff_utils.py:PathIndex(radius 10), GetAffinityLabelFromIndices; "
            "core/networks.py:AffinityNet.to_affinity; "
            + ref.block_ref("aff_loss")
            + "; tools/ai/augment_utils.py:Resize_For_Mask",
            "pairs": "reference layout: direction d (search_dst order) x source index "
            "(rows 0..h-r, cols r-1..w-r of the grid, r = radius - 1 ... row-major)",
            "wsss": "wsss.affinity.pair_labels, pair_affinities, affinity_loss, labels_at_stride",
        },
        labels=labels,
        edge=edge,
        directions=np.asarray(path_index.search_dst, dtype=np.int64),
        src_indices=path_index.src_indices,
        bg=bg.numpy().astype(bool),
        fg=fg.numpy().astype(bool),
        neg=neg.numpy().astype(bool),
        affinity=aff[0],
        loss=ns["loss"].detach(),
        bg_loss=ns["bg_pos_aff_loss"].detach(),
        fg_loss=ns["fg_pos_aff_loss"].detach(),
        neg_loss=ns["neg_aff_loss"].detach(),
        mask64=square,
        mask16=small.astype(np.uint8),
    )


def _row_edge_probe(ref: ReferenceRuntime, golden: Golden, out: Path) -> dict:
    from core.networks import AffinityNet as RefAffinityNet

    print("boundary map flip merge (get_edge) with a probe net")
    probe = probe_edge_net()
    holder = types.SimpleNamespace(forward=probe)
    arrays, edges = {}, {}
    for name in ("a", "b"):
        ns = ref.script_namespace("inference_rw.py")
        ns.update(
            ori_image=read_image(out, name),
            normalize_fn=ns["Normalize"](IMAGENET_MEAN, IMAGENET_STD),
            model=types.SimpleNamespace(
                get_edge=lambda x, *a, **k: RefAffinityNet.get_edge(holder, x, *a, **k)
            ),
        )
        ref.run_block("rw_edge", ns)
        arrays[f"edge_{name}"] = ns["edge"]
        edges[name] = ns["edge"]
    golden.save(
        "edge_probe",
        {
            "row": "AffinityNet boundary map: normalise, flip pair, pad to 512, merge (row 7)",
            "reference": ref.block_ref("rw_edge") + " with core/networks.py:AffinityNet.get_edge",
            "net": "probe_edge_net(): one conv, weights stored here (probe_weight, probe_bias)",
            "wsss": "wsss.stages.make_rw.predict_boundary(probe, images, flip=True)",
        },
        probe_weight=probe.weight.detach(),
        probe_bias=probe.bias.detach(),
        **arrays,
    )
    return edges


def _row_walk(ref: ReferenceRuntime, golden: Golden, out: Path, cams: dict, edges) -> None:
    from core.aff_utils import propagate_to_edge

    print("random walk")
    arrays = {}
    # "a1": image a's first class alone (one map: the global and per-class maxima agree)
    for tag, name, maps in (
        ("a", "a", slice(None)),
        ("b", "b", slice(None)),
        ("a1", "a", slice(0, 1)),
    ):
        keys, strided, _ = cams[("s4", name)]
        image = read_image(out, name)
        ns = ref.script_namespace("inference_rw.py")
        ns.update(
            cam_downsized_values=torch.from_numpy(strided[maps].copy()),
            edge=edges[name],
            args=argparse.Namespace(beta=10, exp_times=8),
            propagate_to_edge=propagate_to_edge,
        )
        ns["ori_w"], ns["ori_h"] = image.size
        ref.run_block("rw_walk", ns)
        arrays[f"rw_{tag}"] = ns["rw"]
        arrays[f"rw_up_{tag}"] = ns["rw_up"]
    golden.save(
        "random_walk",
        {
            "row": "random walk propagation and output normalisation (rows 4-5)",
            "reference": ref.block_ref("rw_walk")
            + " (core/aff_utils.py:propagate_to_edge, beta 10, exp_times 8, radius 5)",
            "inputs": "make_cam.npz s4_<image>_cam (a1: the first map of a), "
            "edge_probe.npz edge_<image>",
            "wsss": "wsss.stages.make_rw.walk_batch / wsss.affinity.random_walk",
        },
        **arrays,
    )


def _row_affinitynet(ref: ReferenceRuntime, golden: Golden, out: Path) -> None:
    print("AffinityNet on seeded weights (pads to 512: the slow row)")
    model = build_reference_affinitynet()
    arrays = {}
    for name in ("a",):
        images = _images_tensor(out, [name])
        both = torch.cat([images, images.flip(-1)])
        arrays[f"edge_{name}"] = model.get_edge(both)
        arrays[f"logits_{name}"] = model(images)  # no padding: forward at the image size
    golden.save(
        "affinitynet",
        {
            "row": "AffinityNet edge output on seeded weights (row 7)",
            "reference": "core/networks.py:AffinityNet.get_edge (flip pair, zero pad to 512) "
            "and .forward at the image size",
            "wsss": "wsss.models.affinity.AffinityNet(head='reference', dilate=False) and "
            "wsss.stages.make_rw.predict_boundary (pad_to=edge_input)",
        },
        **arrays,
    )


SEG_SCALES = {"s1": (1.0,), "s4": (0.5, 1.0, 1.5, 2.0)}


def _row_deeplab(ref: ReferenceRuntime, golden: Golden, out: Path) -> None:
    import core.networks as networks

    print("DeepLabv3+ and its TTA merge")
    model = networks.DeepLabv3_Plus("resnet50", NUM_CLASSES + 1, mode="fix")
    model.load_state_dict(reference_state(model, "deeplab"))
    model.eval()
    images = _images_tensor(out, ["c"])
    arrays = {"logits_c": model(images)}
    for tag, scales in SEG_SCALES.items():
        ns = ref.script_namespace("inference_segmentation.py")
        ns.update(
            model=model,
            ori_image=read_image(out, "c"),
            normalize_fn=ns["Normalize"](IMAGENET_MEAN, IMAGENET_STD),
            scales=list(scales),
            args=argparse.Namespace(iteration=0),
        )
        ns["ori_w"], ns["ori_h"] = ns["ori_image"].size
        ref.run_block("seg_inference", ns)
        ref.run_block("seg_tta", ns)
        arrays[f"{tag}_probs"] = np.ascontiguousarray(ns["preds"].transpose(2, 0, 1))
        arrays[f"{tag}_pred"] = ns["pred_mask"].astype(np.uint8)
    golden.save(
        "deeplab",
        {
            "row": "DeepLabv3+ output (row 8) and segmentation TTA merge (row 9)",
            "reference": "core/networks.py:DeepLabv3_Plus('resnet50', mode='fix', "
            "use_group_norm=False), eval; "
            + ref.block_ref("seg_inference")
            + " + "
            + ref.block_ref("seg_tta")
            + " (no CRF)",
            "wsss": "wsss.models.deeplab.DeepLabV3Plus, wsss.inference.segment_probs",
        },
        **arrays,
    )


def _row_miou(ref: ReferenceRuntime, golden: Golden) -> None:
    import importlib

    from PIL import Image
    from tools.ai.evaluate_utils import Calculator_For_mIoU

    print("mIoU conventions")
    arrays = {}
    for tag, (gt, pred) in miou_cases().items():
        calculator = Calculator_For_mIoU(str(ref.root / "data" / "VOC_2012.json"))
        calculator.add(pred, gt)
        miou, miou_fg, iou, fp, fn = calculator.get(detail=True)
        arrays[f"{tag}_gt"], arrays[f"{tag}_pred"] = gt, pred
        arrays[f"{tag}_calculator_miou"] = np.array(miou)
        arrays[f"{tag}_calculator_iou"] = np.array(list(iou.values()))
        # evaluate.py (the script that scores DeepLab on val), on the same pair as PNGs.
        with tempfile.TemporaryDirectory() as tmp, _chdir(tmp):
            predictions = Path(tmp) / "experiments" / "predictions" / "case"
            predictions.mkdir(parents=True)
            gt_dir = Path(tmp) / "gt"
            gt_dir.mkdir()
            Image.fromarray(pred).save(predictions / "x.png")
            Image.fromarray(gt).save(gt_dir / "x.png")
            argv = ["evaluate.py", "--experiment_name", "case", "--gt_dir", str(gt_dir) + "/"]
            with _patched(sys, "argv", argv):
                sys.modules.pop("evaluate", None)
                evaluate = importlib.import_module("evaluate")
            loglist = evaluate.do_python_eval(
                evaluate.predict_folder, str(gt_dir), np.array(["x"]), 21, num_cores=1
            )
            sys.modules.pop("evaluate", None)
        arrays[f"{tag}_evaluate_miou"] = np.array(loglist["mIoU"])
        arrays[f"{tag}_evaluate_iou"] = np.array(
            [loglist[c] for c in evaluate.categories], dtype=np.float64
        )
    golden.save(
        "miou",
        {
            "row": "mIoU conventions (row 10)",
            "reference": "tools/ai/evaluate_utils.py:Calculator_For_mIoU (training-time) and "
            "evaluate.py:do_python_eval (--mode png), 21 VOC classes",
            "cases": "plain: a predicted class absent from GT, 18 classes absent from both; "
            "with_255: the same with three labelled pixels predicted 255",
            "wsss": "wsss.metrics.ConfusionMatrix(21)",
        },
        **arrays,
    )


@contextlib.contextmanager
def _chdir(path: str) -> Iterator[None]:
    import os

    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="PuzzleCAM checkout")
    parser.add_argument("--out", type=Path, default=Path("tests/golden/reference"))
    args = parser.parse_args(argv)
    generate(args.reference, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

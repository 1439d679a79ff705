"""Dense CRF (Krähenbühl & Koltun) refinement of label maps, through pydensecrf.

pydensecrf is optional (it is a compiled extension that does not build everywhere), so it is
imported on first use and its absence is one line telling the user how to get it or skip it.
The CRF works in a compact label space 0..n-1 (background + the image's classes); callers
map the result back to dataset classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from wsss.data.palette import IGNORE
from wsss.errors import WsssError

Unary = Literal["labels", "scores"]

MISSING_CRF = (
    "dense CRF needs pydensecrf: pip install pydensecrf2 (or 'wsss[crf]'), or pass --no-crf"
)


@dataclass(frozen=True)
class CrfParams:
    """Kernel parameters (the paper's defaults), mean-field iterations and unary type.

    sxy=50 / srgb=13 suit small images too: narrower kernels did not help on the 128 px demo.
    The unary defaults to "scores": the labels unary holds every seed pixel with the same
    gt_prob, so the bilateral kernel turns each object into a colour majority vote (seeds
    covering under half of an object's body are erased down to its most salient part), while
    soft scores keep strong CAM pixels fixed. docs/pseudo_labels.md has the measurements.
    """

    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0
    iterations: int = 10
    unary: Unary = "scores"
    gt_prob: float = 0.7

    def __post_init__(self) -> None:
        if self.unary not in ("labels", "scores"):
            raise WsssError(f"--unary must be 'labels' or 'scores', got {self.unary!r}")
        if not 0.0 < self.gt_prob < 1.0:
            raise WsssError(f"--gt-prob must be in (0, 1), got {self.gt_prob}")
        if self.iterations < 1:
            raise WsssError(f"--crf-iters must be at least 1, got {self.iterations}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if getattr(self, name) <= 0:
                raise WsssError(f"CRF {name} must be positive, got {getattr(self, name)}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


CrfPreset = Literal["wsss", "reference", "psa", "deeplab", "afa"]

# Every CRF parameter of each named code base (docs/parity.md names the file of each): wsss's
# defaults; the official Puzzle-CAM code's pseudo-label CRF (hard-label unary); psa's, whose
# soft-score CRF Puzzle-CAM also applies to its segmenter's output; deeplab-pytorch's; AFA's.
CRF_PRESETS: dict[str, CrfParams] = {
    # Gaussian sxy, compat; bilateral sxy, srgb, compat; iterations; unary; gt_prob
    "wsss": CrfParams(),
    "reference": CrfParams(3.0, 3.0, 50.0, 5.0, 10.0, 10, "labels", 0.7),
    "psa": CrfParams(3.0, 3.0, 80.0, 13.0, 10.0, 10, "scores", 0.7),
    "deeplab": CrfParams(1.0, 3.0, 67.0, 3.0, 4.0, 10, "scores", 0.7),
    "afa": CrfParams(3.0, 3.0, 64.0, 5.0, 4.0, 10, "scores", 0.7),
}
# Where a segmenter's probabilities are refined (predict), the official code uses psa's CRF.
SEGMENTER_PRESETS: dict[str, str] = {"reference": "psa"}


def crf_preset(name: str, segmenter: bool = False, **given: Any) -> CrfParams:
    """The preset's parameters with each given value (not None) in place of the preset's own.

    `segmenter`: the parameters for refining a segmenter's probabilities (`wsss predict`),
    where `reference` means the official code's prediction CRF (psa's values).
    """
    if name not in CRF_PRESETS:
        raise WsssError(f"--crf-preset must be one of {'|'.join(CRF_PRESETS)}, got '{name}'")
    base = CRF_PRESETS[SEGMENTER_PRESETS.get(name, name) if segmenter else name]
    return replace(base, **{key: value for key, value in given.items() if value is not None})


def densecrf_module() -> Any:
    """Import pydensecrf (with its `densecrf` and `utils`), or raise the one-line install hint."""
    try:
        import pydensecrf
        import pydensecrf.densecrf
        import pydensecrf.utils
    except ImportError:
        raise WsssError(MISSING_CRF) from None
    return pydensecrf


def crf_refine_labels(
    image: np.ndarray, labels: np.ndarray, n_labels: int, params: CrfParams
) -> np.ndarray:
    """Refine a hard label map (values 0..n_labels-1; 255 = unknown, uniform unary)."""
    _check_image(image, labels.shape)
    if n_labels < 2:
        return np.zeros(labels.shape, dtype=np.uint8)
    flat = labels.reshape(-1)
    unknown = flat == IGNORE
    if (flat[~unknown] >= n_labels).any():
        raise ValueError(f"label map holds values >= n_labels ({n_labels})")
    utils = densecrf_module().utils
    unary = utils.unary_from_labels(
        np.where(unknown, 0, flat), n_labels, gt_prob=params.gt_prob, zero_unsure=False
    )
    unary[:, unknown] = -np.log(1.0 / n_labels)
    return _infer(image, unary, n_labels, params)


def crf_refine_probs(image: np.ndarray, probs: np.ndarray, params: CrfParams) -> np.ndarray:
    """Refine per-pixel probabilities (n, H, W) that sum to 1 over the first axis."""
    _check_image(image, probs.shape[1:])
    n_labels = probs.shape[0]
    if n_labels < 2:
        return np.zeros(probs.shape[1:], dtype=np.uint8)
    unary = densecrf_module().utils.unary_from_softmax(probs)
    return _infer(image, unary, n_labels, params)


def _infer(image: np.ndarray, unary: np.ndarray, n_labels: int, params: CrfParams) -> np.ndarray:
    height, width = image.shape[:2]
    crf = densecrf_module().densecrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_sxy,
        srgb=params.bilateral_srgb,
        rgbim=np.require(image, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"]),  # pydensecrf needs both
        compat=params.bilateral_compat,
    )
    q = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return q.reshape(n_labels, height, width).argmax(axis=0).astype(np.uint8)


def _check_image(image: np.ndarray, shape: tuple[int, ...]) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"CRF image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if tuple(image.shape[:2]) != tuple(shape):
        raise ValueError(f"CRF image size {image.shape[:2]} differs from the labels' {shape}")

"""Checkpoints: written atomically, loaded with `weights_only=True`, checked for their kind.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads without
unpickling arbitrary objects:
```
{"format": "wsss-checkpoint", "version": 1, "kind": "cam_classifier" | "deeplab" | ...,
 "model_config": {...}, "classes": [...], "model": state_dict,
 "optimizer": ..., "schedule_step": int, "epoch": int, "rng": {...}, "args": {...},
 "versions": {...}}
```
Later stages read the model config and the class list from it instead of asking again.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from wsss.errors import file_error
from wsss.io import atomic_write, json_field

FORMAT = "wsss-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, kind: str, **content: Any) -> Path:
    """Serialise to memory first, then rename into place: a kill never truncates a checkpoint."""
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, **content}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load safely; a missing, truncated, foreign or wrong-kind file is a one-line error
    (`kind`: the kind expected, or the kinds that will do)."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise file_error(
            path, f"not a readable checkpoint (truncated or not a wsss file?): {reason[:200]}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise file_error(path, "not a wsss checkpoint (no wsss format marker)")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and payload.get("kind") not in kinds:
        expected = " or ".join(f"'{k}'" for k in kinds)
        raise file_error(path, f"checkpoint of kind '{payload.get('kind')}', expected {expected}")
    # What later stages read back, field by field (the tensors are checked by load_state_dict).
    for key, types in _FIELDS.items():
        json_field(payload, key, types, path, required=key in ("model", "model_config"))
    classes = payload.get("classes", [])
    if not all(isinstance(name, str) for name in classes):
        raise file_error(path, "field 'classes' must be a list of class names")
    check_finite_weights(path, payload["model"])
    return payload


def check_finite_weights(path: str | Path, state: dict[str, Any]) -> None:
    """A NaN or infinite weight makes every output NaN (all-NaN CAMs, all-background
    predictions that still score): refused at load, naming the tensor."""
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int(finite.numel() - int(finite.sum()))
            raise file_error(
                path,
                f"weights tensor '{name}' holds {bad} non-finite value(s) (NaN or inf) of "
                f"{tensor.numel()}; the checkpoint is damaged or its training diverged",
            )


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "model_config": dict,
    "classes": list,
    "epoch": int,
    "args": dict,
    "runtime": dict,
}


def check_classes(path: str | Path, checkpoint: dict[str, Any], classes: tuple[str, ...]) -> None:
    """The dataset's class list must be the one the model was trained on."""
    trained = tuple(checkpoint.get("classes", ()))
    if trained != tuple(classes):
        raise file_error(
            path,
            f"model was trained on {len(trained)} classes ({', '.join(trained[:5])}"
            f"{', ...' if len(trained) > 5 else ''}) but the dataset has {len(classes)} "
            f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})",
        )

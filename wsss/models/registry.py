"""Checkpoint kind -> model class: the one place that pairs them."""

from __future__ import annotations

from wsss.errors import WsssError
from wsss.models import CheckpointModel
from wsss.models.affinity import AffinityNet
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus

MODELS: dict[str, type[CheckpointModel]] = {
    cls.KIND: cls for cls in (CamClassifier, DeepLabV3Plus, AffinityNet)
}


def model_class(kind: str) -> type[CheckpointModel]:
    try:
        return MODELS[kind]
    except KeyError:
        raise WsssError(f"no model for checkpoint kind '{kind}'") from None

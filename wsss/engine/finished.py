"""Train, resume, or reuse a finished model: what the orchestrators do with every trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsss.engine.checkpoint import load_checkpoint
from wsss.engine.trainer import check_same_args
from wsss.ui import info

FINAL = "final.pt"


def train_unless_finished(train: Callable[[Any], Any], config: Any) -> Path:
    """Run a trainer stage (its config has `out`, `resume` on) unless its final.pt, made
    with the same options (a changed recipe must not reuse an old model), exists."""
    final = Path(config.out) / FINAL
    if final.is_file():
        check_same_args(final, load_checkpoint(final).get("args", {}), config.args())
        info(f"{final} exists: skipped")
        return final
    return Path(train(config).final)

"""`wsss import-checkpoint`: a checkpoint of the official Puzzle-CAM code as a wsss one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsss.checkpoint_import import Imported, import_checkpoint
from wsss.configs.checkpoints import ImportCheckpointConfig
from wsss.data.classes import VOC_CLASSES, read_class_list


@dataclass
class ImportCheckpointResult:
    imported: Imported

    def summary_rows(self) -> list[tuple[str, object]]:
        done = self.imported
        config = done.model.config()
        rows: list[tuple[str, object]] = [
            ("model", f"{done.model.NAME} ({done.kind})"),
            ("backbone", f"{config['backbone']}, layer4 undilated"),
            ("classes", len(done.classes)),
        ]
        if "head_norm" in config:
            rows.append(("head", f"{config['head_norm']}, align_corners={config['align_corners']}"))
        elif "head" in config:  # the affinity net
            rows.append(("head", f"{config['head']} (train-aff --aff-head {config['head']})"))
        return [
            *rows,
            ("tensors", f"{done.reference_keys} reference keys -> {done.tensors} wsss tensors"),
            ("checkpoint", done.out),
        ]


def run(config: ImportCheckpointConfig) -> ImportCheckpointResult:
    classes = VOC_CLASSES if config.class_list is None else read_class_list(config.class_list)
    imported = import_checkpoint(
        config.source, config.kind, Path(config.file), Path(config.out), classes
    )
    return ImportCheckpointResult(imported)

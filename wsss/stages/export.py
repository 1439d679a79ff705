"""`wsss export`: a trained segmenter or CAM classifier as a TorchScript or ONNX file that runs
without wsss (`wsss.export` builds and checks it; docs/export.md shows how to run it)."""

from __future__ import annotations

from dataclasses import dataclass

from wsss.checkpoints import load_model
from wsss.configs.checkpoints import ExportConfig
from wsss.export import Exported, export, export_metadata, wrap
from wsss.models.classifier import CamClassifier
from wsss.models.deeplab import DeepLabV3Plus
from wsss.resume import file_sha256

KINDS = (DeepLabV3Plus.KIND, CamClassifier.KIND)


@dataclass
class ExportResult:
    exported: Exported

    def summary_rows(self) -> list[tuple[str, object]]:
        done, meta = self.exported, self.exported.metadata
        size = done.path.stat().st_size / 1e6
        return [
            ("model", f"{meta['kind']}, {meta['model_config'].get('backbone')}"),
            ("classes", len(meta["classes"])),
            ("input", "float32 RGB N x 3 x H x W, 0..255, any size"),
            ("outputs", ", ".join(meta["outputs"])),
            ("flip", meta["flip"]),
            ("checked", done.checked),
            (done.format, f"{done.path} ({size:.1f} MB)"),
        ]


def run(config: ExportConfig) -> ExportResult:
    model, checkpoint = load_model(config.checkpoint, KINDS, None)
    kind = checkpoint["kind"]
    metadata = export_metadata(
        kind, tuple(checkpoint.get("classes", ())), checkpoint["model_config"], config.flip,
        config.merge, file_sha256(config.checkpoint),
    )  # fmt: skip
    wrapper = wrap(model, kind, config.flip, config.merge)
    return ExportResult(export(wrapper, config.format, config.out, metadata))

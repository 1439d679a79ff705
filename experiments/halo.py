"""Where the thresholded CAMs' extra foreground lies (issue #27: the sparse-small miss).

At a threshold t the strongest CAM's foreground splits, against the masks, into the objects
it covers, a halo (pixels off the objects in a blob that touches one) and separate blobs (off
every object). A rule that drops blobs could fix separate blobs; a halo joined to the objects
can only be cut by a higher t (or by something that sees the object's outline).

`scales` asks whether the halo is the blur of the coarse scales: make-cam of each scale
alone (with its flip) on the first N train images of a saved run, each scale's CAM scored
against the masks over t, beside the merged CAMs the run made.

    python experiments/halo.py shares runs/thresholds/tuning/sparse-small-191 ... [--t 0.16,0.38]
    python experiments/halo.py scales runs/thresholds/tuning/sparse-small-191 ... [--images 100]
    python experiments/halo.py picture RUN ... --out docs/halo_cams.png [--images 4]
        [--cams cams_cam_plain,cams,cams_cam_full]      # a row per run and CAM folder
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import typer
from scipy import ndimage

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

app = typer.Typer(add_completion=False)
SCALES = ("0.5", "1.0", "1.5", "2.0")  # make-cam's default scales, one at a time


def halo_shares(top: np.ndarray, gt: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """T x 4 pixel counts at each t: objects, objects covered, halo (foreground off the objects
    in a blob touching one), separate (foreground blobs touching none). `gt`: 0 background,
    255 ignored (counted nowhere), else an object."""
    labelled = gt != 255
    objects = labelled & (gt > 0)
    out = np.zeros((len(thresholds), 4), np.int64)
    for k, t in enumerate(thresholds):
        foreground = (top >= t) & labelled
        blobs, _ = ndimage.label(top >= t)  # blobs run through ignored pixels too
        touching = np.unique(blobs[foreground & objects])
        joined = np.isin(blobs, touching[touching > 0])
        off = foreground & ~objects
        out[k] = (objects.sum(), (foreground & objects).sum(), (off & joined).sum(),
                  (off & ~joined).sum())  # fmt: skip
    return out


def _pairs(run: Path, images: int | None) -> list[tuple[str, np.ndarray]]:
    from wsss.data.voc import VocDataset

    voc = VocDataset.open(run / "data")
    ids = voc.split_ids("train")[:images]
    return [(image_id, voc.load_mask(image_id)) for image_id in ids]


def _top(cams: Path, image_id: str) -> np.ndarray:
    from wsss.camfile import find_cam_file, load_cam_file

    return load_cam_file(find_cam_file(cams, image_id)).hr_cam.max(0)


@app.command("shares")
def shares(
    runs: list[Path] = typer.Argument(..., help="saved threshold_sets.py runs"),
    t: str = typer.Option("0.16,0.20,0.30,0.38,0.50", "--t"),
    images: int = typer.Option(120, "--images", help="the first N train images"),
) -> None:
    """Per run and t: recall, halo and separate blobs as shares of the objects' area."""
    thresholds = [float(x) for x in t.split(",")]
    print("| run | t | objects covered | halo / objects | separate / objects | IoU |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        total = sum(halo_shares(_top(run / "cams", i), gt, thresholds)
                    for i, gt in _pairs(run, images))  # fmt: skip
        for threshold, (objects, covered, halo, separate) in zip(thresholds, total, strict=True):
            iou = covered / (objects + halo + separate)
            print(f"| {run.name} | {threshold:.2f} | {covered / objects:.3f} | "
                  f"{halo / objects:.3f} | {separate / objects:.3f} | {iou:.3f} |")  # fmt: skip


@app.command("scales")
def scales(
    runs: list[Path] = typer.Argument(..., help="saved threshold_sets.py runs"),
    images: int = typer.Option(100, "--images", help="the first N train images"),
) -> None:
    """Per run: each scale's CAMs alone against the masks (foreground IoU over t), their
    best t, and the merged CAMs' beside."""
    from cli.main import main

    grid = np.round(np.arange(0.02, 0.951, 0.01), 2)
    print("| run | CAMs | best t | foreground IoU there | foreground / objects at t = 0.20 |")
    print("|---|---|---|---|---|")
    for run in runs:
        pairs = _pairs(run, images)
        listed = run / f"halo_first_{images}.txt"
        listed.write_text("".join(f"{image_id}\n" for image_id, _ in pairs))
        folders = {"merged": run / "cams"}
        for scale in SCALES:
            folders[f"scale {scale}"] = run / f"cams_scale_{scale}"
            code = main(["make-cam", "--checkpoint", str(run / "cam_model" / "final.pt"),
                         "--out", str(folders[f"scale {scale}"]), "--scales", scale,
                         "--data", str(run / "data"), "--split", str(listed),
                         "--device", "cpu"])  # fmt: skip
            if code:
                raise SystemExit(code)
        for name, cams in folders.items():
            total = sum(halo_shares(_top(cams, i), gt, grid) for i, gt in pairs)
            objects, covered, halo, separate = total.T
            iou = covered / (objects + halo + separate)
            best = int(iou.argmax())
            at = int(np.argmin(np.abs(grid - 0.20)))
            area = (covered[at] + halo[at] + separate[at]) / objects[at]
            print(f"| {run.name} | {name} | {grid[best]:.2f} | {iou[best]:.3f} | {area:.2f} |")


def outlined(top: np.ndarray, gt: np.ndarray, side: int) -> np.ndarray:
    """The strongest CAM in grey with the objects' outlines in red, `side` px square."""
    from PIL import Image

    grey = (np.clip(top, 0, 1) * 255).astype(np.uint8)
    tile = np.repeat(grey[..., None], 3, axis=2)
    objects = (gt > 0) & (gt != 255)
    edge = np.zeros_like(objects)
    edge[1:] |= objects[1:] != objects[:-1]
    edge[:, 1:] |= objects[:, 1:] != objects[:, :-1]
    tile[edge] = (255, 0, 0)
    return np.asarray(Image.fromarray(tile).resize((side, side), Image.NEAREST))


@app.command("picture")
def picture(
    runs: list[Path] = typer.Argument(..., help="saved threshold_sets.py runs, one row each"),
    out: Path = typer.Option(..., "--out"),
    images: int = typer.Option(4, "--images", help="the first N train images"),
    side: int = typer.Option(160, "--side"),
    cams: str = typer.Option("cams", "--cams", help="CAM folders of each run, a row each"),
) -> None:
    """The strongest CAM of each run's first train images, the objects outlined."""
    from wsss.overlay import save_png

    folders = [name for name in cams.split(",") if name]
    rows = [np.concatenate([outlined(_top(run / folder, i), gt, side)
                            for i, gt in _pairs(run, images)], axis=1)
            for run in runs for folder in folders]  # fmt: skip
    save_png(out, np.concatenate(rows, axis=0))


if __name__ == "__main__":
    app()

"""experiments/halo.py: the thresholded CAMs' extra foreground split into a halo joined to
the objects and separate blobs, on a hand-made map whose parts are known."""

from __future__ import annotations

import numpy as np

from experiments.halo import halo_shares


def test_halo_and_separate_blobs_are_told_apart() -> None:
    yy, xx = np.mgrid[:40, :40]
    disk = (yy - 12) ** 2 + (xx - 12) ** 2 <= 16  # the object (49 px)
    ring = ((yy - 12) ** 2 + (xx - 12) ** 2 <= 49) & ~disk  # its halo
    blob = (yy >= 30) & (xx >= 30) & (yy < 34) & (xx < 34)  # a distractor, 16 px
    top = np.where(disk, 0.9, np.where(ring, 0.3, np.where(blob, 0.4, 0.0)))
    gt = np.where(disk, 1, 0).astype(np.uint8)
    gt[0, :5] = 255  # ignored pixels count nowhere
    counts = halo_shares(top, gt, [0.2, 0.35, 0.5, 0.95])
    objects = disk.sum()
    assert counts[:, 0].tolist() == [objects] * 4
    assert counts[0].tolist() == [objects, objects, ring.sum(), blob.sum()]
    assert counts[1].tolist() == [objects, objects, 0, blob.sum()]  # the ring cut, not the blob
    assert counts[2].tolist() == [objects, objects, 0, 0]
    assert counts[3].tolist() == [objects, 0, 0, 0]

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


def test_the_picture_outlines_the_objects_in_red_over_the_grey_cam() -> None:
    from experiments.halo import outlined

    top = np.zeros((8, 8))
    top[2:6, 2:6] = 0.5
    gt = np.zeros((8, 8), np.uint8)
    gt[2:6, 2:6] = 3
    gt[0, 0] = 255  # ignored, not an object: no outline
    tile = outlined(top, gt, 16)  # each pixel 2 x 2
    red = (tile == (255, 0, 0)).all(axis=2)[::2, ::2]
    # by hand: a pixel is red where it differs from its upper or its left neighbour
    expected = {(2, c) for c in range(2, 6)} | {(6, c) for c in range(2, 6)}
    expected |= {(r, 2) for r in range(2, 6)} | {(r, 6) for r in range(2, 6)}
    assert set(zip(*np.nonzero(red), strict=True)) == expected and len(expected) == 15
    assert tile[2 * 3, 2 * 3].tolist() == [127, 127, 127]  # the CAM's grey inside

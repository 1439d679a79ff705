"""Host <-> device copies that do not wait for the GPU: `Readback` hands a batch's results
over only once the next batch has been queued; `upload` copies without a wait."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.transfers import Readback, upload

CPU = torch.device("cpu")


def test_results_are_consumed_one_batch_late_in_order() -> None:
    events: list[str] = []
    with Readback(CPU) as readback:
        for i in range(3):
            events.append(f"queued {i}")
            readback.submit(
                [torch.full((2,), float(i)), torch.tensor([i])],
                lambda arrays, i=i: events.append(f"read {i}: {arrays[0].tolist()}"),
            )
    assert events == [
        "queued 0",
        "queued 1",
        "read 0: [0.0, 0.0]",
        "queued 2",
        "read 1: [1.0, 1.0]",
        "read 2: [2.0, 2.0]",  # the last one when the block ends
    ]


def test_consumers_get_numpy_arrays_of_every_tensor() -> None:
    got: list[list[np.ndarray]] = []
    with torch.inference_mode(), Readback(CPU, depth=0) as readback:
        readback.submit([torch.ones(2, 3), torch.zeros(4, dtype=torch.uint8)], got.append)
        assert len(got) == 1  # depth 0: at once
    arrays = got[0]
    assert [a.shape for a in arrays] == [(2, 3), (4,)] and arrays[1].dtype == np.uint8


def test_a_failure_drops_the_pending_results() -> None:
    read: list[int] = []
    with pytest.raises(RuntimeError, match="network"), Readback(CPU) as readback:
        readback.submit([torch.zeros(1)], lambda arrays: read.append(0))
        readback.submit([torch.zeros(1)], lambda arrays: read.append(1))
        raise RuntimeError("network failed")
    assert read == [0]  # batch 1 was never handed over: its files are not written


def test_upload_copies_the_array() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = upload(array, CPU)
    assert torch.equal(tensor, torch.from_numpy(array))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_the_copies_are_pinned_and_arrive_whole() -> None:
    device = torch.device("cuda")
    got: list[list[np.ndarray]] = []
    with Readback(device) as readback:
        for i in range(3):
            x = upload(np.full((256, 256), i, dtype=np.float32), device)
            readback.submit([x * 2 + 1], got.append)
    assert [float(arrays[0].mean()) for arrays in got] == [1.0, 3.0, 5.0]

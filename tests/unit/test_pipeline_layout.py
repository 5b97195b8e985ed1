"""The CUDA pipeline's layout maths, checked on CPU against vst.imaging (the engines' frame API).

The functions are device-agnostic torch ops; on a GPU the same code runs on the compute stream
(tests/gpu/test_cuda_pipeline.py covers that end to end; tests/unit/test_cuda_processor.py runs the
scheduling on a fake device).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vst.imaging import pad_to_multiple, to_frame, to_tensor
from vst.stream.cuda_processor import frame_to_input_, output_to_frame_


@pytest.mark.parametrize("hw", [(36, 48), (34, 49), (33, 51)], ids=["aligned", "pad-2x3", "pad-3x1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_frame_to_input_matches_imaging(hw: tuple[int, int], dtype: torch.dtype) -> None:
    h, w = hw
    frame = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref, _ = pad_to_multiple(to_tensor(frame).to(dtype))
    x = torch.full(ref.shape, 7.0, dtype=dtype)  # garbage: every element must be overwritten
    frame_to_input_(torch.from_numpy(frame), x)
    tol = 0 if dtype == torch.float32 else 2e-3  # fp16: scaling in fp16 vs fp32-then-cast
    assert (x.float() - ref.float()).abs().max().item() <= tol + 1e-6


def test_frame_to_input_channels_last() -> None:
    frame = np.random.default_rng(1).integers(0, 256, (34, 50, 3), dtype=np.uint8)
    ref, _ = pad_to_multiple(to_tensor(frame))
    x = torch.zeros(ref.shape).contiguous(memory_format=torch.channels_last)
    frame_to_input_(torch.from_numpy(frame), x)
    assert torch.equal(x, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_output_to_frame_matches_imaging(dtype: torch.dtype) -> None:
    y = (torch.rand(1, 3, 30, 44, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1).to(dtype)
    y_before = y.clone()
    out = torch.empty(30, 44, 3, dtype=torch.uint8)
    output_to_frame_(y, torch.empty(1, 3, 30, 44), out)
    ref = to_frame(y)
    assert torch.equal(y, y_before)  # the input (blend history / engine buffer) is untouched
    np.testing.assert_array_equal(out.numpy(), ref)  # both round half to even

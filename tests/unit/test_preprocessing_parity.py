"""One pre/post-processing rule (``vst.imaging.InputSpec``), and every implementation against it.

- End to end: each installed CPU backend stylizes real frames of odd sizes like the reference
  (torch-cpu) within 1 level of 255. Before the one rule the ONNX path padded a 36x52 frame to 64x64
  while torch did not pad it, and instance norm's whole-image statistics moved every pixel (30
  levels here with monet, 232 with other weights).
- Piece by piece: the ONNX engines' OpenCV conversions, the CUDA processor's in-place torch ops and
  the CuPy layout kernels (through their CPU emulation) against ``InputSpec.to_input``/``to_frame``,
  including the minimum-side and edge-replicating cases; train/evaluate.py's ``stylize`` too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from vst.errors import BackendUnavailable
from vst.imaging import GENERATOR_SPEC, InputSpec, pad_to_multiple, to_frame, to_tensor
from vst.stream.backends.onnx_io import OnnxFrameEngine
from vst.styles import Style, resolve_style

ROOT = Path(__file__).resolve().parents[2]

ODD_SIZES = [(36, 52), (52, 36), (99, 61), (320, 180)]
"""(W, H): no pad (the size of the old bug), 0 and 3 rows, 1 and 3 columns, and a serving size."""

CPU_BACKENDS = ("torch-cpu", "onnxruntime", "openvino")
MAX_LEVELS = 1
"""fp32 everywhere: the same maths in another order, so a value near a rounding boundary may land one level off."""


def _real_frame(data: type, w: int, h: int) -> np.ndarray:
    """A frame of bikes.mp4 (real texture and edges) resized to w x h."""
    import cv2

    from vst.stream.sources import AvSource

    src = AvSource(str(data("videos", "bikes.mp4")), None)  # type: ignore[operator]
    try:
        image = next(iter(src)).image
    finally:
        src.close()
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def monet() -> Style:
    return resolve_style("monet")


@pytest.fixture(scope="module")
def engines(monet: Style, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Every CPU backend installed here, fp32, for the bundled monet (its ONNX export cached per module)."""
    from vst.stream.engine import make_engine

    mp = pytest.MonkeyPatch()
    mp.setenv("VST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    built: dict[str, object] = {}
    for backend in CPU_BACKENDS:
        try:
            built[backend] = make_engine(monet, backend, "fp32")
        except BackendUnavailable:
            continue
    yield built
    mp.undo()


@pytest.mark.parametrize("size", ODD_SIZES, ids=[f"{w}x{h}" for w, h in ODD_SIZES])
def test_cpu_backends_agree_on_odd_sizes(engines: dict[str, object], data: type, size: tuple[int, int]) -> None:
    if len(engines) < 2:
        pytest.skip(f"only {list(engines)} installed: nothing to compare")
    frame = _real_frame(data, *size)
    outs = {b: e(frame) for b, e in engines.items()}  # type: ignore[operator]
    ref = outs.get("torch-cpu", next(iter(outs.values())))
    assert ref.shape == frame.shape and ref.std() > 5  # a picture, not a constant
    for backend, out in outs.items():
        assert out.shape == frame.shape and out.dtype == np.uint8, backend
        delta = int(np.abs(out.astype(int) - ref.astype(int)).max())
        assert delta <= MAX_LEVELS, f"{backend} differs from the reference by {delta} levels at {size[0]}x{size[1]}"


def test_padding_beyond_the_rule_would_show(engines: dict[str, object], data: type) -> None:
    """Why the rule matters: padding a 36x52 frame to 64x64 (the old ONNX rule) moves it by many levels."""
    if "torch-cpu" not in engines:
        pytest.skip("torch-cpu is not installed")
    frame = _real_frame(data, 36, 52)
    net = engines["torch-cpu"].net  # type: ignore[attr-defined]
    with torch.inference_mode():
        wide = InputSpec(min_side=64)
        old = wide.to_frame(net(wide.to_input(frame)), 52, 36)
    assert np.abs(old.astype(int) - engines["torch-cpu"](frame).astype(int)).max() > 8  # type: ignore[operator]


def test_imported_onnx_style_on_small_frames(data: type) -> None:
    """candy (a third-party fast-neural-style graph that reflect-pads 40 px inside) runs a 36x52 frame,
    padded to the smallest size it accepts (44x52), the same on onnxruntime and OpenVINO."""
    from vst.stream.engine import make_engine

    candy = resolve_style("candy")
    built = {}
    for backend in ("onnxruntime", "openvino"):
        try:
            built[backend] = make_engine(candy, backend, "fp32")
        except BackendUnavailable:
            continue
    if not built:
        pytest.skip("neither onnxruntime nor openvino is installed")
    frame = _real_frame(data, 36, 52)
    outs = [e(frame) for e in built.values()]
    assert next(iter(built.values())).input_hw(52, 36) == (52, 44)  # type: ignore[attr-defined]
    for out in outs:
        assert out.shape == frame.shape and out.std() > 5
    assert int(np.abs(outs[0].astype(int) - outs[-1].astype(int)).max()) <= 2  # 0..255-range model: 2 levels


# ---------------------------------------------------------------------- the reference itself

SPEC_SIZES = [(52, 36), (61, 99), (6, 10), (3, 10), (45, 30)]
"""(H, W): aligned, padded both ways, under min_side (mirrored), too small to mirror (replicated), candy's 44."""


@pytest.mark.parametrize("hw", SPEC_SIZES)
def test_reference_pads_only_to_what_the_model_accepts(hw: tuple[int, int]) -> None:
    h, w = hw
    hp, wp = GENERATOR_SPEC.padded_hw(h, w)
    assert hp % 4 == wp % 4 == 0 and hp >= max(h, 8) and wp >= max(w, 8) and hp - max(h, 8) < 4 and wp - max(w, 8) < 4
    x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
    y = GENERATOR_SPEC.pad(x)
    assert y.shape[-2:] == (hp, wp) and torch.equal(y[..., :h, :w], x)
    if GENERATOR_SPEC.border(h, w) == "reflect" and hp > h:
        assert torch.equal(y[..., h, :w], x[..., h - 2, :])  # mirrored without repeating the edge row
    if GENERATOR_SPEC.border(h, w) == "replicate":
        assert hp - h >= h or wp - w >= w
        assert torch.equal(y[..., -1, :w], x[..., -1, :])


def test_spec_refuses_what_no_runtime_does() -> None:
    for bad in ({"value_range": 2.0}, {"pad_mode": "zeros"}, {"size_multiple": 0}, {"rounding": "floor"}, {"channel_order": "rgba"}):
        with pytest.raises(ValueError):
            InputSpec(**bad)  # type: ignore[arg-type]


def test_generator_helpers_are_the_spec() -> None:
    """to_tensor / pad_to_multiple / to_frame (train/evaluate.py, benchmarks) are GENERATOR_SPEC piecewise."""
    frame = np.random.default_rng(0).integers(0, 256, (61, 99, 3), dtype=np.uint8)
    x, hw = pad_to_multiple(to_tensor(frame))
    assert hw == (61, 99) and torch.equal(x, GENERATOR_SPEC.to_input(frame))
    y = torch.rand(1, 3, 64, 100, generator=torch.Generator().manual_seed(1)) * 2.2 - 1.1
    np.testing.assert_array_equal(to_frame(y[..., :61, :99]), GENERATOR_SPEC.to_frame(y, 61, 99))


# ---------------------------------------------------------------------- ONNX engines' OpenCV path

SPECS = {
    "generator": GENERATOR_SPEC,
    "0..255-bgr-min44": InputSpec(value_range=255.0, channel_order="bgr", min_side=44),
    "0..1": InputSpec(value_range=1.0, min_side=44),
}


class _Probe(OnnxFrameEngine):
    """An ONNX engine whose model records its input and returns it, or a chosen output."""

    def __init__(self, spec: InputSpec, output: np.ndarray | None = None) -> None:
        self.spec, self.fixed_hw, self.feeds, self.input = spec, None, {}, "x"
        self._output = output
        self.seen = np.empty(0, np.float32)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.seen = x.copy()
        return x if self._output is None else self._output


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("hw", SPEC_SIZES)
def test_onnx_conversions_match_the_reference(spec_name: str, hw: tuple[int, int]) -> None:
    spec = SPECS[spec_name]
    h, w = hw
    frame = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    probe = _Probe(spec)
    back = probe(frame)
    ref_in = spec.to_input(frame).numpy()
    assert probe.seen.shape == ref_in.shape
    np.testing.assert_allclose(probe.seen, ref_in, rtol=0, atol=1e-5 * max(1.0, spec.value_range))
    np.testing.assert_array_equal(back, frame)  # the identity model: a frame comes back unchanged
    # Outputs off the level grid, out of range and at ties: half to even, as the reference.
    hp, wp = spec.padded_hw(h, w)
    y = torch.rand(1, 3, hp, wp, generator=torch.Generator().manual_seed(h)) * 1.2 - 0.1
    if spec.value_range < 0:
        y = y * 2 - 1
    else:
        y = y * spec.value_range
    ties = (torch.arange(min(hp * wp, 255)) + 0.5) / spec.output_scale[0] - spec.output_scale[1] / spec.output_scale[0]
    y.view(-1)[: ties.numel()] = ties
    got = _Probe(spec, y.numpy())(frame)
    ref = spec.to_frame(y, h, w)
    assert int(np.abs(got.astype(int) - ref.astype(int)).max()) <= 1  # y*c + d vs the reference's order of ops, at ties


# ---------------------------------------------------------------------- CUDA processor, on the CPU


@pytest.mark.parametrize("hw", SPEC_SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_cuda_processor_layout_matches_the_reference(hw: tuple[int, int], dtype: torch.dtype) -> None:
    from vst.stream.cuda_processor import frame_to_input_

    h, w = hw
    frame = np.random.default_rng(h + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = GENERATOR_SPEC.to_input(frame, dtype=dtype)
    x = torch.full((1, 3, *GENERATOR_SPEC.padded_hw(h, w)), 7.0, dtype=dtype)  # garbage: all must be written
    frame_to_input_(torch.from_numpy(frame), x)
    tol = 0 if dtype == torch.float32 else 2e-3  # fp16: scaled in fp16, the reference in fp32 then cast
    assert x.shape == ref.shape and (x.float() - ref.float()).abs().max().item() <= tol + 1e-6


def test_cuda_layout_kernels_plus_pad_match_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CuPy HWC -> NCHW kernel (emulated on the CPU), padded in place as the processor does, is
    ``to_input``; and its NCHW -> HWC kernel is ``to_frame``."""
    from cuda_emulation import HAVE_GXX, EmulatedCupy

    if not HAVE_GXX:
        pytest.skip("g++ is not installed: the CUDA sources are compiled as C++")
    import vst.kernels.layout as layout
    from vst.kernels import _cuda
    from vst.stream.cuda_processor import reflect_pad_

    emulated = EmulatedCupy()
    for module in (_cuda, layout):
        monkeypatch.setattr(module, "cupy", lambda: emulated)
    _cuda.kernel.cache_clear()
    try:
        for h, w in ((61, 99), (3, 10)):
            frame = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
            nchw = torch.from_numpy(layout.hwc_to_nchw_cupy(frame, "float32"))
            x = torch.zeros(1, 3, *GENERATOR_SPEC.padded_hw(h, w))
            x[..., :h, :w] = nchw
            reflect_pad_(x, h, w)
            assert (x - GENERATOR_SPEC.to_input(frame)).abs().max().item() <= 1e-6
            y = GENERATOR_SPEC.to_input(frame) * 1.1
            out = layout.nchw_to_hwc_cupy(np.ascontiguousarray(y[..., :h, :w].numpy()))
            np.testing.assert_array_equal(out, GENERATOR_SPEC.to_frame(y, h, w))
    finally:
        _cuda.kernel.cache_clear()


# ---------------------------------------------------------------------- training's evaluation


def test_train_evaluate_stylizes_like_the_engines(engines: dict[str, object], data: type) -> None:
    if "torch-cpu" not in engines:
        pytest.skip("torch-cpu is not installed")
    from vst.train.evaluate import stylize

    frames = [_real_frame(data, w, h) for w, h in ODD_SIZES[:3]]
    engine = engines["torch-cpu"]
    for got, frame in zip(stylize(engine.net, frames), frames, strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(got, engine(frame))  # type: ignore[operator]


# ---------------------------------------------------------------------- one reference


def test_one_preprocessing_reference() -> None:
    """Frame <-> tensor scaling, padding and size rounding are written in vst.imaging (the reference) and
    in the device implementations tested above; nowhere else (a ``grep`` finds these files only)."""
    allowed = {
        "vst/imaging.py",  # the reference
        "stream/backends/onnx_io.py",  # onnxruntime / openvino (OpenCV)
        "stream/cuda_processor.py",  # CUDA processor (in-place torch ops; also the blend's [-1, 1] scale)
        "kernels/layout.py",  # CuPy layout kernels
        "stream/blend_config.py",  # the blend's thresholds on the [-1, 1] scale (a docstring)
    }
    pattern = re.compile(r"copyMakeBorder|blobFromImage|127\.5|%\s*(4|SIZE_MULTIPLE)\b")
    found = set()
    for folder in ("vst", "stream", "kernels", "export"):
        for path in (ROOT / folder).rglob("*.py"):
            if pattern.search(path.read_text()):
                found.add(path.relative_to(ROOT).as_posix())
    assert found <= allowed, f"pre/post-processing outside the reference: {sorted(found - allowed)}"

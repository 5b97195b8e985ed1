"""Static int8 quantization of a style for onnxruntime: speed and quality against fp32, in one run.

A probe, not a backend: onnxruntime's QDQ int8 (per-channel weights, activation ranges calibrated
on frames of the bundled sample clip) runs the convolutions faster, but the activation ranges are
fixed at calibration time while a generator's conv outputs scale with the content, so a held-out
clip clips some of them. This script measures both sides (docs/benchmarks.md has the result):

    python benchmarks/ort_int8.py --style monet --size 320x180

Quality: mean / max |int8 - fp32| in 8-bit levels and PSNR over frames of clips calibration did
not see (../shared/data/videos). Speed: median ms of the two sessions, interleaved over rounds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "videos"
log = logging.getLogger("ort_int8")


def read_frames(path: Path, n: int, step: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Every ``step``-th frame (up to ``n``) as the generator's (1, 3, H, W) input (``GENERATOR_SPEC``)."""
    from vst.imaging import GENERATOR_SPEC

    cap = cv2.VideoCapture(str(path))
    out: list[np.ndarray] = []
    i = 0
    while len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % step == 0:
            rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            out.append(GENERATOR_SPEC.to_input(rgb).numpy())
        i += 1
    cap.release()
    return out


def session(path: Path, threads: int):  # noqa: ANN201  (onnxruntime.InferenceSession)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--style", default="monet")
    p.add_argument("--size", default="320x180", help="WxH of the frames (multiples of 4)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=5, help="runs per session per round")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from vst.stream.backends.onnx_io import style_onnx
    from vst.stream.sources import sample_path
    from vst.styles import resolve_style

    w, h = (int(v) for v in args.size.split("x"))
    held_out = [DATA / "bikes.mp4", DATA / "carphone_pristine.mp4"]
    if not all(c.exists() for c in held_out):
        log.error("ort_int8: the held-out clips are missing under %s", DATA)
        return 2
    fp32_path, meta = style_onnx(resolve_style(args.style))
    name = meta.get("onnx_input", "input")
    calib = read_frames(sample_path(), 16, 10, (w, h))
    test = read_frames(held_out[0], 5, 40, (w, h)) + read_frames(held_out[1], 3, 30, (w, h))

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "int8.onnx"
        quantize_static(str(fp32_path), str(int8_path), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
        a, b = session(fp32_path, args.threads), session(int8_path, args.threads)
    d = np.stack([(a.run(None, {name: x})[0] - b.run(None, {name: x})[0]) * 127.5 for x in test])
    psnr = 10 * np.log10(255.0**2 / float(np.square(d).mean()))
    log.info("quality on %d held-out frames: mean %.2f / max %.1f levels, PSNR %.1f dB",
             len(test), float(np.abs(d).mean()), float(np.abs(d).max()), psnr)
    x = test[0]
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for s in (a, b):
        for _ in range(3):
            s.run(None, {name: x})
    for r in range(args.rounds):
        order = [("fp32", a), ("int8", b)] if r % 2 == 0 else [("int8", b), ("fp32", a)]
        for key, s in order:
            t0 = time.perf_counter()
            for _ in range(args.reps):
                s.run(None, {name: x})
            times[key].append((time.perf_counter() - t0) / args.reps * 1000)
    f, i = float(np.median(times["fp32"])), float(np.median(times["int8"]))
    log.info("speed at %s: fp32 %.1f ms, int8 %.1f ms (%.2fx)", args.size, f, i, f / i)
    return 0


if __name__ == "__main__":
    sys.exit(main())

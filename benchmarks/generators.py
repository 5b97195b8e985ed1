#!/usr/bin/env python3
"""MACs and ms/frame per generator architecture, on this machine's CPU (or GPU with --cuda).

    python benchmarks/generators.py                                   # the default table
    python benchmarks/generators.py --sizes 256x256 640x360 --runtimes torch-fp32 ort --json gen.json

Rows: ResNet-9 and ResNet-6 (CycleGAN, ngf 64), Johnson (fast-neural-style), compact (width 16,
5 blocks, the first bundled monet's transposed convs) and compact-rr (the same with
resize-convolution and reflection padding) and compact-aa (bilinear resize-convolution, reflection
padding and the anti-aliasing blurs of ``model.antialias``). Columns per size: GMAC (convs only, from ``vst.models.count_macs``) and the best
ms/frame (the fastest of --reps runs) of each runtime: eager torch fp32, torch bf16 autocast (CPUs with native bf16), and
onnxruntime fp32 on our ONNX export. Weights are seeded random: timing does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vst.cli import parse_size, setup_logging
from vst.models import GeneratorSpec, build_generator, count_macs, init_weights

log = logging.getLogger("vst.bench.generators")

ARCHS: dict[str, GeneratorSpec] = {
    "resnet9": GeneratorSpec("resnet", {"ngf": 64, "n_blocks": 9}),
    "resnet6": GeneratorSpec("resnet", {"ngf": 64, "n_blocks": 6}),
    "johnson": GeneratorSpec("johnson", {}),
    "compact": GeneratorSpec("compact", {"width": 16, "n_blocks": 5}),
    # The bundled styles' layout since issue 15: resize-convolution and reflection padding.
    "compact-rr": GeneratorSpec("compact", {"width": 16, "n_blocks": 5, "upsample": "resize", "pad": "reflect"}),
    # With the anti-aliasing blurs of session 11 (model.antialias), on the bilinear layout.
    "compact-aa": GeneratorSpec("compact", {"width": 16, "n_blocks": 5, "upsample": "bilinear", "pad": "reflect", "antialias": True}),
}
RUNTIMES = ("torch-fp32", "torch-bf16", "ort", "cuda-fp16")


def _time(fn: Any, reps: int) -> float:
    fn()  # warm-up: oneDNN/ORT pick kernels on the first call
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    # The minimum: on a shared machine, contention only ever adds time, so the fastest run is the
    # best estimate of what the model costs.
    return min(times)


def measure(arch: str, size: tuple[int, int], runtimes: list[str], reps: int, tmp: Path) -> dict[str, Any]:
    w, h = size  # multiples of 4: MACs then scale exactly with H*W (see fps.macs_at)
    net = init_weights(build_generator(ARCHS[arch]), gain=0.2, seed=0).eval()
    row: dict[str, Any] = {"arch": arch, "size": f"{w}x{h}", "gmacs": round(count_macs(net, 64, 64) * (h * w) / (64 * 64) / 1e9, 3),
                           "params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 3)}  # fmt: skip
    x = torch.rand(1, 3, h, w) * 2 - 1
    with torch.inference_mode():
        if "torch-fp32" in runtimes:
            row["torch-fp32"] = round(_time(lambda: net(x), reps), 1)
        if "torch-bf16" in runtimes:
            from vst.hardware import cpu_has_bf16

            if cpu_has_bf16():

                def bf16() -> None:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        net(x)

                row["torch-bf16"] = round(_time(bf16, reps), 1)
        if "cuda-fp16" in runtimes and torch.cuda.is_available():
            gnet = net.to("cuda", torch.float16).to(memory_format=torch.channels_last)
            gx = x.to("cuda", torch.float16).contiguous(memory_format=torch.channels_last)

            def gpu() -> None:
                gnet(gx)
                torch.cuda.synchronize()  # benchmark only: wall time of one frame

            row["cuda-fp16"] = round(_time(gpu, max(reps, 20)), 2)
            net = net.float().cpu()
    if "ort" in runtimes:
        import onnxruntime as ort

        from vst.export.onnx_export import export_onnx

        path = export_onnx(net, tmp / f"{arch}.onnx")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = os.cpu_count() or 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        row["ort"] = round(_time(lambda: sess.run(None, {"input": xn}), reps), 1)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="MACs and ms/frame per generator")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 256), (640, 360)], metavar="WxH")
    p.add_argument("--runtimes", nargs="+", default=["torch-fp32", "torch-bf16", "ort"], choices=RUNTIMES)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    setup_logging(-1)
    torch.manual_seed(0)
    rows = []
    cols = list(args.runtimes)
    print(f"{'arch':8} {'size':8} {'GMAC':>7} {'Mparam':>7} " + " ".join(f"{c:>11}" for c in cols) + "   (ms/frame, best of reps)")  # noqa: T201
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            for size in args.sizes:
                r = measure(arch, size, cols, args.reps, Path(tmp))
                rows.append(r)
                cells = " ".join(f"{r[c]:11.1f}" if c in r else f"{'-':>11}" for c in cols)
                print(f"{arch:8} {r['size']:8} {r['gmacs']:7.2f} {r['params_m']:7.2f} {cells}", flush=True)  # noqa: T201
    if args.json:
        meta = {"cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "torch": torch.__version__,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        args.json.write_text(json.dumps({"rows": rows, "meta": meta}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

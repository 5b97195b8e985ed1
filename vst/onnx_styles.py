"""Import third-party ONNX image-to-image style models (e.g. fast-neural-style), run by onnxruntime.

The import probes the model once and records in the sidecar what the runtime needs:
the image input's name, its value range (0..1 or 0..255) and whether H and W are free.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vst.errors import StyleError

log = logging.getLogger("vst.onnx_styles")


def load_session(path: Path, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0) -> Any:
    """An onnxruntime session; a file it cannot load is a StyleError (one line), not a traceback."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own untyped errors for bad files
        raise StyleError(f"onnxruntime cannot load {path.name}: {str(e).splitlines()[0][:160]}") from None


def _probe_image(h: int, w: int) -> np.ndarray:
    """A smooth colour image with edges: realistic enough to tell a value range apart. (1,3,h,w) in [0,1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 7.0)])
    return img[None].clip(0, 1)


def extra_inputs(meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Constant feeds for non-image inputs (e.g. a one-hot style-weight vector)."""
    feeds = {}
    for name, spec in meta.get("onnx_extra_inputs", {}).items():
        vec = np.zeros(spec["length"], dtype=np.float32)
        vec[spec.get("index", 0)] = 1.0
        feeds[name] = vec
    return feeds


def _make_hw_dynamic(model: Any) -> None:
    """Free the batch, H and W dims; turn fixed ConvTranspose output_shape into output_padding."""
    from onnx import helper

    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "ConvTranspose" and "output_shape" in attrs and not any(attrs.get("pads", [])):
            # With no padding, out = (in-1)*s + k + output_padding and output_padding < s: it is unique.
            kernel, strides = attrs["kernel_shape"], attrs.get("strides", [1] * len(attrs["kernel_shape"]))
            padding = [(o - k) % s for o, k, s in zip(attrs["output_shape"], kernel, strides, strict=True)]
            keep = [a for a in node.attribute if a.name not in ("output_shape", "output_padding")]
            del node.attribute[:]
            node.attribute.extend(keep + [helper.make_attribute("output_padding", padding)])
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            for i, label in ((0, "batch"), (2, "height"), (3, "width")):
                dims[i].ClearField("dim_value")
                dims[i].dim_param = label
    del model.graph.value_info[:]


def import_onnx_style(src: Path, name: str, dest_dir: Path, provenance: str, style_index: int = 0) -> Any:
    """Copy ``src`` into ``dest_dir`` as ``name.onnx`` (with free H/W where the graph allows)."""
    import onnx

    from vst.styles import Style

    try:
        model = onnx.load(str(src))
    except Exception as e:  # protobuf DecodeError and friends
        raise StyleError(f"{src.name} is not a readable ONNX model: {str(e).splitlines()[0][:120]}") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    image = [i for i in inputs if len(i.type.tensor_type.shape.dim) == 4]
    if len(image) != 1 or len(model.graph.output) < 1:
        raise StyleError(f"{src.name}: expected one image input (N,3,H,W), found {[i.name for i in inputs]}")
    extras = {
        i.name: {"length": int(i.type.tensor_type.shape.dim[-1].dim_value), "index": style_index}
        for i in inputs
        if i is not image[0]
    }
    # Graph inputs may list initializers (old opsets); keep the image first so _make_hw_dynamic finds it.
    model.graph.input.remove(image[0])
    model.graph.input.insert(0, image[0])
    dims = [d.dim_value for d in image[0].type.tensor_type.shape.dim]
    meta: dict[str, Any] = {"onnx_input": image[0].name, "onnx_extra_inputs": extras}

    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}.onnx"
    tmp = dest.with_suffix(".onnx.part")
    try:
        fixed = (dims[2], dims[3]) if dims[2] > 0 and dims[3] > 0 else None
        if fixed:
            _make_hw_dynamic(model)
            onnx.save(model, str(tmp))
            try:
                _run(load_session(tmp), meta, _probe_image(64, 96), 1.0)
                fixed = None
            except Exception:  # the graph bakes its size in (Reshape constants...): keep it fixed
                log.info("%s keeps its fixed input size %sx%s", src.name, dims[3], dims[2])
                shutil.copyfile(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        meta["onnx_fixed_hw"] = list(fixed) if fixed else None
        meta["onnx_channel_order"] = _channel_order(model)
        session = load_session(tmp)
        meta["onnx_value_range"] = _detect_range(session, meta, fixed or (96, 128))
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)  # a probe that failed leaves no half-imported model behind
    meta.update({"name": name, "arch": "onnx", "provenance": provenance, "normalization": f"rgb in 0..{meta['onnx_value_range']:g}"})
    dest.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return Style(name, dest, meta, "user")


# Caffe/VGG-style models subtract the ImageNet mean in BGR order: the tell-tale of BGR input.
_BGR_MEAN = np.array([103.939, 116.779, 123.68])


def _channel_order(model: Any) -> str:
    from onnx import helper

    for node in model.graph.node:
        if node.op_type == "ImageScaler":
            bias = [helper.get_attribute_value(a) for a in node.attribute if a.name == "bias"]
            if bias and len(bias[0]) == 3 and np.allclose(np.abs(bias[0]), _BGR_MEAN, atol=0.5):
                return "bgr"
    return "rgb"


def _run(session: Any, meta: dict[str, Any], img01: np.ndarray, scale: float) -> np.ndarray:
    feeds = {meta["onnx_input"]: (img01 * scale).astype(np.float32), **extra_inputs(meta)}
    return session.run(None, feeds)[0] / scale


def _detect_range(session: Any, meta: dict[str, Any], hw: tuple[int, int]) -> float:
    """Pick the input scale (1 or 255) under which the output lands in the same 0..1 range."""
    img = _probe_image(*hw)
    best, best_score = 255.0, -1.0
    for scale in (255.0, 1.0):
        try:
            out = _run(session, meta, img, scale)
        except Exception as e:
            raise StyleError(f"ONNX model fails on a {hw[1]}x{hw[0]} image: {str(e).splitlines()[0][:120]}") from None
        if out.ndim != 4 or out.shape[1] != 3:
            raise StyleError(f"ONNX model output has shape {out.shape}, expected (N,3,H,W)")
        inside = float(((out > -0.1) & (out < 1.1)).mean())
        score = inside * min(float(out.std()), 0.25)
        if score > best_score:
            best, best_score = scale, score
    return best

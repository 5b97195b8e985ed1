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
from vst.fileio import atomic_output, atomic_write

log = logging.getLogger("vst.onnx_styles")


def load_session(path: Path, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0) -> Any:
    """An onnxruntime session for an image-to-image model; a file it cannot load, or a model that is
    not RGB image in -> RGB image out, or one with non-finite weights, is a one-line StyleError."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own untyped errors for bad files
        raise StyleError(f"onnxruntime cannot load {path.name}: {_first_line(e)}") from None
    check_session_io(session, path.name)
    return session


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and not isinstance(d, bool) else None


def check_session_io(session: Any, name: str) -> None:
    """One float (N, 3, H, W) image input (plus constant vector inputs), and an (N, 3, H, W) first output."""
    inputs = session.get_inputs()
    images = [i for i in inputs if i.shape is not None and len(i.shape) == 4]
    if len(images) != 1:
        found = ", ".join(f"{i.name} rank {len(i.shape) if i.shape is not None else '?'}" for i in inputs) or "none"
        raise StyleError(f"{name}: expected one image input of rank 4 (N,3,H,W), found {found}")
    image = images[0]
    if _dim(image.shape[1]) not in (None, 3):
        raise StyleError(f"{name}: the image input {image.name} has {image.shape[1]} channels, expected 3 (RGB)")
    if image.type != "tensor(float)":
        raise StyleError(f"{name}: the image input {image.name} is {image.type}, expected tensor(float)")
    for extra in inputs:
        if extra is not image and (extra.shape is None or len(extra.shape) != 1):
            raise StyleError(f"{name}: input {extra.name} must be a vector (rank 1), it has shape {extra.shape}")
    outputs = session.get_outputs()
    if not outputs:
        raise StyleError(f"{name}: the model has no outputs")
    out = outputs[0]
    if out.shape:  # an unknown rank is checked on the first frame
        if len(out.shape) != 4:
            raise StyleError(f"{name}: the output {out.name} has rank {len(out.shape)}, expected 4 (N,3,H,W)")
        if _dim(out.shape[1]) not in (None, 3):
            raise StyleError(f"{name}: the output {out.name} has {out.shape[1]} channels, expected 3 (RGB)")


def check_onnx_file(path: Path) -> None:
    """What every backend needs of an ONNX style, checked on the file before any engine is built:
    readable, one float (N, 3, H, W) image input (plus fixed-length vector inputs), an (N, 3, H, W)
    first output where the graph says so, finite weights. Each problem is a one-line StyleError."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise StyleError(f"{path.name} is not a readable ONNX model: {_first_line(e, 120)}") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in inputs}
    images = [i for i in inputs if ranks[i.name] == 4]
    if len(images) != 1:
        found = ", ".join(f"{n} rank {r}" for n, r in ranks.items()) or "none"
        raise StyleError(f"{path.name}: expected one image input of rank 4 (N,3,H,W), found {found}")
    image = images[0]
    channels = image.type.tensor_type.shape.dim[1].dim_value
    if channels not in (0, 3):
        raise StyleError(f"{path.name}: the image input {image.name} has {channels} channels, expected 3 (RGB)")
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise StyleError(f"{path.name}: the image input {image.name} is not float32")
    for extra in inputs:
        if extra is not image and ranks[extra.name] != 1:
            raise StyleError(f"{path.name}: input {extra.name} must be a vector (rank 1), it has rank {ranks[extra.name]}")
    if not model.graph.output:
        raise StyleError(f"{path.name}: the model has no outputs")
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) not in (0, 4):  # 0: rank not recorded; the first frame shows it
        raise StyleError(f"{path.name}: the output has rank {len(out_dims)}, expected 4 (N,3,H,W)")
    if len(out_dims) == 4 and out_dims[1].dim_value not in (0, 3):
        raise StyleError(f"{path.name}: the output has {out_dims[1].dim_value} channels, expected 3 (RGB)")
    check_finite_initializers(model, path.name)


def check_finite_initializers(model: Any, name: str) -> None:
    """Refuse a model whose weights hold NaN or inf (it renders black frames and exits 0)."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        try:
            values = numpy_helper.to_array(init)
        except Exception:  # an exotic dtype: not ours to judge
            continue
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise StyleError(f"{name}: weights are not finite (NaN or inf in {init.name})")


def _probe_image(h: int, w: int) -> np.ndarray:
    """A smooth colour image with edges: realistic enough to tell a value range apart. (1,3,h,w) in [0,1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 7.0)])
    return img[None].clip(0, 1)


def extra_inputs(meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Constant feeds for non-image inputs (e.g. a one-hot style-weight vector)."""
    feeds = {}
    for name, spec in (meta.get("onnx_extra_inputs") or {}).items():
        vec = np.zeros(int(spec["length"]), dtype=np.float32)  # ranges checked when the sidecar was read
        vec[int(spec.get("index", 0))] = 1.0
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

    check_onnx_file(src)
    model = onnx.load(str(src))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    image = [i for i in inputs if len(i.type.tensor_type.shape.dim) == 4]
    if len(image) != 1 or len(model.graph.output) < 1:
        raise StyleError(f"{src.name}: expected one image input (N,3,H,W), found {[i.name for i in inputs]}")
    extras = {}
    for i in inputs:
        if i is image[0]:
            continue
        dims = i.type.tensor_type.shape.dim
        length = int(dims[-1].dim_value) if len(dims) == 1 else 0
        if not 0 < length <= 4096:
            raise StyleError(f"{src.name}: input {i.name} is not a fixed-length vector; vst can only feed it a constant one-hot")
        extras[i.name] = {"length": length, "index": min(style_index, length - 1)}
    # Graph inputs may list initializers (old opsets); keep the image first so _make_hw_dynamic finds it.
    model.graph.input.remove(image[0])
    model.graph.input.insert(0, image[0])
    dims = [d.dim_value for d in image[0].type.tensor_type.shape.dim]
    meta: dict[str, Any] = {"onnx_input": image[0].name, "onnx_extra_inputs": extras}

    if dims[1] not in (0, 3):
        raise StyleError(f"{src.name}: the image input has {dims[1]} channels, expected 3 (RGB)")
    fixed_dims = (dims[2], dims[3]) if dims[2] > 0 and dims[3] > 0 else None
    if fixed_dims and not (8 <= fixed_dims[0] <= 8192 and 8 <= fixed_dims[1] <= 8192):
        raise StyleError(f"{src.name}: fixed input size {fixed_dims[1]}x{fixed_dims[0]} is out of range (8..8192)")

    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}.onnx"
    # A probe that fails leaves no half-imported model behind: the model is renamed into place last.
    with atomic_output(dest) as tmp:
        fixed = fixed_dims
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
        meta.update({"name": name, "arch": "onnx", "provenance": provenance,
                     "normalization": f"rgb in 0..{meta['onnx_value_range']:g}"})  # fmt: skip
        # the sidecar first: a model never lands without the metadata it needs
        atomic_write(dest.with_suffix(".json"), lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
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
            raise StyleError(f"ONNX model fails on a {hw[1]}x{hw[0]} image: {_first_line(e, 120)}") from None
        if out.ndim != 4 or out.shape[1] != 3:
            raise StyleError(f"ONNX model output has shape {out.shape}, expected (N,3,H,W)")
        if not np.isfinite(out).all():
            raise StyleError(f"ONNX model outputs NaN or inf on a {hw[1]}x{hw[0]} image")
        inside = float(((out > -0.1) & (out < 1.1)).mean())
        score = inside * min(float(out.std()), 0.25)
        if score > best_score:
            best, best_score = scale, score
    return best

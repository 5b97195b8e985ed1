"""vst.kernels: CuPy CUDA kernels, each beside its torch reference (``kernels/<name>.py``).

cupy is imported lazily inside each kernel call, so this package imports without CUDA; calling a
kernel without CuPy or a GPU raises ``vst.errors.BackendUnavailable``. Kernels take and return
CuPy arrays (torch CUDA tensors convert with ``cupy.asarray`` / ``torch.as_tensor``, zero-copy),
float32 or float16, NCHW with N = 1 unless stated (``yuv``: uint8 RGB in, uint8 I420 out).
"""

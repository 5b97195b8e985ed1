"""Moved: the CUDA-stream path is ``vst.stream.cuda_processor.CudaProcessor``, one ``Processor`` of the pipeline.

This name stays for scripts that import it (benchmarks/gpu_check.sh checks the module imports).
"""

from __future__ import annotations

from vst.stream.cuda_processor import CudaConfig, CudaProcessor, frame_to_input_, output_to_frame_, reflect_pad_

__all__ = ["CudaConfig", "CudaProcessor", "frame_to_input_", "output_to_frame_", "reflect_pad_"]

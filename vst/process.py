"""Process-wide settings, set once at start-up by the CLIs: ``configure_process(ProcessSettings(...))``.

Some libraries keep settings in module globals that every user in the process shares: cuDNN's
autotuning flag, aioice's host-address hook, aiortc's encoder bitrate caps. Changing them from an
engine constructor or at import time makes the behaviour depend on what happened to be imported or
built first; here they change in one place, once, when a CLI has parsed its arguments. Nothing in
vst changes them on import. Library users (benchmarks, notebooks) call ``configure_process()``
themselves; without it the libraries' own defaults hold.

Each library is imported only when its setting is asked for, so a CLI that never serves WebRTC
does not import aiortc.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass

from vst.errors import VstError

log = logging.getLogger("vst.process")


@dataclass(frozen=True)
class ProcessSettings:
    """What ``configure_process`` sets. Defaults here and nowhere else."""

    cudnn_benchmark: bool = True
    """cuDNN times its convolution algorithms once per input shape and keeps the fastest. A stream
    runs one shape for thousands of frames (and a CUDA graph is captured after warm-up), so the
    one-off timing pays back; without it cuDNN picks by heuristics. Harmless without a GPU."""
    ice_host: str | None = None
    """A server's bind address: when it is loopback, ICE offers only that address as a host
    candidate (aioice gathers on every interface and skips 127.0.0.1, so a server bound to loopback
    would otherwise expose media on the machine's other addresses). None, or a non-loopback
    address: aioice's own gathering."""
    encoder_bitrate: int | None = None
    """bps that aiortc's VP8/H264 encoders may reach and start at (their module-level caps are VP8
    1.5 Mbps with a 0.5 Mbps start, H264 3 Mbps). None: aiortc's caps."""

    def __post_init__(self) -> None:
        if self.encoder_bitrate is not None and (isinstance(self.encoder_bitrate, bool) or self.encoder_bitrate <= 0):
            raise VstError(f"encoder bitrate must be a positive number of bps, got {self.encoder_bitrate!r}")
        if self.ice_host is not None and not self.ice_host.strip():
            raise VstError("ice_host must be an address or None")


_lock = threading.Lock()
_applied: ProcessSettings | None = None


def applied() -> ProcessSettings | None:
    """The settings ``configure_process`` applied in this process (None: not called yet)."""
    return _applied


def configure_process(settings: ProcessSettings | None = None) -> ProcessSettings:
    """Apply ``settings`` (default ``ProcessSettings()``) to this process, once.

    Calling again with equal settings does nothing; with different ones it raises VstError, since
    the libraries already started with the first ones. Returns the settings in force.
    """
    global _applied
    settings = settings or ProcessSettings()
    with _lock:
        if _applied is not None:
            if _applied != settings:
                raise VstError(f"process settings are set once; already {_applied}, now asked for {settings}")
            return _applied
        _set_cudnn(settings.cudnn_benchmark)
        if settings.ice_host is not None:
            restrict_ice_to_host(settings.ice_host)
        if settings.encoder_bitrate is not None:
            raise_encoder_caps(settings.encoder_bitrate)
        _applied = settings
    return settings


def _set_cudnn(benchmark: bool) -> None:
    import torch

    torch.backends.cudnn.benchmark = benchmark
    log.debug("cuDNN autotuning %s", "on" if benchmark else "off")


def restrict_ice_to_host(host: str) -> None:
    """``ProcessSettings.ice_host``'s effect alone: for tests that run servers inside their own process
    (``configure_process`` is once per process). Applications call ``configure_process``."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:  # a host name: aioice gathers as usual
        return
    if not addr.is_loopback:
        return
    import aioice.ice

    def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [str(addr)]

    aioice.ice.get_host_addresses = loopback_only  # type: ignore[assignment]
    log.info("ICE host candidates restricted to %s", addr)


def raise_encoder_caps(bitrate: int) -> None:
    """``ProcessSettings.encoder_bitrate``'s effect alone (see ``restrict_ice_to_host``)."""
    from aiortc.codecs import h264, vpx

    for mod in (vpx, h264):
        mod.MAX_BITRATE = max(mod.MAX_BITRATE, bitrate)
        mod.MIN_BITRATE = min(mod.MIN_BITRATE, bitrate)
        mod.DEFAULT_BITRATE = bitrate
    log.info("encoder bitrate start/max raised to %d kbps", bitrate // 1000)

"""Atomic output files that get the permissions a plain ``open(path, "w")`` would give.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask, and a rename keeps that
mode, so every atomically written output used to be private to its owner. ``atomic_output``
writes through a temporary file beside the destination, then sets ``0o666 & ~umask`` and renames.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (changing it races threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not Linux: the classic read-by-setting, restored at once
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a new regular file gets from ``open()``: 0666 less the umask."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_output(dest: Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it becomes ``dest`` (umask mode), else it is removed.

    The temporary name keeps ``dest``'s suffix after ``suffix`` (``.x.part.mp4``) so writers that
    pick a format from the extension still can. A signal turned into an exception (see
    ``vst.cli.exit_on_signals``) also removes it.
    """
    fd, name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f"{suffix}{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(dest: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename onto ``dest``: no half-written ``dest`` ever exists."""
    with atomic_output(dest) as tmp:
        write(tmp)


def is_regular_file(path: Path) -> bool:
    """True for a regular file (symlinks followed); False for FIFOs, devices, sockets, folders, nothing."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def special_file_kind(path: Path) -> str | None:
    """'a FIFO', 'a device', 'a socket' for an existing non-regular, non-folder path; None otherwise.

    Reading a FIFO or a device blocks or never ends: inputs and outputs of this kind are refused.
    """
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path``.lock for the block: serialises building one cached
    artefact (an ONNX export, a TensorRT engine) across processes, e.g. one vst per GPU starting at once.
    The artefact itself is still written atomically, so a reader without the lock never sees half a file."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

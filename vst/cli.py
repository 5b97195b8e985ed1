"""Shared CLI plumbing: logging setup and the one-line error contract."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from vst.errors import VstError

log = logging.getLogger("vst")


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    first = " ".join(str(message).split())
    print(f"error: {first}", file=sys.stderr)  # noqa: T201 - the CLI's own error channel
    raise SystemExit(code)


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360). Raises argparse errors so argparse prints usage."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size {text!r} out of range (16..8192 per side)")
    return w, h


def parse_budget(text: str) -> float | None:
    """'12' -> 12.0, 'none' -> None: the blend's most mean |out − G| per frame, in 0..255 levels."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget must be a number of levels (0..255) or 'none', got {text!r}") from None
    if not 0.0 <= value <= 255.0:
        raise argparse.ArgumentTypeError(f"budget {text!r} out of range (0..255 levels)")
    return value


def check_output_path(path: Path) -> None:
    """Refuse, before any work is done, an output file that could not be written at the end."""
    if not path.parent.is_dir():
        raise VstError(f"output directory does not exist: {path.parent}")
    if path.is_dir():
        raise VstError(f"output {path} is a directory")
    if not os.access(path.parent, os.W_OK):
        raise VstError(f"output directory is not writable: {path.parent}")


def write_output(path: Path, text: str) -> None:
    """Write a text result file; a failure is a one-line VstError, not a traceback."""
    try:
        path.write_text(text)
    except OSError as e:
        raise VstError(f"cannot write {path}: {e.strerror or e}") from None


def run_main(body: Callable[[], int | None]) -> NoReturn:
    """Run a CLI body; user errors become one line and exit 2, Ctrl-C exits 130."""
    try:
        code = body() or 0
    except VstError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201
        raise SystemExit(130) from None
    except (BrokenPipeError, ConnectionResetError) as e:
        fail(f"connection lost: {e}")
    raise SystemExit(code)

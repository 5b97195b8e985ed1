"""Shared CLI plumbing: logging setup, argument types with ranges, and the one-line error contract.

Every vst command answers a bad input with one line on stderr (``error: …``) and a non-zero exit,
never a traceback: argparse errors (``ArgumentParser``), user errors (``VstError``), signals
(``exit_on_signals``) and, as a last resort, unexpected exceptions (traceback only with ``-vv``).
This module imports nothing heavy: ``--help`` and argument errors must answer at once. The blend
options take their defaults from ``vst.stream.blend_config.BlendConfig`` (pure stdlib), imported
when a parser is built, so ``import vst.cli`` alone does not import ``vst.stream``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from vst.errors import VstError
from vst.fileio import special_file_kind
from vst.redact import RedactingFilter, redact_text

if TYPE_CHECKING:
    from vst.stream.blend_config import BlendConfig

log = logging.getLogger("vst")


def __getattr__(name: str) -> Any:
    """``DEFAULT_BLEND_BUDGET`` for older importers: ``BlendConfig().budget``, read there, not repeated here."""
    if name == "DEFAULT_BLEND_BUDGET":
        return _blend_defaults(None).budget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _blend_defaults(config: BlendConfig | None) -> BlendConfig:
    from vst.stream.blend_config import BlendConfig

    return config if config is not None else BlendConfig()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the vst error contract: a bad argument is one ``error:`` line and exit 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)", 2)


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:  # no password in a URL ever reaches a log
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    first = " ".join(redact_text(str(message)).split())
    print(f"error: {first}", file=sys.stderr)  # noqa: T201 - the CLI's own error channel
    raise SystemExit(code)


# ---------------------------------------------------------------------- argument types


def _number(text: str, kind: Callable[[str], float | int], what: str) -> float | int:
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:40]!r}")
    return value


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        value = int(_number(text, int, "an integer"))
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({lo}..{hi})")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (or (lo, hi] with ``lo_open``). NaN and inf are refused."""

    def parse(text: str) -> float:
        value = float(_number(text, float, "a number"))
        if not (lo < value if lo_open else lo <= value) or value > hi:
            bounds = f"{'above ' + format(lo, 'g') if lo_open else format(lo, 'g')}..{hi:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({bounds})")
        return value

    parse.__name__ = "number"
    return parse


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360). Raises argparse errors so argparse prints usage."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text[:40]!r}") from None
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
        raise argparse.ArgumentTypeError(f"budget must be a number of levels (0..255) or 'none', got {text[:40]!r}") from None
    if not 0.0 <= value <= 255.0:
        raise argparse.ArgumentTypeError(f"budget {text!r} out of range (0..255 levels)")
    return value


def add_budget_option(parser: argparse.ArgumentParser, config: BlendConfig | None = None) -> None:
    """``--blend-budget LEVELS|none``, the same for every CLI that blends; the default is ``config``'s
    budget (default: ``BlendConfig()``'s)."""
    budget = _blend_defaults(config).budget
    shown = "none" if budget is None else f"{budget:g}"
    parser.add_argument("--blend-budget", type=parse_budget, default=budget, metavar="LEVELS",
                        help=f"blend: most mean |out − per-frame| per frame, 0..255 levels, or 'none' (default {shown})")  # fmt: skip


def add_clamp_option(parser: argparse.ArgumentParser, config: BlendConfig | None = None) -> None:
    """``--blend-clamp R``, the same for every CLI that blends; the default is ``config``'s (default:
    ``BlendConfig()``'s)."""
    radius = _blend_defaults(config).clamp
    parser.add_argument("--blend-clamp", type=int_range(0, 8), default=radius, metavar="R",
                        help="blend: clamp the warped history to the range of the frame's (2R+1)² neighbourhood, so a "
                             "wrong flow cannot smear in colours the frame does not have; 2 stops such smears, but "
                             f"costs sharpness on smooth footage and steadiness on candy-like styles (default {radius}: off)")  # fmt: skip


def add_blend_option(parser: argparse.ArgumentParser, help_text: str, config: BlendConfig | None = None) -> None:
    """``--blend ALPHA`` in [0, 1], default ``config``'s α (default: ``BlendConfig()``'s). The mode may
    narrow the range (``BlendConfig.check_alpha`` says so in one line)."""
    alpha = _blend_defaults(config).alpha
    parser.add_argument("--blend", type=float_range(0.0, 1.0), default=alpha, metavar="ALPHA", help=f"{help_text} (default {alpha:g})")


# ---------------------------------------------------------------------- files


def check_output_path(path: Path) -> None:
    """Refuse, before any work is done, an output file that could not be written at the end."""
    if not path.parent.is_dir():
        raise VstError(f"output directory does not exist: {path.parent}")
    if path.is_dir():
        raise VstError(f"output {path} is a directory")
    if kind := special_file_kind(path):  # writing would block (FIFO) or go to a device
        raise VstError(f"output {path} is {kind}, not a regular file")
    if not os.access(path.parent, os.W_OK):
        raise VstError(f"output directory is not writable: {path.parent}")


def write_output(path: Path, text: str) -> None:
    """Write a text result file; a failure is a one-line VstError, not a traceback."""
    try:
        path.write_text(text)
    except OSError as e:
        raise VstError(f"cannot write {path}: {e.strerror or e}") from None


# ---------------------------------------------------------------------- signals and the error contract


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so ``finally`` blocks remove partial files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def exit_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """Turn ``signals`` into ``Terminated`` in the main thread (their default action skips all cleanup)."""

    def handler(signum: int, _frame: Any) -> None:
        raise Terminated(signum)

    for sig in signals:
        signal.signal(sig, handler)


def run_main(body: Callable[[], int | None]) -> NoReturn:
    """Run a CLI body; user errors become one line and exit 2, Ctrl-C exits 130, SIGTERM/SIGHUP 128+N."""
    exit_on_signals()
    try:
        code = body() or 0
    except VstError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201
        raise SystemExit(130) from None
    except Terminated as e:
        print(f"terminated by {signal.Signals(e.signum).name}", file=sys.stderr)  # noqa: T201
        raise SystemExit(128 + e.signum) from None
    except BrokenPipeError:  # `vst-styles info x | head`: the reader left; stay quiet, like Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        raise SystemExit(141) from None
    except ConnectionResetError as e:
        fail(f"connection lost: {e}")
    except MemoryError:
        fail("out of memory", 1)
    except Exception as e:  # a bug, not a user error: one line here, the traceback with -vv
        log.debug("unexpected failure", exc_info=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        fail(f"unexpected {type(e).__name__}: {first[:300]} (run with -vv for the traceback)", 1)
    raise SystemExit(code)

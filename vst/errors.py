"""User-facing errors: every CLI turns these into one line on stderr and a non-zero exit."""

from __future__ import annotations


class VstError(Exception):
    """A problem the user can fix (bad path, unknown style, dead stream...).

    The message is shown as is, on one line, with no traceback.
    """

    exit_code: int = 2


class BackendUnavailable(VstError):
    """A requested backend cannot run here (missing package or hardware)."""


class SourceError(VstError):
    """A video source could not be opened or stopped delivering frames."""


class StyleError(VstError):
    """A style name or file could not be resolved or loaded."""

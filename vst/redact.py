"""Credentials never leave the process: redact them from source URLs wherever one is shown.

Camera URLs carry passwords (``rtsp://user:pass@cam/…``, ``http://cam/snap?user=a&password=b``).
Everything that shows a URL (health and stats, banners in the video, logs, error lines) shows
``redact_url(url)`` instead; ``redact_text`` does the same for URLs inside free text (log records,
FFmpeg messages).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"

# Query parameters that carry secrets in camera and streaming URLs (Hikvision/Dahua/Axis snapshot
# URLs, signed CDN URLs, SRT passphrases, our own ?token=).
_SECRET_PARAMS = re.compile(
    r"^(pass(word|wd|phrase)?|pwd|token|access_?token|auth|authorization|key|api_?key|secret|sig(nature)?|credentials?)$",
    re.IGNORECASE,
)
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with the password (or a user-only secret) and secret query values replaced by ***.

    ``rtsp://admin:pw@cam:554/s`` -> ``rtsp://admin:***@cam:554/s``; ``https://TOKEN@host/x`` ->
    ``https://***@host/x``; ``http://cam/snap?user=a&pwd=b`` -> ``http://cam/snap?user=a&pwd=***``.
    Text that is not a URL comes back unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal: mask everything before the last '@'
        return re.sub(r"(://)[^/]*@", rf"\1{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        # A user name alone can be the secret (https://TOKEN@host); with a password it is kept.
        netloc = f"{user}:{MASK}@{hostport}" if sep and user else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAMS.match(k) for k, _ in pairs):
            query = "&".join(
                f"{quote(k, safe='')}={MASK if _SECRET_PARAMS.match(k) else quote(v, safe='')}" for k, v in pairs
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (``redact_url``)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """A handler filter: log records leave with every URL in their message redacted.

    A safety net under the explicit redaction at the source: a library (aioice, PyAV, a future
    log line) that formats a URL with a password never writes it out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's own error to report
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(formatted)
        return True

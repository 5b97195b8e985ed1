"""Download published checkpoints over HTTP(S): progress bar, optional sha256, atomic write."""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vst.errors import StyleError
from vst.fileio import atomic_output
from vst.redact import redact_url

log = logging.getLogger("vst.pull")


@dataclass(frozen=True)
class CatalogEntry:
    """A published checkpoint that ``vst-styles pull NAME`` knows by name."""

    filename: str
    """File name under the catalog's base URL."""
    sha256: str | None = None
    """Expected digest, when the publisher gives one."""
    description: str = ""


# The CycleGAN authors' published painting-style generators (ResNet-9, reference layout).
CATALOG: dict[str, CatalogEntry] = {
    "cyclegan-monet": CatalogEntry("style_monet.pth", description="CycleGAN photo->Monet (Zhu et al.)"),
    "cyclegan-vangogh": CatalogEntry("style_vangogh.pth", description="CycleGAN photo->Van Gogh"),
    "cyclegan-cezanne": CatalogEntry("style_cezanne.pth", description="CycleGAN photo->Cezanne"),
    "cyclegan-ukiyoe": CatalogEntry("style_ukiyoe.pth", description="CycleGAN photo->Ukiyo-e"),
}
DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/"


def catalog_url(name: str) -> tuple[str, str | None]:
    """URL and expected sha256 of a catalog name (base overridable with $VST_STYLE_INDEX_URL)."""
    try:
        entry = CATALOG[name]
    except KeyError:
        raise StyleError(f"unknown published style {name!r}; known: {', '.join(CATALOG)} (or pass a URL)") from None
    base = os.environ.get("VST_STYLE_INDEX_URL", DEFAULT_BASE_URL)
    return base.rstrip("/") + "/" + entry.filename, entry.sha256


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` atomically; a checksum mismatch leaves nothing behind."""
    from tqdm import tqdm

    if not url.startswith(("http://", "https://")):
        raise StyleError(f"only http(s) URLs can be pulled, got {redact_url(url)!r}")
    shown = redact_url(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic_output(dest) as tmp, tmp.open("wb") as f:
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "vst"}), timeout=timeout)
        except urllib.error.HTTPError as e:
            raise StyleError(f"download failed: {shown} answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
            raise StyleError(f"download failed: cannot reach {shown} ({getattr(e, 'reason', e)})") from None
        with resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            got_bytes = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                try:
                    while chunk := resp.read(1 << 16):
                        f.write(chunk)
                        digest.update(chunk)
                        got_bytes += len(chunk)
                        bar.update(len(chunk))
                except (TimeoutError, OSError) as e:
                    raise StyleError(f"download of {shown} broke off: {e}") from None
        if total is not None and got_bytes != total:
            raise StyleError(f"download of {shown} is truncated: {got_bytes} of {total} bytes")
        f.flush()
        os.fsync(f.fileno())
        got = digest.hexdigest()
        if sha256 and got.lower() != sha256.lower():
            raise StyleError(f"checksum mismatch for {shown}: expected sha256 {sha256}, got {got}")
    log.info("downloaded %s (%s)", dest, got[:16])
    return dest

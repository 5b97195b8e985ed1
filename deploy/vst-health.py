#!/usr/bin/env python3
"""Exit 0 when vst-stream's /health answers {"ok": true}: the health check for systemd and Docker.

    vst-health.py [--port 8080] [--wait SECONDS]

--wait keeps asking until the server answers or SECONDS pass (a start gate: the first start builds
the style's engine, which can take a minute on a GPU). /health needs no token and reports only the
pipeline state, so this script needs no secret either.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request


def healthy(port: int) -> str | None:
    """None when healthy, else why not."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            body = json.loads(r.read() or b"{}")
    except (OSError, ValueError) as e:
        return f"no answer on port {port}: {e}"
    return None if body.get("ok") is True else f"unhealthy: {body}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS")
    args = p.parse_args()
    deadline = time.monotonic() + args.wait
    while (why := healthy(args.port)) is not None:
        if time.monotonic() >= deadline:
            sys.stderr.write(f"vst-health: {why}\n")
            return 1
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

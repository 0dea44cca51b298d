#!/usr/bin/env python3
"""The container's health check: GET the bot's /healthz; exit 0 on HTTP 200, else 1.

Standard library only (the slim image has no curl), run by the Dockerfile's HEALTHCHECK as
``nst-healthcheck [URL]`` (default http://127.0.0.1:8080/healthz, the [web] section of the image's
config). Prints one line, which ``docker inspect`` shows under State.Health.
"""

from __future__ import annotations

import http.client
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/healthz"
TIMEOUT_S = 3.0


def probe(url: str, timeout: float = TIMEOUT_S) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    # No proxies: an HTTP(S)_PROXY set for the bot must not receive the probe of its own port.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        try:
            with opener.open(url, timeout=timeout) as response:
                status, body = response.status, response.read(200)
        except urllib.error.HTTPError as error:  # 503 and any other non-2xx answer
            status, body = error.code, error.read(200)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        # refused, timed out, not HTTP, not a URL
        return False, f"{url}: {getattr(error, 'reason', None) or error}"
    detail = " ".join(body.decode("utf-8", "replace").split())[:200]
    return status == 200, f"{url}: HTTP {status}" + (f" {detail}" if detail else "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    healthy, line = probe(args[0] if args else DEFAULT_URL)
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())

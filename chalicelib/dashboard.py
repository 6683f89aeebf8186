"""The web dashboard's files (static/), served by the API itself: no build step, no other host."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from . import errors

STATIC = Path(__file__).with_name("static")
#: Every file the dashboard has, with its content type; nothing else is served.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
#: The page loads only its own files and talks only to its own API; no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def content_security_policy(upload_origin: str | None) -> str:
    """The page's policy; with an upload origin (the input bucket's S3 endpoint, where the page sends
    a file through a presigned POST), connect-src allows that one origin as well."""
    if upload_origin is None:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace("connect-src 'self'", f"connect-src 'self' {upload_origin}")


@lru_cache(maxsize=len(ASSETS))
def asset(name: str) -> tuple[str, str]:
    """(content, content type) of a dashboard file; errors.NotFound for any other name."""
    if name not in ASSETS:
        raise errors.NotFound(f"no dashboard file {name[:64]!r}")
    return (STATIC / name).read_text(encoding="utf-8"), ASSETS[name]

"""Who is on the other end of an HTTP request, for limits counted per client address."""

from __future__ import annotations

from aiohttp import web


def client_address(request: web.Request) -> str:
    """The peer's address as the server saw it; behind a reverse proxy this is the proxy's,
    unless the proxy is trusted to say otherwise (see docs/SECURITY.md)."""
    return request.remote or "-"

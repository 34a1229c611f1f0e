"""The headers every HTML page the bot serves sends: the web chat and the agent console alike.

The Content-Security-Policy allows no inline script or style and no framing: behaviour lives in
files under `/static`, so text a user typed can never run as script even if escaping failed.
"""

from __future__ import annotations

from types import MappingProxyType

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = MappingProxyType(
    {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
)

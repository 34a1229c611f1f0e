"""Who is on the other end of an HTTP request, for limits counted per client address.

The peer address is the client's unless it is one of `TRUSTED_PROXIES`; a trusted proxy's
request is attributed to the right-most `X-Forwarded-For` hop that is not itself a trusted
proxy (the hops to its left are whatever the client chose to write, so they are never read).
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from aiohttp import web

Networks = tuple[IPv4Network | IPv6Network, ...]
TRUSTED_PROXIES: web.AppKey[Networks] = web.AppKey("trusted_proxies")


def parse_networks(spec: str) -> Networks:
    """`"127.0.0.1, 10.0.0.0/8"` -> networks; raises ValueError for a malformed entry."""
    return tuple(ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


def _trusted(address: str, proxies: Networks) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in proxies)


def client_address(request: web.Request) -> str:
    """The client's address as far as this server can know it (see the module docstring)."""
    peer = request.remote or "-"
    proxies = request.config_dict.get(TRUSTED_PROXIES, ())
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        if not _trusted(hop, proxies):
            return hop[:64]
    return peer

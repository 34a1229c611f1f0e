"""Which address a per-client limit counts: the peer, or a trusted proxy's forwarded hop."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from bot.channels.client import TRUSTED_PROXIES, client_address, parse_networks
from bot.settings import Settings


def _request(peer: str, forwarded: str | None, proxies: str) -> web.Request:
    app = web.Application()
    app[TRUSTED_PROXIES] = parse_networks(proxies)
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}

    class _Transport:
        def get_extra_info(self, name: str, default: object = None) -> object:
            return (peer, 40000) if name == "peername" else default

        def is_closing(self) -> bool:
            return False

    return make_mocked_request("GET", "/", headers=headers, app=app, transport=_Transport())


def test_the_peer_counts_when_no_proxy_is_trusted() -> None:
    assert client_address(_request("203.0.113.9", "198.51.100.1", "")) == "203.0.113.9"


def test_a_trusted_proxy_forwards_the_last_untrusted_hop() -> None:
    request = _request("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.0.0.3", "10.0.0.0/8")
    assert client_address(request) == "198.51.100.7"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_address(_request("198.51.100.7", "1.2.3.4", "10.0.0.0/8")) == "198.51.100.7"


def test_a_trusted_proxy_without_the_header_is_the_client() -> None:
    assert client_address(_request("10.0.0.2", None, "10.0.0.0/8")) == "10.0.0.2"


def test_a_malformed_proxy_list_is_refused_at_start() -> None:
    with pytest.raises(ValidationError):
        Settings(trusted_proxies="10.0.0.0/8, not-an-address")

"""Attacks on the web chat's free resources, over real HTTP, on SQLite and on PostgreSQL.

The attack run of issue 15 opened 200 sessions in 0.8 s from one address and held 300
WebSockets on one token, and the token travelled in the WebSocket's URL. Each test here does
that again against the app from `create_app` on 127.0.0.1 and reads what was refused, what was
stored and what was logged. A second client address is real too: the client binds 127.0.0.2
(all of 127.0.0.0/8 is loopback), so the server sees another peer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings
from bot.storage.db import session_factory
from bot.storage.models import RateEvent, WebChatSession, utcnow
from tests.support.common import bot_app, listening

OTHER_ADDRESS = "127.0.0.2"
PROTOCOL = "btp.chat"
PEER = "X-Test-Peer"


@web.middleware
async def peer_from_header(request: web.Request, handler: Any) -> web.StreamResponse:
    """What a trusted reverse proxy's middleware does: the client's address from a header
    (127.0.0.1 has no IPv6 neighbours to test with)."""
    peer = request.headers.get(PEER)
    response: web.StreamResponse = await handler(request.clone(remote=peer) if peer else request)
    return response


@dataclass
class Server:
    base: str
    db: AsyncEngine

    async def last_seen(self, session_id: str) -> datetime:
        async with session_factory(self.db)() as session:
            seen = await session.scalar(
                select(WebChatSession.last_seen_at).where(WebChatSession.id == session_id)
            )
        assert seen is not None
        return seen

    async def set_last_seen(self, session_id: str, when: datetime) -> None:
        async with session_factory(self.db)() as session, session.begin():
            await session.execute(
                update(WebChatSession)
                .where(WebChatSession.id == session_id)
                .values(last_seen_at=when)
            )

    async def session_attempts(self, address: str = "127.0.0.1") -> int:
        async with session_factory(self.db)() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(RateEvent)
                .where(RateEvent.key == f"webchat:session:{address}")
            )
        return int(count or 0)

    async def date_session_attempts(self, when: datetime) -> None:
        async with session_factory(self.db)() as session, session.begin():
            await session.execute(update(RateEvent).values(at=when))

    async def sessions(self) -> int:
        async with session_factory(self.db)() as session:
            return int(await session.scalar(select(func.count()).select_from(WebChatSession)) or 0)


@asynccontextmanager
async def serve(db: AsyncEngine, *, proxied: bool = False, **limits: Any) -> AsyncIterator[Server]:
    settings = Settings(
        database_url=db.url.render_as_string(hide_password=False),
        telegram_bot_token=None,
        demo_world=None,
        **limits,
    )
    app = bot_app(settings)
    if proxied:
        app.middlewares.insert(0, peer_from_header)
    async with listening(app) as base:
        yield Server(base, db)


@pytest.fixture
async def server(db: AsyncEngine) -> AsyncIterator[Server]:
    async with serve(db) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def elsewhere() -> AsyncIterator[aiohttp.ClientSession]:
    """A client on another address than 127.0.0.1."""
    connector = aiohttp.TCPConnector(local_addr=(OTHER_ADDRESS, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def open_session(
    http: aiohttp.ClientSession, base: str, peer: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {PEER: peer} if peer else {}
    async with http.post(f"{base}/api/chat/sessions", headers=headers) as response:
        body: dict[str, Any] = await response.json()
        if response.status == 429:
            body["retry_after"] = response.headers.get("Retry-After")
        return response.status, body


async def new_token(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    status, body = await open_session(http, base)
    assert status == 201, body
    return body["session_id"], body["token"]


def offered(token: str) -> tuple[str, str]:
    """The subprotocols the page offers: the chat's, and the token."""
    return (PROTOCOL, f"btp.token.{token}")


async def connect(
    http: aiohttp.ClientSession, base: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(f"{base}/api/chat/ws", protocols=offered(token))


async def refused_socket(http: aiohttp.ClientSession, base: str, **how: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{base}/api/chat/ws", **how)
    return refused.value.status


async def pong(socket: aiohttp.ClientWebSocketResponse) -> bool:
    """Ping as the page does: True for a pong, False when the server closed instead."""
    await socket.send_str("ping")
    async with asyncio.timeout(10):
        frame = await socket.receive()
    if frame.type == WSMsgType.TEXT:
        assert frame.json() == {"type": "pong"}
        return True
    assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
    return False


async def say(
    http: aiohttp.ClientSession, base: str, token: str, text: str
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{base}/api/chat/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


# ---- sessions per client address ------------------------------------------------------------


async def test_one_address_gets_30_sessions_in_10_minutes_and_others_are_not_held_up(
    server: Server, http: aiohttp.ClientSession, elsewhere: aiohttp.ClientSession
) -> None:
    for _ in range(30):
        await new_token(http, server.base)

    status, body = await open_session(http, server.base)
    assert status == 429
    assert body["error"]["code"] == "too_many_sessions"
    # The oldest of the 30 leaves the window in at most 10 minutes.
    assert 0 < int(body["retry_after"]) <= 600

    # Hammering on does not grow the tables: a refusal writes nothing.
    for _ in range(20):
        assert (await open_session(http, server.base))[0] == 429
    assert await server.session_attempts() == 30
    assert await server.sessions() == 30

    # Another address (another office) is not held up by this one.
    _, token = await new_token(elsewhere, server.base)
    assert (await say(elsewhere, server.base, token, "提现多久到账"))[0] == 200

    # The window slides: ten minutes on, the address may open sessions again.
    await server.date_session_attempts(utcnow() - timedelta(minutes=10, seconds=1))
    await new_token(http, server.base)


async def test_a_burst_of_sessions_from_one_address_gets_no_more_than_the_limit(
    db: AsyncEngine, http: aiohttp.ClientSession
) -> None:
    """200 requests at once, as in the attack run: racing each other does not help."""
    async with serve(db, webchat_sessions_per_address=10) as server:
        statuses = await asyncio.gather(*(open_session(http, server.base) for _ in range(200)))
        opened = [body for status, body in statuses if status == 201]
        assert len(opened) == 10
        assert sorted({status for status, _ in statuses}) == [201, 429]
        assert await server.sessions() == 10
        assert await server.session_attempts() == 10
        # Every token handed out works.
        for body in opened[:3]:
            assert (await say(http, server.base, body["token"], "你好"))[0] == 200


async def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_itself(
    db: AsyncEngine, http: aiohttp.ClientSession
) -> None:
    """One IPv6 subscriber has a whole /64: counting single addresses would give it 2**64."""
    async with serve(db, proxied=True, webchat_sessions_per_address=3) as server:
        for host in range(1, 4):
            assert (await open_session(http, server.base, f"2001:db8:1:2::{host}"))[0] == 201
        assert (await open_session(http, server.base, "2001:db8:1:2:ffff::9"))[0] == 429
        assert (await open_session(http, server.base, "2001:db8:1:3::1"))[0] == 201
        assert await server.session_attempts("2001:db8:1:2::/64") == 3

        for _ in range(3):
            assert (await open_session(http, server.base, "::ffff:198.51.100.7"))[0] == 201
        assert (await open_session(http, server.base, "198.51.100.7"))[0] == 429


# ---- sockets per session and per address ----------------------------------------------------


async def test_one_token_holds_3_sockets_not_300(
    server: Server, http: aiohttp.ClientSession
) -> None:
    _, token = await new_token(http, server.base)
    sockets = [await connect(http, server.base, token) for _ in range(3)]
    try:
        for _ in range(10):
            assert await refused_socket(http, server.base, protocols=offered(token)) == 429
        assert all([await pong(socket) for socket in sockets])

        # A tab closed frees its place for another.
        await sockets.pop().close()
        sockets.append(await connect(http, server.base, token))
        assert await pong(sockets[-1])
    finally:
        for socket in sockets:
            await socket.close()


async def test_one_address_holds_a_bounded_number_of_sockets(
    db: AsyncEngine, http: aiohttp.ClientSession, elsewhere: aiohttp.ClientSession
) -> None:
    async with serve(db, webchat_sockets_per_address=4) as server:
        (_, first), (_, second) = [await new_token(http, server.base) for _ in range(2)]
        sockets = [await connect(http, server.base, first) for _ in range(3)]
        try:
            sockets.append(await connect(http, server.base, second))
            # The session has room (1 of 3), the address has none (4 of 4).
            assert await refused_socket(http, server.base, protocols=offered(second)) == 429
            sockets.append(await connect(elsewhere, server.base, second))
            assert await pong(sockets[-1])
        finally:
            for socket in sockets:
                await socket.close()


# ---- the token not in the URL, and not in the logs ------------------------------------------


async def test_the_websocket_token_is_not_taken_from_the_url_and_never_logged(
    server: Server, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    _, token = await new_token(http, server.base)
    # A token in the query string is not read, so a client that puts it there learns at once.
    assert await refused_socket(http, server.base, params={"token": token}) == 401

    caplog.set_level(logging.DEBUG)
    caplog.clear()  # from here on, only what a client that follows the contract sends
    # The token alone, without the chat's own subprotocol, is refused before aiohttp would log
    # the offered protocols as not matching.
    assert await refused_socket(http, server.base, protocols=(f"btp.token.{token}",)) == 401
    assert await refused_socket(http, server.base, protocols=(PROTOCOL,)) == 401
    assert await refused_socket(http, server.base, protocols=offered("not-a-token")) == 401

    socket = await connect(http, server.base, token)
    try:
        assert socket.protocol == PROTOCOL  # the server answers with the chat's, not the token
        assert await pong(socket)
    finally:
        await socket.close()
    header = await http.ws_connect(
        f"{server.base}/api/chat/ws", headers={"Authorization": f"Bearer {token}"}
    )
    assert await pong(header)
    await header.close()

    assert caplog.records, "the access log should have recorded the requests"
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert not [r for r in caplog.records if token in r.getMessage() or digest in r.getMessage()]


async def test_a_plain_get_of_the_socket_route_is_a_400(
    server: Server, http: aiohttp.ClientSession
) -> None:
    _, token = await new_token(http, server.base)
    async with http.get(
        f"{server.base}/api/chat/ws", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


# ---- tokens expire when unused --------------------------------------------------------------


async def test_a_token_unused_for_24_hours_stops_working_everywhere(
    server: Server, http: aiohttp.ClientSession
) -> None:
    session_id, token = await new_token(http, server.base)
    assert (await say(http, server.base, token, "提现多久到账"))[0] == 200
    socket = await connect(http, server.base, token)
    try:
        await server.set_last_seen(session_id, utcnow() - timedelta(hours=24, minutes=1))
        status, body = await say(http, server.base, token, "提现多久到账")
        assert status == 401 and body["error"]["code"] == "unauthorized"
        async with http.get(
            f"{server.base}/api/chat/history", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 401
        assert await refused_socket(http, server.base, protocols=offered(token)) == 401
        # The socket opened before is closed at its next ping, as a policy violation.
        assert not await pong(socket)
        assert socket.close_code == WSCloseCode.POLICY_VIOLATION
    finally:
        await socket.close()


async def test_a_token_used_within_24_hours_keeps_working_and_is_refreshed_cheaply(
    server: Server, http: aiohttp.ClientSession
) -> None:
    session_id, token = await new_token(http, server.base)

    # Used a minute ago: the stored last use is recent enough, nothing is written.
    minute_ago = utcnow() - timedelta(minutes=1)
    await server.set_last_seen(session_id, minute_ago)
    assert (await say(http, server.base, token, "你好"))[0] == 200
    assert await server.last_seen(session_id) == minute_ago

    # Last used 23 hours ago: it still works, and that use is written down.
    long_ago = utcnow() - timedelta(hours=23)
    await server.set_last_seen(session_id, long_ago)
    before = utcnow()
    assert (await say(http, server.base, token, "提现多久到账"))[0] == 200
    assert await server.last_seen(session_id) >= before

    # A page left open pings every 25 s: that is a use too.
    await server.set_last_seen(session_id, long_ago)
    socket = await connect(http, server.base, token)
    try:
        await server.set_last_seen(session_id, long_ago)
        before = utcnow()
        assert await pong(socket)
        assert await server.last_seen(session_id) >= before
    finally:
        await socket.close()

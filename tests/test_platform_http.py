"""The HTTP gateway end to end: the real `HttpPlatform` against the real platform server.

The server listens on 127.0.0.1 over `SqlPlatform` with the demo world. Faults (a stalled
handler, a 500, a garbled answer) come from a middleware on the real application, never from a
mock of aiohttp, and the same middleware counts the requests that reach the server. A wrong
API key surfaces as `PlatformUnavailable`: it is the deployment's fault, not the user's input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
import yaml
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.platform import codec
from bot.platform.breaker import BreakerState, CircuitBreaker, CircuitOpen
from bot.platform.gateway import (
    AmountMismatch,
    PlatformGateway,
    PlatformRejected,
    PlatformUnavailable,
)
from bot.platform.http import HttpPlatform, RecordNotFound
from bot.platform.models import OrderStatus, ResetResult, StatusChange
from bot.platform.server import create_platform_app, run_platform_server
from bot.platform.sql import SqlPlatform
from bot.platform.tables import PaymentLinkRow
from bot.platform.world import World, load_world, read_world
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import session_factory
from tests.support.common import DEMO_WORLD, FAST_HASHER, Seconds, state_of, until

KEY = "test-platform-key"
PUBLIC_URL = "https://pay.test.example"
Fault = Literal["stall", "error", "garbage", "wrong_shape", "lose_answer_once"]
Call = Callable[[PlatformGateway], Awaitable[object]]


class Faults:
    """What the server should do wrong, and how many requests reached it, by method and path."""

    def __init__(self) -> None:
        self.mode: Fault | None = None
        self.hits: Counter[str] = Counter()
        self.release = asyncio.Event()

    def middleware(self) -> Any:
        @web.middleware
        async def inject(request: web.Request, handler: Any) -> web.StreamResponse:
            self.hits[f"{request.method} {request.path}"] += 1
            if self.mode == "stall":
                await self.release.wait()
            elif self.mode == "error":
                return web.json_response(codec.encode_error("internal", "boom"), status=500)
            elif self.mode == "garbage":
                return web.Response(text="<html>gateway says hi</html>", content_type="text/html")
            elif self.mode == "wrong_shape":
                return web.json_response({"id": 42, "items": "nope"})
            response: web.StreamResponse = await handler(request)
            if self.mode == "lose_answer_once":
                # The request took effect, and its answer never arrives.
                self.mode = None
                return web.json_response(codec.encode_error("internal", "boom"), status=500)
            return response

        return inject

    @property
    def total(self) -> int:
        return sum(self.hits.values())


@dataclasses.dataclass
class Server:
    url: str
    faults: Faults

    def client(self, **options: Any) -> HttpPlatform:
        options.setdefault("api_key", KEY)
        options.setdefault("backoff", 0.01)
        return HttpPlatform(self.url, **options)


@pytest.fixture
def demo() -> World:
    return read_world(DEMO_WORLD)


@pytest.fixture
async def platform(db: AsyncEngine, demo: World) -> SqlPlatform:
    sessions = session_factory(db)
    await load_world(sessions, demo, FAST_HASHER)
    return SqlPlatform(sessions, shares_bot_database=False, public_url=PUBLIC_URL)


@pytest.fixture
async def server(platform: SqlPlatform) -> AsyncIterator[Server]:
    faults = Faults()
    app = create_platform_app(platform, KEY)
    app.middlewares.append(faults.middleware())
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield Server(f"http://{host}:{port}", faults)
    finally:
        faults.release.set()
        await runner.cleanup()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[HttpPlatform]:
    async with server.client(timeout=2.0) as platform_client:
        yield platform_client


async def raw(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    key: str | None = KEY,
) -> tuple[int, Any, Mapping[str, str]]:
    """A request as any HTTP client would send it: status, JSON body and headers."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, data=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.read()), response.headers


# Parity with the embedded platform


async def test_every_read_returns_what_the_embedded_platform_returns(
    client: HttpPlatform, platform: SqlPlatform, demo: World
) -> None:
    since_utc = datetime.now(UTC) - timedelta(hours=5)
    since_shanghai = since_utc.astimezone(timezone(timedelta(hours=8)))
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("list_orders", "M001", {"since": since_utc}),
        ("list_orders", "M001", {"since": since_shanghai, "limit": 4}),
    ]
    for merchant in [*(m.id for m in demo.merchants), "M404"]:
        calls += [
            ("get_merchant", merchant, {}),
            ("list_orders", merchant, {}),
            ("list_orders", merchant, {"limit": 3}),
            ("list_accounts", merchant, {}),
            ("list_withdrawals", merchant, {}),
            ("list_withdrawals", merchant, {"limit": 2}),
        ]
    calls += [
        ("get_order", o, {}) for o in [*(o.order_no for o in demo.orders), "bt2026112600000001"]
    ]
    calls += [("get_account", a.login, {}) for m in demo.merchants for a in m.accounts]
    calls += [("get_withdrawal", w, {}) for w in [*(w.id for w in demo.withdrawals), "w0001"]]
    calls += [("get_order", "BT0", {}), ("get_account", "nobody", {}), ("get_withdrawal", "W4", {})]

    for method, key, options in calls:
        over_http = await getattr(client, method)(key, **options)
        direct = await getattr(platform, method)(key, **options)
        assert over_http == direct, (method, key, options)

    order = await client.get_order("BT2026112600000009")
    assert order is not None
    assert order.amount == Decimal("59.90") and isinstance(order.amount, Decimal)
    assert order.attempts[0].failure_code == "insufficient_balance"
    assert order.created_at.tzinfo is not None
    assert len(await client.list_orders("M001", limit=3)) == 3


async def test_recent_payment_attempts_over_http_are_the_embedded_platforms(
    client: HttpPlatform, platform: SqlPlatform, server: Server
) -> None:
    for since in (datetime.now(UTC) - timedelta(hours=h) for h in (1, 5, 48)):
        for limit in (1, 3, 20_000):
            over_http = await client.recent_payment_attempts(since, limit=limit)
            direct = await platform.recent_payment_attempts(since, limit=limit)
            assert over_http == direct, (since, limit)
    every = await client.recent_payment_attempts(datetime.now(UTC) - timedelta(days=30))
    assert every and every == sorted(every, key=lambda a: a.at, reverse=True)
    assert {a.failure_code for a in every} >= {"insufficient_balance", "network_timeout"}
    for query in ("", "?since=yesterday", "?since=2026-11-26T00:00:00%2B00:00&limit=20001"):
        status, body, _ = await raw(server, "GET", "/v1/payment-attempts" + query)
        assert status == 400, query
        assert body["error"]["code"] in ("invalid_field", "invalid_limit")


async def test_unknown_records_are_none_and_unknown_merchants_have_nothing(
    client: HttpPlatform,
) -> None:
    for key in ["M404", "..", ".", "a/b", "", "x\x00", "?q=1", "#", "行"]:
        assert await client.get_merchant(key) is None
        assert await client.get_order(key) is None
        assert await client.get_account(key) is None
        assert await client.get_withdrawal(key) is None
        assert await client.list_orders(key) == []
        assert await client.list_accounts(key) == []
        assert await client.list_withdrawals(key) == []


async def test_payment_links_are_created_like_the_embedded_platform_creates_them(
    client: HttpPlatform, platform: SqlPlatform
) -> None:
    over_http = await client.create_payment_link("M001", Decimal("88.50"), "两斤苹果")
    direct = await platform.create_payment_link("M001", Decimal("88.50"), "两斤苹果")

    assert over_http.id != direct.id
    assert over_http.url == f"{PUBLIC_URL}/l/{over_http.id}"
    assert (
        dataclasses.replace(over_http, id=direct.id, url=direct.url, created_at=direct.created_at)
        == direct
    )
    assert over_http.created_at <= direct.created_at  # the one made first, on the same clock
    assert (await client.create_payment_link("M002", Decimal("12"), None)).amount == Decimal(
        "12.00"
    )


async def test_a_payment_link_asked_twice_with_one_key_is_made_once(
    client: HttpPlatform, platform: SqlPlatform, db: AsyncEngine
) -> None:
    first = await client.create_payment_link("M001", Decimal("88.50"), None, idempotency_key="k1")
    again = await client.create_payment_link("M001", Decimal("88.50"), None, idempotency_key="k1")
    direct = await platform.create_payment_link(
        "M001", Decimal("88.50"), None, idempotency_key="k1"
    )
    other = await client.create_payment_link("M001", Decimal("88.50"), None, idempotency_key="k2")
    # Another merchant's key is its own, even when the text is the same.
    elsewhere = await platform.create_payment_link(
        "M002", Decimal("1.00"), None, idempotency_key="k1"
    )
    assert first == again == direct
    assert len({first.id, other.id, elsewhere.id}) == 3
    async with session_factory(db)() as session:
        made = await session.scalar(select(func.count()).select_from(PaymentLinkRow))
    assert made == 3


async def test_a_payment_link_with_a_key_is_retried_and_still_made_once(
    server: Server, db: AsyncEngine
) -> None:
    server.faults.mode = "lose_answer_once"
    async with server.client(retries=2) as retrying:
        link = await retrying.create_payment_link(
            "M001", Decimal("9.90"), None, idempotency_key="retried"
        )
    assert server.faults.hits == {"POST /v1/payment-links": 2}
    async with session_factory(db)() as session:
        rows = (await session.scalars(select(PaymentLinkRow))).all()
    assert [row.id for row in rows] == [link.id]


async def test_an_unusable_idempotency_key_is_refused(server: Server) -> None:
    async with server.client(retries=0) as client:
        with pytest.raises(PlatformRejected):
            await client.create_payment_link(
                "M001", Decimal("1.00"), None, idempotency_key="x" * 101
            )


@pytest.mark.parametrize(
    ("merchant", "amount", "description"),
    [
        ("M404", Decimal("1.00"), None),
        ("M001", Decimal("0"), None),
        ("M001", Decimal("-5.00"), None),
        ("M001", Decimal("1.001"), None),
        ("M001", Decimal("1E+20"), None),
        ("M001", Decimal("1.00"), "x" * 201),
    ],
)
async def test_payment_links_the_platform_refuses_are_rejected(
    client: HttpPlatform, merchant: str, amount: Decimal, description: str | None
) -> None:
    with pytest.raises(PlatformRejected):
        await client.create_payment_link(merchant, amount, description)


async def test_password_resets_answer_like_the_embedded_platform(
    client: HttpPlatform, platform: SqlPlatform
) -> None:
    assert await client.start_password_reset("wang") == ResetResult(sent=True)
    assert await platform.start_password_reset("li") == ResetResult(sent=True)
    assert await client.start_password_reset("nobody") == await platform.start_password_reset(
        "nobody"
    )
    assert await client.start_password_reset("\ud800") == ResetResult(sent=False)
    for _ in range(2):
        assert (await client.start_password_reset("wang")).sent
    throttled = ResetResult(sent=False, throttled=True)
    assert await client.start_password_reset("wang") == throttled
    assert await platform.start_password_reset("wang") == throttled


async def test_resync_moves_the_order_once_and_unknown_orders_are_lookup_errors(
    client: HttpPlatform, platform: SqlPlatform
) -> None:
    first = await client.resync_order("BT2026112600000010")
    assert (first.before, first.after, first.changed) == ("pending", "paid", True)
    assert await client.resync_order("bt2026112600000010") == await platform.resync_order(
        "BT2026112600000010"
    )
    assert (await client.resync_order("BT2026112600000010")).changed is False

    with pytest.raises(LookupError):
        await platform.resync_order("BT0000000000000000")
    with pytest.raises(RecordNotFound) as caught:
        await client.resync_order("BT0000000000000000")
    assert isinstance(caught.value, LookupError) and isinstance(caught.value, PlatformRejected)


async def test_payment_events_move_orders_forward_like_the_embedded_platform(
    client: HttpPlatform, platform: SqlPlatform
) -> None:
    order_no, amount = "BT2026112600000013", Decimal("15.50")  # pending
    moved = await client.record_payment_status(order_no.lower(), OrderStatus.PAID, amount)
    assert moved is not None and moved.change is StatusChange.MOVED
    assert moved.order == await platform.get_order(order_no)
    assert moved.order.status is OrderStatus.PAID
    again = await client.record_payment_status(order_no, OrderStatus.PAID, Decimal("15.5"))
    assert again == await platform.record_payment_status(order_no, OrderStatus.PAID, amount)
    assert again is not None and again.change is StatusChange.ALREADY
    late = await client.record_payment_status(order_no, OrderStatus.PENDING, amount)
    assert late is not None and late.change is StatusChange.BEHIND
    assert late.order.status is OrderStatus.PAID

    for gateway in (client, platform):
        with pytest.raises(AmountMismatch):
            await gateway.record_payment_status(order_no, OrderStatus.REFUNDED, Decimal("15.49"))
        assert await gateway.record_payment_status("BT0", OrderStatus.PAID, amount) is None
    assert (await platform.get_order(order_no)).status is OrderStatus.PAID  # type: ignore[union-attr]


async def test_bind_codes_are_redeemed_once_like_the_embedded_platform(
    client: HttpPlatform, platform: SqlPlatform
) -> None:
    assert await client.redeem_bind_code(" 482913 ") == "M001"
    assert await client.redeem_bind_code("482913") is None
    assert await platform.redeem_bind_code("275160") == "M002"
    assert await client.redeem_bind_code("275160") is None
    assert await client.redeem_bind_code("000000") is None
    assert await platform.redeem_bind_code("000000") is None


# Authentication


async def test_the_server_wants_the_key_and_the_client_reports_a_bad_key_as_unavailable(
    server: Server,
) -> None:
    for key in [None, "wrong-key", KEY + "x", "ключ"]:
        status, body, headers = await raw(server, "GET", "/v1/merchants/M001", key=key)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        assert headers["WWW-Authenticate"] == "Bearer"
        assert KEY not in json.dumps(body)
    assert (await raw(server, "GET", "/v1/merchants/M001"))[0] == 200
    assert (await raw(server, "GET", "/v1/health", key=None))[:2] == (200, {"status": "ok"})

    server.faults.hits.clear()
    for key in ["wrong-key", None]:
        async with server.client(api_key=key) as wrong:
            with pytest.raises(PlatformUnavailable, match="HTTP 401"):
                await wrong.get_merchant("M001")
            with pytest.raises(PlatformUnavailable):
                await wrong.create_payment_link("M001", Decimal("1.00"), None)
    assert server.faults.total == 0


def test_an_empty_key_is_a_configuration_error(platform: SqlPlatform) -> None:
    with pytest.raises(ValueError, match="empty"):
        create_platform_app(platform, " ")


# Failures


# A stalled handler never answers (it waits for an event nobody sets): only the client's own
# timeout can end the call. The outer guard is 100 times longer; should the client's timeout not
# work, the guard's TimeoutError is not the PlatformUnavailable expected, and the test fails.
GUARD = 20.0


async def test_a_stalled_handler_is_unavailable_within_the_timeout(server: Server) -> None:
    server.faults.mode = "stall"
    async with server.client(timeout=0.2, retries=0) as slow, asyncio.timeout(GUARD):
        with pytest.raises(PlatformUnavailable) as caught:
            await slow.get_order("BT2026112600000001")
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert server.faults.hits == {"GET /v1/orders/BT2026112600000001": 1}


async def test_a_stalled_payment_link_is_not_retried(server: Server) -> None:
    server.faults.mode = "stall"
    async with server.client(timeout=0.2, retries=2) as slow, asyncio.timeout(GUARD):
        with pytest.raises(PlatformUnavailable) as caught:
            await slow.create_payment_link("M001", Decimal("5.00"), None)
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert server.faults.hits == {"POST /v1/payment-links": 1}


@pytest.mark.parametrize(
    ("call", "request_line"),
    [
        (lambda g: g.get_order("BT2026112600000001"), "GET /v1/orders/BT2026112600000001"),
        (lambda g: g.get_merchant("M001"), "GET /v1/merchants/M001"),
        (lambda g: g.list_orders("M001"), "GET /v1/merchants/M001/orders"),
        (lambda g: g.list_withdrawals("M001"), "GET /v1/merchants/M001/withdrawals"),
        (lambda g: g.get_account("wang"), "GET /v1/accounts/wang"),
        (
            lambda g: g.resync_order("BT2026112600000010"),
            "POST /v1/orders/BT2026112600000010/resync",
        ),
    ],
)
async def test_idempotent_calls_are_retried_on_a_server_error(
    server: Server, call: Call, request_line: str
) -> None:
    server.faults.mode = "error"
    async with server.client(retries=2) as retrying:
        with pytest.raises(PlatformUnavailable, match="HTTP 500"):
            await call(retrying)
    assert server.faults.hits == {request_line: 3}


@pytest.mark.parametrize(
    ("call", "request_line"),
    [
        (lambda g: g.create_payment_link("M001", Decimal("9.90"), None), "POST /v1/payment-links"),
        (lambda g: g.start_password_reset("wang"), "POST /v1/password-resets"),
        (lambda g: g.redeem_bind_code("482913"), "POST /v1/bind-codes/redeem"),
    ],
)
async def test_calls_with_effects_are_never_retried(
    server: Server, call: Call, request_line: str
) -> None:
    server.faults.mode = "error"
    async with server.client(retries=2) as retrying:
        with pytest.raises(PlatformUnavailable):
            await call(retrying)
    assert server.faults.hits == {request_line: 1}


@pytest.mark.parametrize("fault", ["garbage", "wrong_shape"])
async def test_a_malformed_answer_is_unavailable(server: Server, fault: Fault) -> None:
    server.faults.mode = fault
    async with server.client(retries=1) as confused:
        with pytest.raises(PlatformUnavailable, match="malformed") as caught:
            await confused.get_merchant("M001")
        with pytest.raises(PlatformUnavailable, match="malformed"):
            await confused.list_orders("M001")
    assert isinstance(caught.value.__cause__, codec.CodecError)
    assert server.faults.total == 4


async def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HttpPlatform(f"http://127.0.0.1:{port}", api_key=KEY, retries=1, backoff=0.01) as c:
        with pytest.raises(PlatformUnavailable, match="connection failed") as caught:
            await c.get_order("BT2026112600000001")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)


async def test_a_wrong_base_url_is_unavailable_not_a_missing_record(server: Server) -> None:
    async with HttpPlatform(server.url + "/api", api_key=KEY) as misrouted:
        with pytest.raises(PlatformUnavailable, match="HTTP 404"):
            await misrouted.get_order("BT2026112600000001")


# The circuit breaker


async def test_the_breaker_opens_fails_fast_half_opens_and_closes(server: Server) -> None:
    clock = Seconds()
    breaker = CircuitBreaker(threshold=3, cooldown=30.0, clock=clock)
    server.faults.mode = "error"
    async with server.client(retries=0, breaker=breaker) as guarded:
        for _ in range(3):
            with pytest.raises(PlatformUnavailable, match="HTTP 500"):
                await guarded.get_merchant("M001")
        assert breaker.state is BreakerState.OPEN
        assert server.faults.total == 3

        # Open: refused at once, without a request reaching the server.
        for _ in range(5):
            with pytest.raises(CircuitOpen):
                await guarded.get_merchant("M001")
        clock.advance(29.0)
        with pytest.raises(CircuitOpen):
            await guarded.create_payment_link("M001", Decimal("1.00"), None)
        assert server.faults.total == 3

        clock.advance(2.0)
        assert state_of(breaker) is BreakerState.HALF_OPEN
        server.faults.mode = None
        merchant = await guarded.get_merchant("M001")
        assert merchant is not None and merchant.id == "M001"
        assert state_of(breaker) is BreakerState.CLOSED
        assert server.faults.total == 4


async def test_a_failed_trial_reopens_the_breaker_for_another_cooldown(server: Server) -> None:
    clock = Seconds()
    breaker = CircuitBreaker(threshold=2, cooldown=10.0, clock=clock)
    server.faults.mode = "error"
    async with server.client(retries=2, breaker=breaker) as guarded:
        for _ in range(2):
            with pytest.raises(PlatformUnavailable):
                await guarded.get_withdrawal("W0001")
        assert server.faults.total == 6
        clock.advance(10.0)
        with pytest.raises(PlatformUnavailable, match="HTTP 500"):
            await guarded.get_withdrawal("W0001")
        assert server.faults.total == 9
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitOpen):
            await guarded.get_withdrawal("W0001")
        assert server.faults.total == 9


async def test_half_open_lets_one_trial_through_at_a_time(server: Server) -> None:
    clock = Seconds()
    breaker = CircuitBreaker(threshold=1, cooldown=5.0, clock=clock)
    async with server.client(retries=0, breaker=breaker) as guarded:
        server.faults.mode = "error"
        with pytest.raises(PlatformUnavailable):
            await guarded.get_merchant("M001")
        clock.advance(5.0)
        server.faults.mode = "stall"
        trial = asyncio.create_task(guarded.get_merchant("M002"))

        async def trial_waits() -> bool:
            return server.faults.total == 2

        await until(trial_waits, 20, "the trial call to reach the stalled platform", step=0.01)
        with pytest.raises(CircuitOpen):
            await guarded.get_merchant("M003")
        server.faults.release.set()
        merchant = await trial
        assert merchant is not None and merchant.id == "M002"
        assert breaker.state is BreakerState.CLOSED
        assert server.faults.total == 2


async def test_refusals_and_missing_records_do_not_trip_the_breaker(server: Server) -> None:
    breaker = CircuitBreaker(threshold=1)
    async with aiohttp.ClientSession() as session:
        guarded = server.client(breaker=breaker, session=session)
        for _ in range(3):
            with pytest.raises(PlatformRejected):
                await guarded.create_payment_link("M001", Decimal("-1"), None)
            assert await guarded.get_order("BT0") is None
        await guarded.close()
        assert not session.closed, "an injected session belongs to its owner"
    assert breaker.state is BreakerState.CLOSED


# Input the server refuses


BAD_INPUT: list[tuple[str, str, bytes | None, int, str]] = [
    ("POST", "/v1/payment-links", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/payment-links", b"[" * 12000, 400, "invalid_json"),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": NaN}',
        400,
        "invalid_json",
    ),
    ("POST", "/v1/payment-links", b"\xff\xfe{}", 400, "invalid_json"),
    ("POST", "/v1/payment-links", b"", 400, "invalid_json"),
    ("POST", "/v1/payment-links", b"[1, 2]", 400, "invalid_field"),
    ("POST", "/v1/payment-links", b'{"merchant_id": "M001"}', 400, "invalid_field"),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": 1, "amount": "1.00"}',
        400,
        "invalid_field",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "abc"}',
        400,
        "invalid_field",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": true}',
        400,
        "invalid_field",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "Infinity"}',
        400,
        "invalid_field",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "1e400"}',
        400,
        "invalid_amount",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "0.00"}',
        400,
        "invalid_amount",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": 1.005}',
        400,
        "invalid_amount",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "1", "description": "\\u0000"}',
        400,
        "invalid_field",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "1", "description": "\\ud800"}',
        400,
        "invalid_field",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "1", "description": 7}',
        400,
        "invalid_field",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M404", "amount": "1.00"}',
        404,
        "not_found",
    ),
    (
        "POST",
        "/v1/payment-links",
        b'{"merchant_id": "M001", "amount": "1.00", "pad": "' + b"x" * 17000 + b'"}',
        413,
        "payload_too_large",
    ),
    ("POST", "/v1/password-resets", b"{}", 400, "invalid_field"),
    ("POST", "/v1/password-resets", b'{"login": ["wang"]}', 400, "invalid_field"),
    ("POST", "/v1/bind-codes/redeem", b'{"code": null}', 400, "invalid_field"),
    ("POST", "/v1/bind-codes/redeem", b"x" * (16 * 1024 + 1), 413, "payload_too_large"),
    ("GET", "/v1/merchants/M001/orders?limit=0", None, 400, "invalid_limit"),
    ("GET", "/v1/merchants/M001/orders?limit=201", None, 400, "invalid_limit"),
    ("GET", "/v1/merchants/M001/orders?limit=-1", None, 400, "invalid_limit"),
    ("GET", "/v1/merchants/M001/withdrawals?limit=%C2%B2", None, 400, "invalid_limit"),
    ("GET", "/v1/merchants/M001/orders?since=yesterday", None, 400, "invalid_field"),
    ("GET", "/v1/merchants/M001/orders?since=2026-01-01T00:00:00", None, 400, "invalid_field"),
    ("GET", "/v1/orders/BT0000000000000000", None, 404, "not_found"),
    ("GET", "/v1/accounts/%00", None, 404, "not_found"),
    ("POST", "/v1/orders/BT0000000000000000/resync", None, 404, "not_found"),
    ("GET", "/v1/refunds/1", None, 404, "no_route"),
    ("DELETE", "/v1/orders/BT2026112600000001", None, 405, "method_not_allowed"),
]


async def test_bad_input_gets_a_4xx_with_an_error_body(server: Server) -> None:
    for method, path, body, status, code in BAD_INPUT:
        case = f"{method} {path} {(body or b'')[:80]!r}"
        got_status, got_body, _ = await raw(server, method, path, body)
        assert (got_status, got_body["error"]["code"]) == (status, code), case
        assert isinstance(got_body["error"]["message"], str) and got_body["error"]["message"], case


async def test_amounts_travel_as_exact_decimals_in_either_json_form(server: Server) -> None:
    for amount in [b'"88.50"', b"88.50", b"12"]:
        status, link, _ = await raw(
            server,
            "POST",
            "/v1/payment-links",
            b'{"merchant_id": "M001", "amount": ' + amount + b"}",
        )
        assert status == 201
        assert link["amount"] in {"88.50", "12.00"}


# The reference server and the written contract


async def test_the_reference_server_serves_its_database_until_cancelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}",
        platform_api_key=SecretStr(KEY),
    )
    serving = asyncio.create_task(run_platform_server(settings, "127.0.0.1", 0))
    printed = ""

    async def announced() -> bool:
        nonlocal printed
        printed += capsys.readouterr().out
        return "http://" in printed or serving.done()

    await until(announced, 20, "the platform server to say where it listens", step=0.01)
    url = printed.split()[3].removesuffix("/v1")
    assert KEY not in printed
    try:
        async with HttpPlatform(url, api_key=KEY) as remote:
            assert await remote.get_merchant("M001") is None
            with pytest.raises(PlatformRejected):
                await remote.create_payment_link("M001", Decimal("1.00"), None)
    finally:
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving


def _schema_keys(spec: dict[str, Any], name: str) -> set[str]:
    return set(spec["components"]["schemas"][name]["properties"])


async def test_the_openapi_document_describes_what_the_server_serves(
    server: Server, platform: SqlPlatform
) -> None:
    spec = yaml.safe_load((PROJECT_ROOT / "docs" / "platform-openapi.yaml").read_text("utf-8"))
    app = create_platform_app(platform, KEY)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(m, path) for path, item in spec["paths"].items() for m in item}
    assert served == documented

    answers = {
        "Merchant": ("GET", "/v1/merchants/M001", None),
        "Order": ("GET", "/v1/orders/BT2026112600000009", None),
        "Account": ("GET", "/v1/accounts/wang", None),
        "Withdrawal": ("GET", "/v1/withdrawals/W0003", None),
        "PaymentLink": ("POST", "/v1/payment-links", b'{"merchant_id": "M001", "amount": "1"}'),
        "ResetResult": ("POST", "/v1/password-resets", b'{"login": "wang"}'),
        "ResyncResult": ("POST", "/v1/orders/BT2026112600000010/resync", None),
        "BindResult": ("POST", "/v1/bind-codes/redeem", b'{"code": "482913"}'),
        "PaymentStatusResult": (
            "POST",
            "/v1/orders/BT2026112600000013/payment-status",
            b'{"status": "paid", "amount": "15.50"}',
        ),
        "Error": ("GET", "/v1/orders/BT0", None),
    }
    for schema, (method, path, body) in answers.items():
        _, answer, _ = await raw(server, method, path, body)
        assert set(answer) == _schema_keys(spec, schema), schema
    _, order, _ = await raw(server, "GET", "/v1/orders/BT2026112600000009")
    assert set(order["attempts"][0]) == _schema_keys(spec, "PaymentAttempt")
    assert set(order["channel"]) == _schema_keys(spec, "ChannelRecord")


# The codec


def test_the_codec_writes_exact_amounts_and_offset_moments() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert codec.encode_decimal(Decimal("88.50")) == "88.50"
    assert codec.encode_decimal(Decimal("1E+2")) == "100"
    assert codec.encode_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=shanghai)) == (
        "2026-01-02T03:04:05+08:00"
    )
    assert codec.encode_datetime(datetime(2026, 1, 2)) == "2026-01-02T00:00:00+00:00"
    assert codec.decode_datetime("2026-01-02T03:04:05Z", "at") == datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    with pytest.raises(codec.CodecError, match="offset"):
        codec.decode_datetime("2026-01-02T03:04:05", "at")
    with pytest.raises(codec.CodecError, match="amount"):
        codec.decode_decimal(88.5)

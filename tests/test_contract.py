"""Contract: schemathesis against the OpenAPI files, served by the real servers on 127.0.0.1.

- docs/webchat-openapi.yaml against the bot's app (`create_app`), with a real session token;
- docs/platform-openapi.yaml against the platform's contract server (`create_platform_app`
  over the embedded platform with the demo world), with the API key.

Each API operation becomes one test (schemathesis's Python API, `schema.parametrize()`), with a
bounded number of generated examples (positive and negative; 150 per operation, derandomized),
so the whole file runs in about 40 s. Unknown query parameters are not generated (OpenAPI does
not make them invalid, and both servers ignore them). Every response goes through
schemathesis's default checks: no 5xx, a documented status code, the documented content type,
headers and response schema; valid data accepted and invalid data refused. The servers run in
threads of their own (with their own event loops) because schemathesis sends blocking requests.

There is no long variant; BTP_LONG_TESTS makes no difference here. Set BTP_CONTRACT_EXAMPLES=N
for N examples per operation instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from bot.platform.server import create_platform_app
from bot.platform.sql import SqlPlatform
from bot.platform.world import load_world, read_world
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import create_engine, session_factory, upgrade
from bot.storage.models import WebChatSession
from tests.support.common import DEMO_WORLD, FAST_HASHER, bot_app
from tests.support.ports import free_port

DOCS = PROJECT_ROOT / "docs"
EXAMPLES = int(os.environ.get("BTP_CONTRACT_EXAMPLES", "150"))
PLATFORM_KEY = "contract-platform-key"
NOTIFY_SECRET = "contract-notify-secret"

webchat = schemathesis.openapi.from_path(DOCS / "webchat-openapi.yaml")
platform = schemathesis.openapi.from_path(DOCS / "platform-openapi.yaml")
for _schema in (webchat, platform):
    # OpenAPI does not make unknown query parameters invalid; the servers ignore them.
    _schema.config.generation.update(
        max_examples=EXAMPLES, deterministic=True, allow_extra_parameters=False
    )
# A web chat session made in the database before the server starts, so its bearer token is
# known when schemathesis builds its examples (at collection); only its digest is stored.
SESSION_ID = "wc_contract00000000000"
SESSION_TOKEN = "contract-" + "t" * 32


@webchat.auth()
class WebChatToken:
    """The token of a real web chat session; schemathesis leaves it out or garbles it itself
    when it tests that the API refuses requests without it."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return SESSION_TOKEN

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@platform.auth()
class PlatformKey:
    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return PLATFORM_KEY

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _serve_in_thread(
    build: Callable[[], Awaitable[tuple[web.Application, Callable[[], Awaitable[None]]]]],
) -> Iterator[str]:
    """Run the app `build` makes on 127.0.0.1 in a thread with its own loop; yield its URL."""
    port = free_port()
    ready = threading.Event()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    failure: list[BaseException] = []

    async def main() -> None:
        app, close = await build()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        finished = asyncio.Event()
        stop.append((asyncio.get_running_loop(), finished))
        ready.set()
        try:
            await finished.wait()
        finally:
            await runner.cleanup()
            await close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the fixture
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(60), "the server did not start within 60 s"
    if failure:
        raise failure[0]
    yield f"http://127.0.0.1:{port}"
    loop, finished = stop[0]
    loop.call_soon_threadsafe(finished.set)
    thread.join(30)


async def _demo_database(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    db = create_engine(url)
    try:
        await upgrade(db)
        await load_world(session_factory(db), read_world(DEMO_WORLD), FAST_HASHER)
    finally:
        await db.dispose()
    return url


@pytest.fixture(scope="module")
def webchat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("contract-webchat")

    async def build() -> tuple[web.Application, Callable[[], Awaitable[None]]]:
        url = await _demo_database(folder / "bot.db")
        db = create_engine(url)
        try:
            async with session_factory(db)() as session, session.begin():
                digest = hashlib.sha256(SESSION_TOKEN.encode()).hexdigest()
                session.add(WebChatSession(id=SESSION_ID, token_digest=digest))
        finally:
            await db.dispose()
        settings = Settings(
            database_url=url,
            platform_webhook_secret=SecretStr(NOTIFY_SECRET),
            rate_limit_per_minute=100_000,
            # schemathesis opens hundreds of sessions from 127.0.0.1; the limit has tests of
            # its own (tests/test_attacks_webchat.py).
            webchat_sessions_per_address=100_000,
            demo_world=None,
        )

        async def close() -> None:
            return None

        return bot_app(settings), close

    yield from _serve_in_thread(build)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def platform_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("contract-platform")

    async def build() -> tuple[web.Application, Callable[[], Awaitable[None]]]:
        url = await _demo_database(folder / "platform.db")
        db = create_engine(url)
        gateway = SqlPlatform(session_factory(db), shares_bot_database=False)
        return create_platform_app(gateway, PLATFORM_KEY), db.dispose

    yield from _serve_in_thread(build)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """One connection pool for every example, instead of a new connection per request."""
    with requests.Session() as session:
        yield session


@webchat.parametrize()
@BOUNDED
def test_webchat_api_conforms_to_its_openapi(
    case: schemathesis.Case, webchat_server: str, http: requests.Session
) -> None:
    case.call_and_validate(base_url=webchat_server, session=http, timeout=30)


@platform.parametrize()
@BOUNDED
def test_platform_api_conforms_to_its_openapi(
    case: schemathesis.Case, platform_server: str, http: requests.Session
) -> None:
    case.call_and_validate(base_url=platform_server, session=http, timeout=30)


def test_history_after_a_huge_id_is_refused_not_a_server_error(webchat_server: str) -> None:
    """A case schemathesis finds by itself at some example counts (it matches the documented
    pattern ^[0-9]+$), pinned here so every run tries it: 200 with no messages, or 400."""
    auth = {"Authorization": f"Bearer {SESSION_TOKEN}"}
    said = webchat["/api/chat/messages"]["POST"].Case(body={"text": "你好"}, headers=auth)
    assert said.call_and_validate(base_url=webchat_server, timeout=30).status_code == 200
    history = webchat["/api/chat/history"]["GET"].Case(query={"after": "9" * 20}, headers=auth)
    history.call_and_validate(base_url=webchat_server, timeout=30)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat/sessions", [None, None]),
        ("/api/chat/messages", {"action": "faq:fees.rates", "client_message_id": None}),
        ("/api/chat/messages", {"text": None, "action": "faq:fees.rates"}),
    ],
    ids=["session-body-not-an-object", "null-client-message-id", "null-text"],
)
def test_webchat_refuses_what_schemathesis_once_found_accepted(
    webchat_server: str, http: requests.Session, path: str, body: object
) -> None:
    """Cases schemathesis found at 150 examples, pinned so that every run tries them."""
    auth = {"Authorization": f"Bearer {SESSION_TOKEN}"}
    response = http.post(f"{webchat_server}{path}", json=body, headers=auth, timeout=30)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v1/merchants/" + "0" * 65 + "/orders", None, 400),
        ("GET", "/v1/merchants/" + "0" * 65 + "/accounts", None, 400),
        ("GET", "/v1/merchants/" + "0" * 65 + "/withdrawals", None, 400),
        ("GET", "/v1/merchants/" + "0" * 64 + "/accounts", None, 200),
        ("POST", "/v1/payment-links", {"merchant_id": "M001", "amount": 0}, 400),
        ("POST", "/v1/payment-links", {"merchant_id": "M001", "amount": "0.00"}, 400),
        ("POST", "/v1/payment-links", {"merchant_id": "M001", "amount": "1e2"}, 400),
        ("POST", "/v1/payment-links", {"merchant_id": "M001", "amount": "088.50"}, 400),
        ("POST", "/v1/payment-links", {"merchant_id": "M001", "amount": 0.07}, 201),
        ("POST", "/v1/payment-links", {"merchant_id": "M001", "amount": "9999999999.99"}, 201),
        (
            "POST",
            "/v1/payment-links",
            {"merchant_id": "M001", "amount": "1.00", "description": "\u009c"},
            400,
        ),
        (
            "POST",
            "/v1/payment-links",
            {"merchant_id": "M001", "amount": "1.00", "description": "两斤\u00a0苹果\n"},
            201,
        ),
    ],
)
def test_platform_answers_the_edges_of_its_contract(
    platform_server: str,
    http: requests.Session,
    method: str,
    path: str,
    body: object,
    status: int,
) -> None:
    """Edges where the server and its OpenAPI file once disagreed, pinned for every run."""
    response = http.request(
        method,
        f"{platform_server}{path}",
        json=body,
        headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
        timeout=30,
    )
    assert response.status_code == status, response.text

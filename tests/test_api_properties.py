"""Property-based tests of the HTTP API: any body, any header, never a 5xx, nothing stored.

The real app runs in a thread of its own (with its own event loop) so hypothesis can drive it
with plain blocking requests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.notifications import sign
from bot.platform.world import load_world, read_world
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade
from tests.support.common import DEMO_WORLD, FAST_HASHER, bot_app, examples
from tests.support.ports import free_port

SECRET = "notify-secret-properties"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
message_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {}, optional={"text": json_values, "action": json_values, "client_message_id": json_values}
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("props") / "app.db"
    port = free_port()
    ready = threading.Event()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        db = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(db)
        await load_world(session_factory(db), read_world(DEMO_WORLD), FAST_HASHER)
        await db.dispose()
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{path}",
            platform_webhook_secret=SecretStr(SECRET),
            rate_limit_per_minute=100000,
            demo_world=None,
        )
        runner = web.AppRunner(bot_app(settings))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        finished = asyncio.Event()
        stop.append((asyncio.get_running_loop(), finished))
        ready.set()
        await finished.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield f"http://127.0.0.1:{port}"
    loop, finished = stop[0]
    loop.call_soon_threadsafe(finished.set)
    thread.join(30)
    shutil.rmtree(path.parent, ignore_errors=True)


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture(scope="module")
def token(server: str) -> str:
    with urllib.request.urlopen(
        urllib.request.Request(f"{server}/api/chat/sessions", data=b"{}", method="POST"), timeout=30
    ) as response:
        return str(json.loads(response.read())["token"])


PROPERTY = settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY
@given(body=message_bodies)
def test_chat_messages_never_5xx(server: str, token: str, body: bytes) -> None:
    status = post(f"{server}/api/chat/messages", body, {"Authorization": f"Bearer {token}"})
    assert status < 500


@PROPERTY
@given(body=message_bodies, header=st.text(max_size=80))
def test_chat_messages_with_any_authorization_never_5xx(
    server: str, body: bytes, header: str
) -> None:
    try:
        status = post(f"{server}/api/chat/messages", body, {"Authorization": header})
    except (ValueError, UnicodeEncodeError):
        return  # not a header an HTTP client can send at all
    assert status in (400, 401, 413, 415) or status < 300


@PROPERTY
@given(body=message_bodies, signed=st.booleans())
def test_platform_notify_never_5xx(server: str, body: bytes, signed: bool) -> None:
    headers = {"X-BTP-Signature": sign(SECRET, body)} if signed else {}
    status = post(f"{server}/platform/notify", body, headers)
    assert status < 500
    if not signed:
        assert status in (401, 403)


@PROPERTY
@given(body=message_bodies)
def test_telegram_webhook_without_telegram_never_5xx(server: str, body: bytes) -> None:
    assert post(f"{server}/telegram/webhook", body, {"X-Telegram-Bot-Api-Secret-Token": "x"}) == 403

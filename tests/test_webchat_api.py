"""The web chat API over real HTTP: the app from `create_app`, listening on 127.0.0.1.

Each test gets its own migrated SQLite copy with the demo world loaded. A `Visitor` is one
browser tab: it opens a session, talks, reads the history, and listens on the WebSocket.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from bot.notifications import sign
from tests.support.webchat import (
    CSP,
    PENDING_ORDER,
    Visitor,
    button,
    next_pushed,
    notify,
    payment_event,
    pushed_before_pong,
    serve_webchat,
    text_of,
)

BIND_CODE = "482913"  # M001, 小王水果店


@pytest.fixture
async def base(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with serve_webchat(tmp_path, tmp_path_factory) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def visitor(http: aiohttp.ClientSession, base: str) -> Visitor:
    return await Visitor(http, base).open()


# ---- sessions and messages ----------------------------------------------------------------


async def test_each_visitor_gets_a_session_of_their_own(
    http: aiohttp.ClientSession, base: str
) -> None:
    first, second = await Visitor(http, base).open(), await Visitor(http, base).open()
    assert first.session_id.startswith("wc_")
    assert first.session_id != second.session_id
    assert first.token != second.token
    assert len(first.token) >= 32
    assert await first.history() == {"language": None, "messages": []}


async def test_a_question_gets_the_faq_answer_with_buttons(visitor: Visitor) -> None:
    replies = await visitor.say("提现多久到账")
    assert "1-3个工作日" in text_of(replies)
    assert replies[0]["image"] is None
    assert {"label", "action"} <= set(replies[0]["buttons"][0])


async def test_a_vague_question_offers_suggestions_and_a_button_answers(
    visitor: Visitor,
) -> None:
    replies = await visitor.say("提现相关的那个")
    assert "您是想问" in text_of(replies)
    suggestion = button(replies, "怎么提现、多久到账")
    replies = await visitor.press(suggestion["action"])
    assert "工作日" in text_of(replies)


async def test_payment_link_comes_with_a_png_qr_code(visitor: Visitor) -> None:
    await visitor.say(f"/bind {BIND_CODE}")
    replies = await visitor.say("生成一个88元的收款链接")
    assert "¥88.00" in text_of(replies)
    replies = await visitor.press(button(replies, "确认")["action"])
    assert "https://" in text_of(replies)
    image = next(r["image"] for r in replies if r["image"])
    assert image.startswith("data:image/png;base64,iVBORw0KGgo")


async def test_a_retried_message_is_answered_once(visitor: Visitor) -> None:
    first = await visitor.say("提现多久到账", client_message_id="tab-1-message-1")
    again = await visitor.say("提现多久到账", client_message_id="tab-1-message-1")
    assert first and again == []
    history = await visitor.history()
    assert [m["direction"] for m in history["messages"]] == ["in", "out"]


async def test_a_message_over_the_limit_is_answered_politely(visitor: Visitor) -> None:
    replies = await visitor.say("提" * 4001)
    assert len(replies) == 1
    assert "4000" in replies[0]["text"] and "太长" in replies[0]["text"]


# ---- history --------------------------------------------------------------------------------


async def test_history_rebuilds_the_conversation_after_a_reload(
    http: aiohttp.ClientSession, base: str, visitor: Visitor
) -> None:
    replies = await visitor.say("怎么注册B特派")
    await visitor.press(button(replies, "有帮助")["action"])
    await visitor.say("/lang en")

    reloaded = Visitor(http, base)  # a new page: only the stored token survives
    reloaded.token = visitor.token
    history = await reloaded.history()
    messages = history["messages"]
    assert history["language"] == "en"
    assert [(m["direction"], m["sender"]) for m in messages] == [
        ("in", "user"),
        ("out", "bot"),
        ("in", "user"),
        ("out", "bot"),
        ("in", "user"),
        ("out", "bot"),
    ]
    assert messages[0]["text"] == "怎么注册B特派"
    assert messages[2]["text"] == ""  # a pressed button: the action is not shown as text
    assert [b["index"] for b in messages[1]["buttons"]] == list(range(len(messages[1]["buttons"])))
    assert "English" in messages[5]["text"]
    ids = [m["id"] for m in messages]
    assert ids == sorted(ids)
    assert all(m["at"] for m in messages)

    later = await reloaded.history(after=ids[3])
    assert [m["id"] for m in later["messages"]] == ids[4:]


async def test_history_rejects_an_after_that_is_not_an_id(
    http: aiohttp.ClientSession, visitor: Visitor
) -> None:
    async with http.get(
        f"{visitor.base}/api/chat/history", params={"after": "-1"}, headers=visitor.auth
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
    ids=["missing", "wrong-token", "wrong-scheme"],
)
async def test_without_a_valid_token_the_api_answers_401(
    http: aiohttp.ClientSession, base: str, visitor: Visitor, headers: dict[str, str]
) -> None:
    async with http.post(
        f"{base}/api/chat/messages", json={"text": "你好"}, headers=headers
    ) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
    async with http.get(f"{base}/api/chat/history", headers=headers) as response:
        assert response.status == 401
    assert await visitor.history() == {"language": None, "messages": []}


async def test_the_websocket_needs_a_valid_token(http: aiohttp.ClientSession, base: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(
            f"{base}/api/chat/ws", protocols=("btp.chat", "btp.token.not-a-token")
        )
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "bad_json"),
        (b'{"text": "\xc3\x28"}', "bad_json"),
        (b'["a list"]', "bad_request"),
        (b'{"text": "hi", "action": "faq:fees.rates"}', "bad_request"),
        (b"{}", "bad_request"),
        (b'{"text": 42}', "bad_request"),
        (b'{"action": ""}', "bad_request"),
        (b'{"action": ["faq:fees.rates"]}', "bad_request"),
        (json.dumps({"action": "x" * 129}).encode(), "bad_request"),
        (b'{"text": "hi", "client_message_id": ""}', "bad_request"),
        (json.dumps({"text": "hi", "client_message_id": "x" * 65}).encode(), "bad_request"),
        (b'{"text": "hi", "client_message_id": 7}', "bad_request"),
    ],
    ids=[
        "invalid-json",
        "not-utf8",
        "not-an-object",
        "text-and-action",
        "neither",
        "text-not-a-string",
        "empty-action",
        "action-not-a-string",
        "action-too-long",
        "empty-client-id",
        "client-id-too-long",
        "client-id-not-a-string",
    ],
)
async def test_a_malformed_message_is_a_400(
    http: aiohttp.ClientSession, visitor: Visitor, body: bytes, code: str
) -> None:
    async with http.post(
        f"{visitor.base}/api/chat/messages",
        data=body,
        headers={**visitor.auth, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == code and error["message"]
    assert (await visitor.history())["messages"] == []


async def test_a_body_that_is_not_json_content_is_a_415(
    http: aiohttp.ClientSession, visitor: Visitor
) -> None:
    async with http.post(
        f"{visitor.base}/api/chat/messages",
        data=b'{"text": "hi"}',
        headers={**visitor.auth, "Content-Type": "text/plain"},
    ) as response:
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "unsupported_media_type"


async def test_a_body_over_64_kib_is_a_413(http: aiohttp.ClientSession, visitor: Visitor) -> None:
    body = json.dumps({"text": "x" * (64 * 1024)}).encode()
    async with http.post(
        f"{visitor.base}/api/chat/messages",
        data=body,
        headers={**visitor.auth, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
    assert (await visitor.history())["messages"] == []


# ---- pushed messages ------------------------------------------------------------------------


async def test_a_payment_notice_is_pushed_to_the_bound_chat_once(
    http: aiohttp.ClientSession, base: str, visitor: Visitor
) -> None:
    socket = await visitor.socket()
    try:
        replies = await visitor.say(f"/bind {BIND_CODE}")
        assert "小王水果店" in str(replies)  # answered in the response, not pushed again

        event = payment_event("evt_webchat_1")
        assert await notify(http, base, event) == {"result": "applied", "notified": 1}
        pushed = await next_pushed(socket, "收到付款")
        assert "¥15.50" in pushed["text"] and PENDING_ORDER in pushed["text"]
        assert pushed["buttons"] == [] and pushed["image"] is None

        notices = [m for m in (await visitor.history())["messages"] if m["sender"] == "system"]
        assert [m["id"] for m in notices] == [pushed["message_id"]]

        # The platform sends the same event again: nothing changes, nobody is told twice.
        assert await notify(http, base, event) == {"result": "duplicate", "notified": 0}
        # A late "pending" for the now paid order does not move it back either.
        stale = payment_event("evt_webchat_2", status="pending")
        assert await notify(http, base, stale) == {"result": "stale", "notified": 0}
        assert not any("收到付款" in m["text"] for m in await pushed_before_pong(socket))
        after = [m for m in (await visitor.history())["messages"] if m["sender"] == "system"]
        assert after == notices
    finally:
        await socket.close()


async def test_a_chat_not_bound_to_the_merchant_hears_nothing(
    http: aiohttp.ClientSession, base: str, visitor: Visitor
) -> None:
    await visitor.say("提现多久到账")
    assert await notify(http, base, payment_event("evt_webchat_3")) == {
        "result": "applied",
        "notified": 0,
    }
    assert all(m["sender"] != "system" for m in (await visitor.history())["messages"])


async def test_a_badly_signed_notification_is_refused(
    http: aiohttp.ClientSession, base: str
) -> None:
    body = payment_event("evt_webchat_4")
    async with http.post(
        f"{base}/platform/notify",
        data=body,
        headers={"Content-Type": "application/json", "X-BTP-Signature": sign("wrong", body)},
    ) as response:
        assert response.status == 401


# ---- the page -------------------------------------------------------------------------------


class _PageAudit(HTMLParser):
    """Collects what the CSP would block: inline scripts, inline styles, outside resources."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.strings = ""
        self._in_strings = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "style" in found or any(name.startswith("on") for name in found):
            self.problems.append(f"inline style or handler on <{tag}>")
        if tag == "style":
            self.problems.append("<style> element")
        for name in ("src", "href"):
            value = found.get(name) or ""
            if "//" in value:
                self.problems.append(f"outside resource {value}")
        if tag == "script" and not found.get("src"):
            if found.get("type") != "application/json":
                self.problems.append("inline script")
            self._in_strings = found.get("id") == "strings"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_strings = False

    def handle_data(self, data: str) -> None:
        if self._in_strings:
            self.strings += data


async def test_the_page_is_served_with_its_content_security_policy(
    http: aiohttp.ClientSession, base: str
) -> None:
    async with http.get(f"{base}/") as response:
        assert response.status == 200
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.content_type == "text/html"
        page = await response.text()
    audit = _PageAudit()
    audit.feed(page)
    assert audit.problems == []
    strings = json.loads(audit.strings)
    assert set(strings) == {"zh", "en"}
    assert set(strings["zh"]) == set(strings["en"])
    assert strings["zh"]["agent"] == "客服" and strings["en"]["agent"] == "Agent"
    assert 'data-default-language="zh"' in page and 'lang="zh-CN"' in page

    sheets = re.findall(r'rel="stylesheet" href="([^"]+)"', page)
    assert sheets == ["/static/base.css", "/static/chat.css"]
    assets = [("/static/chat.js", "javascript"), *((sheet, "text/css") for sheet in sheets)]
    for path, kind in assets:
        async with http.get(f"{base}{path}") as response:
            assert response.status == 200
            assert kind in response.content_type
    async with http.get(f"{base}/static/chat.js") as response:
        assert "innerHTML" not in await response.text()

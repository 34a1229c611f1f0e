"""Issue 15, items 7 and 8, as an attacker from outside meets them: over HTTP, on both tiers.

Item 7: personal numbers written any way (dots, double spaces, slashes, glued to letters, a
space between every digit) and typed passwords never reach the transcript, the outbox rows
kept after sending, the findings or the handoff; masking is idempotent (the examples a
property test found are kept here as explicit cases). Item 8: a NUL or another C0 control
character in a message is taken out before storage, on the web chat and on Telegram, so
SQLite and PostgreSQL store the same thing (PostgreSQL answered 500 before).
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cleantext import clean_text
from bot.privacy import PASSWORD_MASK, contains_password, mask_pii
from bot.storage.db import create_engine
from bot.storage.models import (
    Agent,
    Conversation,
    Handoff,
    Message,
    OutboxItem,
    UnansweredQuestion,
)
from bot.types import Language
from tests import telegram_updates as tg
from tests.botapi import BotApiStub
from tests.support.common import FAST_HASHER, bot_app, examples, stub_settings
from tests.support.console import PASSWORD, agent_session
from tests.support.webchat import Visitor, next_pushed
from webhook_server import RUNTIME

SECRET = "mask-webhook-secret-0123456789"
NOTIFY_SECRET = "mask-notify-secret-0123456789"
HEADERS = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
ALL_DAY = "00:00-23:59:59.999999"
ORDER = "BT2026112600000001"
ZH_WARNING = "请不要在聊天中发送密码"
EN_WARNING = "never send a password in a chat"

# (typed, stored): what the attack run found stored in full, and what is stored now.
WRITTEN_ANY_WAY = [
    ("卡号 6222.0212.3456.7890", "卡号 ************7890"),
    ("卡号 6222  0212  3456  7890", "卡号 ************7890"),
    ("卡号 6222/0212/3456/7890", "卡号 ************7890"),
    ("card6222021234567890", "card************7890"),
    ("卡号6222 0212 3456 7890 123谢谢", "卡号***************0123谢谢"),
    ("身份证号ID11010519491231002Xok", "身份证号ID110***********002Xok"),
    ("id110105194912310020abc", "id110***********0020abc"),
    ("电话 139.1234.5678", "电话 139****5678"),
    ("电话 1 3 9 1 2 3 4 5 6 7 8", "电话 139****5678"),
    ("tel13912345678call", "tel139****5678call"),
    ("电话 +86 139 1234 5678", "电话 +86139****5678"),
]


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


# ---------------------------------------------------------------------------------------------
# The app over HTTP, on the tier of `db`


@dataclass
class Served:
    client: TestClient[Any, Any]
    stub: BotApiStub
    db: AsyncEngine

    @property
    def base(self) -> str:
        return f"http://{self.client.host}:{self.client.port}"

    async def visitor(self) -> Visitor:
        return await Visitor(self.client.session, self.base).open()

    async def telegram(self, update_id: int, chat_id: int, text: str) -> None:
        update = tg.text_message(update_id, chat_id, text)
        async with self.client.post(
            "/telegram/webhook", data=json.dumps(update), headers=HEADERS
        ) as response:
            assert response.status == 200, await response.text()
        await self.client.app[RUNTIME].relay.flush()

    async def rows(self, column: Any, *where: Any) -> list[Any]:
        async with self.db.connect() as connection:
            query = select(column).where(*where).order_by(column.table.c.id)
            return list((await connection.execute(query)).scalars())


@asynccontextmanager
async def serve(db: AsyncEngine) -> AsyncIterator[Served]:
    url = db.url.render_as_string(hide_password=False)
    async with BotApiStub() as stub:
        settings_ = stub_settings(
            url,
            stub,
            SECRET,
            NOTIFY_SECRET,
            business_hours=ALL_DAY,
            business_days="0123456",
            default_language=Language.ZH,
        )
        app = bot_app(settings_)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield Served(client, stub, db)


@pytest.fixture
async def served(db: AsyncEngine, world: None) -> AsyncIterator[Served]:
    async with serve(db) as running:
        yield running


async def everything_stored(served: Served) -> str:
    """All that is kept where what a user typed may be: transcript, unanswered questions,
    outbox payloads, findings, handoffs."""
    kept: list[str] = []
    for column in (
        Message.text,
        UnansweredQuestion.text,
        OutboxItem.payload,
        Conversation.findings,
    ):
        kept += [json.dumps(value, ensure_ascii=False) for value in await served.rows(column)]
    return "\n".join(kept)


# ---------------------------------------------------------------------------------------------
# Item 7: numbers written any way, over the web chat


async def test_numbers_written_any_way_are_stored_and_shown_masked(served: Served) -> None:
    visitor = await served.visitor()
    for typed, _ in WRITTEN_ANY_WAY:
        await visitor.say(typed)
    stored = await served.rows(Message.text, Message.direction == "in")
    assert stored == [masked for _, masked in WRITTEN_ANY_WAY]
    shown = [m["text"] for m in (await visitor.history())["messages"] if m["direction"] == "in"]
    assert shown == stored
    everything = digits(await everything_stored(served))
    for typed, _ in WRITTEN_ANY_WAY:
        assert digits(typed) not in everything, typed


async def test_order_numbers_and_amounts_stay_whole_and_the_flow_still_reads_them(
    served: Served,
) -> None:
    visitor = await served.visitor()
    await visitor.say("/bind 482913")
    replies = await visitor.say(f"订单{ORDER}支付失败了，金额¥88.50")
    assert "余额不足" in replies[0]["text"], replies
    stored = await served.rows(Message.text, Message.direction == "in")
    assert stored[-1] == f"订单{ORDER}支付失败了，金额¥88.50"


# ---------------------------------------------------------------------------------------------
# Item 7: typed passwords


async def test_a_typed_password_is_masked_and_the_user_warned_in_their_language(
    served: Served,
) -> None:
    visitor = await served.visitor()
    replies = await visitor.say("我的密码是 abc12345 登录不了")
    assert ZH_WARNING in replies[0]["text"]
    assert len(replies) >= 2, "the warning comes before the answer, not instead of it"
    assert all(ZH_WARNING not in reply["text"] for reply in replies[1:])
    english = await served.visitor()
    replies = await english.say("my password is Hunter2! and I cannot log in")
    assert EN_WARNING in replies[0]["text"]
    assert len(replies) >= 2
    stored = await served.rows(Message.text, Message.direction == "in")
    assert stored == [
        f"我的密码是 {PASSWORD_MASK} 登录不了",
        f"my password is {PASSWORD_MASK} and I cannot log in",
    ]
    everything = await everything_stored(served)
    assert "abc12345" not in everything and "Hunter2" not in everything
    # Saying "password" is not typing one: no warning, nothing masked.
    replies = await english.say("I need a password reset")
    assert all(EN_WARNING not in reply["text"] for reply in replies)


async def test_a_password_sent_while_people_hold_the_chat_is_masked_and_warned(
    served: Served,
) -> None:
    # An agent on duty with no room: the handoff waits in the queue, and people hold the chat.
    await add_agents(served, ("picker", 0, True))
    visitor = await served.visitor()
    await visitor.say("转人工")
    assert await served.rows(Conversation.state) == ["queued"]
    replies = await visitor.say("密码:Secret99")
    assert [ZH_WARNING in reply["text"] for reply in replies] == [True]
    assert await visitor.say("还在吗") == [], "the bot stays silent otherwise"
    assert "Secret99" not in await everything_stored(served)
    assert f"密码:{PASSWORD_MASK}" in await served.rows(Message.text, Message.direction == "in")


# ---------------------------------------------------------------------------------------------
# Item 7: the copies that skipped masking (outbox after sending, findings, handoff)


async def test_the_outbox_keeps_a_sent_reply_masked_and_the_user_got_it_whole(
    served: Served,
) -> None:
    chat = 930_001
    await served.telegram(40_001, chat, "我要重置密码")
    await served.telegram(40_002, chat, "13912345678")
    await served.telegram(40_004, chat, "是")  # the reset is confirmed before it is sent
    sent = served.stub.sent_texts(chat)
    assert any("13912345678" in text for text in sent), sent  # the user gets it in full
    payloads = await served.rows(OutboxItem.payload)
    assert payloads and all(p["text"] == mask_pii(p["text"]) for p in payloads)
    assert any("139****5678" in p["text"] for p in payloads), payloads
    statuses = await served.rows(OutboxItem.status)
    assert set(statuses) == {"sent"}
    [findings] = await served.rows(Conversation.findings)
    assert findings["password_reset_for"] == "139****5678"
    await served.telegram(40_003, chat, "转人工")
    handoffs = await served.rows(Handoff.findings)
    assert handoffs and all(h["password_reset_for"] == "139****5678" for h in handoffs)
    assert "13912345678" not in await everything_stored(served)


async def test_an_agents_reply_reaches_the_user_whole_and_the_outbox_keeps_it_masked(
    served: Served,
) -> None:
    await add_agents(served, ("picker", 0, True), ("小张", 3, False))
    visitor = await served.visitor()
    await visitor.say("转人工")
    socket = await visitor.socket()
    said = "请核对卡号 6222 0212 3456 7890 和电话 139.1234.5678"
    async with agent_session(served.base) as agent:
        assert await agent.login("小张") == 303
        [entry] = (await agent.queue())["waiting"]
        await agent.claim(entry["handoff_id"])
        status, body = await agent.post(
            f"/agent/api/chats/{entry['conversation_id']}/reply", text=said
        )
        assert status == 200, body
        await served.client.app[RUNTIME].relay.flush()
        pushed = (await next_pushed(socket, "请核对卡号"))["text"]
        chat = await agent.chat(entry["conversation_id"])
    await socket.close()
    masked = "请核对卡号 ************7890 和电话 139****5678"
    if served.db.dialect.name == "sqlite":
        assert pushed == said  # the user gets what the agent wrote, in full
    else:
        # Several processes share PostgreSQL: the push goes through the event bus, which
        # carries the message's id, and every process reads the text from the transcript
        # (bot.channels.webchat.WebChatSender, as before this change).
        assert pushed == masked
    assert masked in [m["text"] for m in chat["messages"]]
    assert masked in [p["text"] for p in await served.rows(OutboxItem.payload)]
    everything = await everything_stored(served)
    assert "6222 0212" not in everything and "1234.5678" not in everything


async def test_a_reply_refused_for_good_is_kept_masked_too(served: Served) -> None:
    chat = 930_003
    await served.telegram(40_020, chat, "我要重置密码")
    served.stub.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked")
    await served.telegram(40_021, chat, "13912345678")
    assert not any("13912345678" in text for text in served.stub.sent_texts(chat))
    statuses = await served.rows(OutboxItem.status)
    # The first turn's replies went out (the reset, and the binding offered beside it).
    assert statuses[-1] == "failed" and set(statuses[:-1]) == {"sent"}
    payloads = await served.rows(OutboxItem.payload)
    assert "139****5678" in payloads[-1]["text"]
    assert "13912345678" not in await everything_stored(served)


async def add_agents(served: Served, *agents: tuple[str, int, bool]) -> None:
    """(name, capacity, online) rows, with `PASSWORD`."""
    async with served.db.begin() as connection:
        for name, capacity, online in agents:
            await connection.execute(
                insert(Agent).values(
                    name=name,
                    password_hash=FAST_HASHER.hash(PASSWORD),
                    is_supervisor=False,
                    capacity=capacity,
                    online=online,
                    last_seen_at=datetime.now(UTC),
                )
            )


async def test_the_console_shows_rows_kept_from_before_the_mask_masked(served: Served) -> None:
    """Rows stored by the older, weaker mask are masked again where the console shows them."""
    await add_agents(served, ("picker", 0, True), ("小张", 3, False))
    visitor = await served.visitor()
    await visitor.say("转人工")
    old = "卡号 6222.0212.3456.7890 电话 139 1234 5678"
    async with served.db.begin() as connection:
        await connection.execute(update(Message).where(Message.direction == "in").values(text=old))
        await connection.execute(
            update(Conversation).values(findings={"password_reset_for": "13912345678"})
        )
    async with agent_session(served.base) as agent:
        assert await agent.login("小张") == 303
        [entry] = (await agent.queue())["waiting"]
        _, page = await agent.page("/agent")
        chat = await agent.chat(entry["conversation_id"])
    masked = "卡号 ************7890 电话 139****5678"
    assert entry["preview"] == masked
    assert masked in page and "6222.0212" not in page
    assert masked in [m["text"] for m in chat["messages"]]
    assert ["已发起密码重置的账号", "139****5678"] in chat["context"]["findings"]
    assert chat["context"]["summary"] == "已为 139****5678 发起密码重置"
    assert "13912345678" not in json.dumps(chat, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Item 8: NUL and other control characters, on both channels and both tiers


CONTROLS = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r")


async def test_nul_and_control_characters_in_a_web_chat_message_are_removed(
    served: Served,
) -> None:
    visitor = await served.visitor()
    replies = await visitor.say(f"提现\x00多久{CONTROLS}到账\t?", client_message_id="id\x00one")
    assert "1-3个工作日" in replies[0]["text"], replies
    stored = await served.rows(Message.text, Message.direction == "in")
    assert stored == ["提现多久到账\t?"]
    # The same client id again is the same message: redelivered, not handled twice.
    assert await visitor.say("提现\x00多久到账", client_message_id="id\x00one") == []
    replies = await visitor.post({"action": "faq\x00:x"})
    assert replies, "a control character in an action is no 500 either"


async def test_nul_in_a_telegram_message_is_removed(served: Served) -> None:
    chat = 930_002
    await served.telegram(40_010, chat, "提现\x00多久到账\x1b[31m")
    assert any("1-3个工作日" in text for text in served.stub.sent_texts(chat))
    stored = await served.rows(Message.text, Message.direction == "in")
    assert stored == ["提现多久到账[31m"]


# ---------------------------------------------------------------------------------------------
# The masking function itself: idempotent, whatever the text; the examples found, kept


FOUND = [
    "0000000000000 000000000",  # the issue's example: a card, then 9 digits that joined it
    "0000000000000 0",
    "1 13912345678",
    "密码 abc 1234567890123",  # a masked password's stars joined the card after it
    "密码 123456 7890 1234 5678",
    "13912345678 1234",
    "+86 139 1234 5678 88.50",
    "BT2026112600000001" + "1" * 20,
    "11010519491231002X 11010519491231002X",
    "*" * 30 + " 1234",
    "６２２２ ０２１２ ３４５６ ７８９０",
]


@pytest.mark.parametrize("text", FOUND)
def test_masking_the_examples_found_is_idempotent(text: str) -> None:
    once = mask_pii(text)
    assert mask_pii(once) == once


def test_the_issue_example_masks_the_card_and_keeps_what_is_no_number() -> None:
    assert mask_pii("0000000000000 000000000") == "*********0000 000000000"


def test_passwords_are_found_in_chinese_and_english_and_only_there() -> None:
    typed = ["我的密码是 abc12345", "密码:abc", "登录密码abc123", "password: hunter", "pwd=x1"]
    for text in typed:
        assert contains_password(text), text
        assert PASSWORD_MASK in mask_pii(text), text
    said = [
        "忘记密码了",
        "密码错误",
        "password reset",
        "my password is wrong",
        "重置密码13912345678",
    ]
    for text in said:
        assert not contains_password(text), text


def test_clean_text_keeps_tab_newline_and_carriage_return_only() -> None:
    assert clean_text("a\x00b\x1fc\td\ne\rf\x7f") == "abc\td\ne\rf\x7f"
    assert clean_text("x\ud800y") == "x\ufffdy"


SEPARATORS = st.text(alphabet=" .-/_\\·,\u3000\xa0", min_size=1, max_size=3)
# Letters around a number: not B (B + T + 16 digits is an order number) and not X (an ID
# number's last character).
LETTERS = st.text(alphabet=re.sub("[bBxX]", "", string.ascii_letters) + "卡号电话", max_size=6)
number_texts = st.lists(
    st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=20),
        SEPARATORS,
        st.sampled_from(["*", "X", "BT", "密码 ", "password: ", "+86", "¥", "元", "\n"]),
        st.text(max_size=4),
    ),
    max_size=20,
).map("".join)


@settings(max_examples=examples(300), deadline=None)
@given(text=number_texts)
def test_masking_is_idempotent_on_numbers_and_separators(text: str) -> None:
    once = mask_pii(text)
    assert mask_pii(once) == once


def _written(number: str, separators: list[str]) -> str:
    """`number` with a separator run after each digit where `separators` says so."""
    return "".join(d + (separators[i] if i < len(separators) else "") for i, d in enumerate(number))


@settings(max_examples=examples(300), deadline=None)
@given(
    card=st.text(alphabet="0123456789", min_size=13, max_size=19),
    separators=st.lists(st.one_of(st.just(""), SEPARATORS), max_size=18),
    before=LETTERS,
    after=LETTERS,
)
def test_a_card_written_any_way_keeps_only_its_last_four_or_what_its_kind_shows(
    card: str, separators: list[str], before: str, after: str
) -> None:
    written = _written(card, separators[: len(card) - 1])
    masked = mask_pii(f"{before}{written}{after}")
    # Kept: a card's last 4, an ID number's (18 digits) first 3 and last 4, or a mobile
    # number's with +86 (13 digits, 861[3-9]...) first 5 and last 4.
    assert digits(masked) in (card[-4:], card[:3] + card[-4:], card[:5] + card[-4:]), masked


@settings(max_examples=examples(300), deadline=None)
@given(
    second=st.sampled_from("3456789"),
    rest=st.text(alphabet="0123456789", min_size=9, max_size=9),
    separators=st.lists(st.one_of(st.just(""), SEPARATORS), max_size=10),
    before=LETTERS,
    after=LETTERS,
)
def test_a_phone_written_any_way_keeps_its_first_three_and_last_four(
    second: str, rest: str, separators: list[str], before: str, after: str
) -> None:
    phone = f"1{second}{rest}"
    masked = mask_pii(f"{before}{_written(phone, separators)}{after}")
    assert digits(masked) == phone[:3] + phone[-4:], masked


@settings(max_examples=examples(200), deadline=None)
@given(
    body=st.text(alphabet="0123456789", min_size=17, max_size=17),
    check=st.sampled_from("0123456789Xx"),
    separators=st.lists(st.one_of(st.just(""), SEPARATORS), max_size=16),
    before=LETTERS,
)
def test_an_id_number_glued_to_letters_keeps_its_first_three_and_last_four(
    body: str, check: str, separators: list[str], before: str
) -> None:
    masked = mask_pii(f"{before}{_written(body, separators)}{check}号")
    assert digits(masked) == digits(body[:3] + body[-3:] + check), masked


# ---------------------------------------------------------------------------------------------
# Item 7: logs


async def test_a_failed_statement_names_no_values_in_its_error(db: AsyncEngine) -> None:
    """Errors are logged and kept in `last_error` columns: they carry no message text."""
    engine = create_engine(db.url.render_as_string(hide_password=False))
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as failed:
                insert_text = sql_text("INSERT INTO no_such_table (x) VALUES (:x)")
                await connection.execute(insert_text, {"x": "卡号6222021234567890"})
    finally:
        await engine.dispose()
    assert "6222021234567890" not in str(failed.value)


async def test_log_lines_of_the_running_app_are_masked(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The app installs the mask on the log handlers when it starts (pytest's among them)."""
    logger = logging.getLogger("tests.attacks")
    with caplog.at_level(logging.INFO):
        logger.info("user wrote %s", "电话 139 1234 5678, 密码:abc123")
        try:
            raise ValueError("card 6222.0212.3456.7890")
        except ValueError:
            logger.exception("failed")
    lines = "\n".join(caplog.handler.format(record) for record in caplog.records)
    assert "139****5678" in lines and "************7890" in lines
    for leaked in ("1234 5678", "6222.0212", "abc123"):
        assert leaked not in lines

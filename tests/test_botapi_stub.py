"""The Bot API stand-in (tests/botapi.py) against the real python-telegram-bot, and the update
builders (tests/telegram_updates.py) against telegram.Update.de_json."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import struct
import warnings
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import telegram
from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    TelegramObject,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter
from telegram.request import HTTPXRequest

from tests import telegram_updates as tu
from tests.botapi import BotApiStub

CHAT = 42
GROUP = -4242
SENT_AT = 1_764_140_400  # a fixed Unix time for the stand-in to stamp messages with


def make_bot(stub: BotApiStub, token: str | None = None) -> telegram.Bot:
    def request() -> HTTPXRequest:
        # Never through a proxy from the environment: the stand-in is on 127.0.0.1.
        return HTTPXRequest(httpx_kwargs={"trust_env": False})

    return telegram.Bot(
        token or stub.token,
        base_url=f"{stub.url}/bot",
        request=request(),
        get_updates_request=request(),
    )


@pytest.fixture
async def stub() -> AsyncIterator[BotApiStub]:
    async with BotApiStub(token="123456:TEST-token") as api:
        yield api


@pytest.fixture
async def bot(stub: BotApiStub) -> AsyncIterator[telegram.Bot]:
    async with make_bot(stub) as real_bot:
        yield real_bot


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def unknown_fields(obj: object, path: str = "update") -> list[str]:
    """Where python-telegram-bot met fields it does not know (they land in api_kwargs)."""
    found: list[str] = []
    if isinstance(obj, TelegramObject):
        found += [f"{path}.{key}" for key in obj.api_kwargs]
        for name in obj.__slots__:
            found += unknown_fields(getattr(obj, name, None), f"{path}.{name}")
    elif isinstance(obj, tuple | list):
        for index, item in enumerate(obj):
            found += unknown_fields(item, f"{path}[{index}]")
    return found


def without_defaults(dumped: Any, original: Any) -> Any:
    """``dumped`` less the ``False`` flags python-telegram-bot's to_dict adds (e.g.
    delete_chat_photo) where ``original`` has none."""
    if isinstance(dumped, dict) and isinstance(original, dict):
        return {
            key: without_defaults(value, original.get(key))
            for key, value in dumped.items()
            if key in original or value is not False
        }
    if isinstance(dumped, list) and isinstance(original, list) and len(dumped) == len(original):
        return [without_defaults(d, o) for d, o in zip(dumped, original, strict=True)]
    return dumped


def last_description(stub: BotApiStub) -> str:
    """Telegram's own words for the last error (python-telegram-bot lowercases them)."""
    return str(stub.calls[-1].response["description"])


# ---------------------------------------------------------------------- python-telegram-bot


async def test_get_me(bot: telegram.Bot, stub: BotApiStub) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "test_support_bot")
    assert me.can_join_groups is True
    assert unknown_fields(me) == []
    # Bot.initialize() asked once already.
    assert [call.method for call in stub.calls] == ["getMe", "getMe"]
    assert not stub.calls[0].failed


async def test_send_message_with_an_inline_keyboard(bot: telegram.Bot, stub: BotApiStub) -> None:
    markup = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("查看订单", callback_data="order:BT2026112600000001")],
            [InlineKeyboardButton("帮助中心", url="https://help.example.com/zh")],
        ]
    )
    stub.clock = lambda: SENT_AT
    first = await bot.send_message(CHAT, "你好，请选择：", reply_markup=markup)
    second = await bot.send_message(CHAT, "第二条", disable_notification=True)
    in_group = await bot.send_message(GROUP, "群消息")

    assert second.message_id == first.message_id + 1
    assert first.reply_markup == markup
    assert second.reply_markup is None
    assert first.from_user is not None and first.from_user.id == stub.bot_id
    assert (first.chat.id, first.chat.type) == (CHAT, "private")
    assert (in_group.chat.id, in_group.chat.type) == (GROUP, "group")
    assert first.date.timestamp() == SENT_AT  # stamped by the stand-in's clock when sent
    assert unknown_fields(first) == []

    call = stub.calls_of("sendMessage")[0]
    assert call.params["chat_id"] == CHAT
    assert call.params["reply_markup"] == markup.to_dict()
    assert stub.calls_of("sendMessage")[1].params["disable_notification"] is True
    assert stub.sent_texts(CHAT) == ["你好，请选择：", "第二条"]
    assert stub.sent_texts(GROUP) == ["群消息"]


async def test_send_photo_uploads_the_bytes(bot: telegram.Bot, stub: BotApiStub) -> None:
    image = png(400, 200)
    message = await bot.send_photo(CHAT, image, caption="收款二维码")

    call = stub.calls_of("sendPhoto")[0]
    assert call.files["photo"] == image
    assert call.params["caption"] == "收款二维码"
    assert message.caption == "收款二维码"
    assert [(size.width, size.height) for size in message.photo] == [(400, 200)]
    assert stub.sent_texts(CHAT) == ["收款二维码"]
    assert unknown_fields(message) == []

    with pytest.raises(BadRequest):
        await bot.send_photo(CHAT, b"not an image")
    assert last_description(stub) == "Bad Request: IMAGE_PROCESS_FAILED"


async def test_answer_callback_query(bot: telegram.Bot, stub: BotApiStub) -> None:
    assert await bot.answer_callback_query("4000000000000001", text="已收到") is True
    assert stub.calls_of("answerCallbackQuery")[0].params["text"] == "已收到"
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("4000000000000001")


async def test_set_webhook_with_a_secret_token(bot: telegram.Bot, stub: BotApiStub) -> None:
    url = "https://bot.example.com/telegram/webhook"
    assert await bot.set_webhook(
        url, secret_token="s3cr3t_-T0ken", allowed_updates=["message", "callback_query"]
    )
    assert stub.webhook["secret_token"] == "s3cr3t_-T0ken"
    assert stub.webhook["allowed_updates"] == ["message", "callback_query"]
    assert stub.calls_of("setWebhook")[0].response["description"] == "Webhook was set"

    info = await bot.get_webhook_info()
    assert info.url == url
    assert info.allowed_updates == ("message", "callback_query")
    assert info.pending_update_count == 0
    assert info.has_custom_certificate is False

    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    with pytest.raises(BadRequest):
        await bot.set_webhook("http://bot.example.com/hook")
    assert last_description(stub) == (
        "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
    )
    with pytest.raises(BadRequest):
        await bot.set_webhook("https://bot.example.com:8080/hook")
    assert last_description(stub) == (
        "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
    )
    with pytest.raises(BadRequest):
        await bot.set_webhook(url, secret_token="not allowed!")
    assert last_description(stub) == "Bad Request: secret token contains unallowed characters"

    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""


async def test_set_my_commands_per_language(bot: telegram.Bot, stub: BotApiStub) -> None:
    zh = [BotCommand("start", "开始"), BotCommand("bind", "绑定商户")]
    default = [BotCommand("start", "Start"), BotCommand("bind", "Bind your merchant")]
    assert await bot.set_my_commands(zh, language_code="zh")
    assert await bot.set_my_commands(default)
    assert await bot.set_my_commands([("help", "群帮助")], scope=BotCommandScopeAllGroupChats())

    assert stub.commands(language_code="zh") == [c.to_dict() for c in zh]
    assert stub.commands() == [c.to_dict() for c in default]
    assert stub.commands(language_code="en") == []
    assert stub.commands(language_code="zh")[1] == {"command": "bind", "description": "绑定商户"}
    assert stub.commands({"type": "all_group_chats"}) == [
        {"command": "help", "description": "群帮助"}
    ]
    assert stub.calls_of("setMyCommands")[0].params["commands"][0] == {
        "command": "start",
        "description": "开始",
    }

    with pytest.raises(BadRequest):
        await bot.set_my_commands([("Start", "capital letters are refused")])
    assert last_description(stub) == "Bad Request: BOT_COMMAND_INVALID"
    with pytest.raises(BadRequest):
        await bot.set_my_commands(default, language_code="zh-hans")
    assert last_description(stub) == "Bad Request: invalid language code specified"


async def test_get_updates_long_polls_with_offsets(bot: telegram.Bot, stub: BotApiStub) -> None:
    stub.push_update(tu.text_message(1, CHAT, "你好"))
    stub.push_update(tu.command(2, CHAT, "/bind", "482913"))

    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [1, 2]
    assert updates[0].message is not None and updates[0].message.text == "你好"
    assert updates[1].message is not None
    assert updates[1].message.parse_entities() == {updates[1].message.entities[0]: "/bind"}
    # Not confirmed yet: they come again, here one at a time.
    assert [u.update_id for u in await bot.get_updates(limit=1)] == [1]

    async def push_later() -> None:
        await stub.long_poll_waiting()
        stub.push_update(tu.callback_query(3, CHAT, "order:1"))

    # A long poll of 50 s (Telegram's longest) that the push must end: were it not woken, the
    # guard (far shorter) would end the test instead.
    pusher = asyncio.create_task(push_later())
    async with asyncio.timeout(20):
        updates = await bot.get_updates(offset=3, timeout=50, read_timeout=60)
    await pusher
    assert [u.update_id for u in updates] == [3]
    assert updates[0].callback_query is not None and updates[0].callback_query.data == "order:1"
    assert [u["update_id"] for u in stub.pending_updates] == [3]  # offset 3 confirmed 1 and 2

    # With nothing to deliver the poll waits (it is still pending while the loop runs on) and
    # then answers no updates.
    empty = asyncio.create_task(bot.get_updates(offset=4, timeout=1))
    await stub.long_poll_waiting()
    assert not empty.done()
    async with asyncio.timeout(20):
        assert await empty == ()
    assert stub.pending_updates == []
    assert stub.calls_of("getUpdates")[-1].params == {"offset": 4, "timeout": 1}


async def test_a_second_long_poll_ends_the_first(bot: telegram.Bot, stub: BotApiStub) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await stub.long_poll_waiting()  # the first long poll waits at the stand-in
    assert await bot.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await first


async def test_429_surfaces_as_retry_after(
    bot: telegram.Bot, stub: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # retry_after as a timedelta, no deprecation
    stub.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(CHAT, "稍后重试")
    assert raised.value.retry_after == dtm.timedelta(seconds=3)

    await bot.send_message(CHAT, "稍后重试")
    first, second = stub.calls_of("sendMessage")
    assert first.failed and first.status == 429
    assert first.response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert first.params["text"] == "稍后重试"
    assert not second.failed
    assert stub.sent_texts(CHAT) == ["稍后重试"]


async def test_5xx_and_delays(bot: telegram.Bot, stub: BotApiStub) -> None:
    stub.fail_next("sendMessage", status=502)
    stub.fail_next("sendMessage", status=500, times=2)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(CHAT, "a")
    for _ in range(2):
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(CHAT, "a")
    await bot.send_message(CHAT, "a")
    assert [call.failed for call in stub.calls_of("sendMessage")] == [True, True, True, False]

    # A slow Telegram: the answer waits (here until the test says Telegram is well again).
    stub.delay("sendMessage", 60)
    slow = asyncio.create_task(bot.send_message(CHAT, "慢", read_timeout=90))
    await asyncio.sleep(0.1)
    assert not slow.done()
    assert len(stub.calls_of("sendMessage")) == 4  # not answered, so not recorded yet
    stub.delay("sendMessage", 0)
    async with asyncio.timeout(20):
        assert (await slow).text == "慢"
    assert stub.calls_of("sendMessage")[-1].params == {"chat_id": CHAT, "text": "慢"}


async def test_wrong_token_is_invalid_token(stub: BotApiStub) -> None:
    wrong = make_bot(stub, token="123456:WRONG-token")
    try:
        with pytest.raises(InvalidToken):
            await wrong.get_me()
    finally:
        await wrong.request.shutdown()
    assert stub.calls[-1].status == 401
    assert stub.calls[-1].failed
    assert stub.calls[-1].response == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }


async def test_text_limits_and_markup(bot: telegram.Bot, stub: BotApiStub) -> None:
    await bot.send_message(CHAT, "字" * 4096)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(CHAT, "字" * 4097)
    assert last_description(stub) == "Bad Request: message is too long"
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(CHAT, "  \n ")
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="订" * 22)]])
    with pytest.raises(BadRequest):
        await bot.send_message(CHAT, "选择", reply_markup=too_long)
    assert last_description(stub) == "Bad Request: BUTTON_DATA_INVALID"
    fits = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="订" * 21)]])
    await bot.send_message(CHAT, "选择", reply_markup=fits)

    # The bot sends plain text: a parse_mode is refused rather than half-implemented.
    with pytest.raises(BadRequest):
        await bot.send_message(CHAT, "<b>订单</b>", parse_mode=ParseMode.HTML)
    assert last_description(stub) == (
        "Bad Request: the stand-in implements no parse_mode: the bot sends plain text"
    )


async def test_a_pressed_button_round_trip(bot: telegram.Bot, stub: BotApiStub) -> None:
    stub.push_update(tu.callback_query(1, CHAT, "confirm", message_id=77))
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.message is not None
    assert await query.answer()
    # The next message the bot sends in that chat comes after the pushed one, and a builder's
    # next message after that.
    reply = await bot.send_message(CHAT, "好的")
    assert reply.message_id > 77
    assert tu.text_message(2, CHAT, "谢谢")["message"]["message_id"] > reply.message_id


async def test_wait_for(bot: telegram.Bot, stub: BotApiStub) -> None:
    async def send_two() -> None:
        for text in ("一", "二"):
            await asyncio.sleep(0.05)
            await bot.send_message(CHAT, text)

    sender = asyncio.create_task(send_two())
    calls = await stub.wait_for("sendmessage", count=2, timeout=20)
    await sender
    assert [call.params["text"] for call in calls] == ["一", "二"]
    with pytest.raises(TimeoutError, match=r"sendPhoto.*recorded: getMe, sendMessage"):
        await stub.wait_for("sendPhoto", timeout=0.1)


# ---------------------------------------------------------------------- plain HTTP


async def test_every_encoding_telegram_accepts(stub: BotApiStub) -> None:
    api = f"{stub.url}/bot{stub.token}"
    markup = {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/SENDMESSAGE", params={"chat_id": "7", "text": "q"}) as r:
            assert r.status == 200
            assert (await r.json())["result"]["text"] == "q"
        body = {"chat_id": 7, "text": "j", "reply_markup": markup, "disable_notification": True}
        async with http.post(f"{api}/sendMessage", json=body) as r:
            assert (await r.json())["result"]["reply_markup"] == markup
        form = {"chat_id": "7", "text": "f", "reply_markup": json.dumps(markup)}
        async with http.post(f"{api}/sendmessage", data=form) as r:
            assert (await r.json())["ok"] is True
        multipart = aiohttp.FormData({"chat_id": "7", "caption": "m"})
        multipart.add_field("photo", png(10, 10), filename="qr.png", content_type="image/png")
        async with http.post(f"{api}/sendPhoto", data=multipart) as r:
            assert (await r.json())["result"]["caption"] == "m"

        async with http.post(f"{api}/sendMessage", data={"text": "x"}) as r:
            assert r.status == 400
            assert (await r.json())["description"] == "Bad Request: chat_id is empty"
        async with http.post(f"{api}/sendMessage", data={"chat_id": "7"}) as r:
            assert (await r.json())["description"] == "Bad Request: message text is empty"
        async with http.post(f"{api}/sendMessage", data={"chat_id": "@nobody", "text": "x"}) as r:
            assert (await r.json())["description"] == "Bad Request: chat not found"
        bad_markup = {"chat_id": "7", "text": "x", "reply_markup": "{not json"}
        async with http.post(f"{api}/sendMessage", data=bad_markup) as r:
            assert (await r.json())["description"] == (
                "Bad Request: can't parse reply keyboard markup JSON object"
            )
        async with http.post(f"{api}/sendSomething") as r:
            assert r.status == 404
            assert await r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.post(f"{stub.url}/bot{stub.token}x/getMe") as r:
            assert r.status == 401
        async with http.post(f"{stub.url}/botnot-a-token/getMe") as r:
            assert r.status == 404

    assert [call.params["chat_id"] for call in stub.calls[:4]] == [7, 7, 7, 7]
    assert stub.calls[1].params["reply_markup"] == markup
    assert stub.calls[2].params["reply_markup"] == markup
    assert stub.calls[1].params["disable_notification"] is True
    assert stub.calls[3].files["photo"] == png(10, 10)
    assert stub.sent_texts(7) == ["q", "j", "f", "m"]


# ---------------------------------------------------------------------- update builders

BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "text_message": lambda: tu.text_message(1, CHAT, "你好 /help", language_code="zh-hans"),
    "command": lambda: tu.command(2, CHAT, "/bind", args="482913"),
    "callback_query": lambda: tu.callback_query(3, CHAT, "order:1", message_id=5),
    "edited_message": lambda: tu.edited_message(4, CHAT, "改过的", message_id=6),
    "sticker": lambda: tu.sticker(5, CHAT),
    "photo": lambda: tu.photo(6, CHAT, caption="截图 /report"),
    "group_message": lambda: tu.group_message(7, GROUP, "/start@test_support_bot 大家好"),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builders_round_trip_through_de_json(name: str) -> None:
    data = BUILDERS[name]()
    unparsed = json.loads(json.dumps(data))
    bot = telegram.Bot("123456:TEST-token")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        update = Update.de_json(unparsed, bot)
        assert update.effective_chat is not None
        assert update.effective_user is not None
    assert without_defaults(update.to_dict(), data) == data
    assert unknown_fields(update) == []
    assert update.effective_chat.id == (GROUP if name == "group_message" else CHAT)


def test_what_the_builders_build() -> None:
    start = tu.command(1, CHAT, "/start")["message"]
    assert start["entities"] == [{"offset": 0, "length": 6, "type": "bot_command"}]
    assert start["from"] == {
        "id": CHAT,
        "is_bot": False,
        "first_name": "测试用户",
        "language_code": "zh-hans",
    }
    assert start["chat"] == {"id": CHAT, "first_name": "测试用户", "type": "private"}
    # Offsets count UTF-16 units: the emoji takes two.
    mid = tu.text_message(2, CHAT, "👍 /help")["message"]
    assert mid["entities"] == [{"offset": 3, "length": 5, "type": "bot_command"}]
    assert "entities" not in tu.text_message(3, CHAT, "你好")["message"]

    first, second = (tu.text_message(i, CHAT, "x")["message"]["message_id"] for i in (4, 5))
    assert second == first + 1

    group = tu.group_message(6, GROUP, "hi")["message"]
    assert group["chat"] == {"id": GROUP, "title": "测试群", "type": "group"}
    with pytest.raises(ValueError):
        tu.group_message(7, CHAT, "hi")

    query = tu.callback_query(8, CHAT, "x", message_id=9)["callback_query"]
    assert query["message"]["from"]["id"] == tu.BOT_ID
    assert query["message"]["message_id"] == 9
    assert isinstance(query["chat_instance"], str)

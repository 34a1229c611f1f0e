"""Telegram end to end: the real app and python-telegram-bot against the Bot API stand-in.

Updates are posted to /telegram/webhook in real Bot API JSON; replies come back as Bot API calls
recorded by the stand-in on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import select

from bot.channels.telegram import keyboard, split_text
from bot.notifications import sign
from bot.settings import Settings
from bot.storage.models import InboundUpdate, Message
from tests import telegram_updates as tg
from tests.botapi import BotApiStub
from tests.support.common import bot_app, demo_sqlite
from tests.support.telegram import CHAT, NOTIFY_SECRET, SECRET, Telegram
from webhook_server import RUNTIME


@pytest.fixture
async def telegram(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Telegram]:
    path = tmp_path / "app.db"
    shutil.copyfile(await demo_sqlite(tmp_path_factory), path)
    async with BotApiStub() as stub:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{path}",
            telegram_bot_token=SecretStr(stub.token),
            telegram_api_url=stub.url,
            telegram_webhook_secret=SecretStr(SECRET),
            telegram_webhook_url="https://bot.example.com/telegram/webhook",
            platform_webhook_secret=SecretStr(NOTIFY_SECRET),
            demo_world=None,
        )
        async with TestClient(TestServer(bot_app(settings))) as client:
            yield Telegram(client, stub)


async def test_start_registers_webhook_and_commands_in_both_languages(telegram: Telegram) -> None:
    webhook = telegram.stub.webhook
    assert webhook["url"] == "https://bot.example.com/telegram/webhook"
    assert webhook["secret_token"] == SECRET
    zh = [c["command"] for c in telegram.stub.commands(language_code="zh")]
    en = [c["command"] for c in telegram.stub.commands()]
    assert zh == en == ["start", "help", "status", "pay", "reset", "bind", "human", "lang"]


async def test_start_command_greets_with_buttons(telegram: Telegram) -> None:
    replies = await telegram.say("/start")
    assert "B特派" in replies[0]
    assert "human" in telegram.last_keyboard()


async def test_faq_in_chinese_and_english(telegram: Telegram) -> None:
    assert "1-3个工作日" in (await telegram.say("提现多久到账"))[0]
    assert "1-3 working days" in (await telegram.say("how long does a withdrawal take"))[0]


async def test_button_press_answers_the_callback_and_replies(telegram: Telegram) -> None:
    await telegram.say("你好")
    replies = await telegram.press("faq:fees.rates")
    assert "官网" in replies[0]
    await telegram.stub.wait_for("answerCallbackQuery")


async def test_forged_webhook_is_refused_and_nothing_is_stored(telegram: Telegram) -> None:
    update = tg.text_message(1, CHAT, "你好")
    assert await telegram.post(update, secret=None) == 403
    assert await telegram.post(update, secret="wrong") == 403
    assert await telegram.count(InboundUpdate) == 0
    assert telegram.stub.calls_of("sendMessage") == []


async def test_malformed_updates_get_400(telegram: Telegram) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    for body in (b"{not json", b"[]"):
        response = await telegram.client.post("/telegram/webhook", data=body, headers=headers)
        assert response.status == 400
    # An object without a usable update_id can never be handled: acknowledged (Telegram would
    # deliver anything else again for a day), never stored.
    for body in (b'{"update_id": "7"}', b'{"message": {}}'):
        response = await telegram.client.post("/telegram/webhook", data=body, headers=headers)
        assert response.status == 200
        assert (await response.json())["rejected"] == "bad_update_id"
    big = json.dumps(tg.text_message(2, CHAT, "长" * 40000)).encode()
    response = await telegram.client.post("/telegram/webhook", data=big, headers=headers)
    assert response.status == 413
    assert await telegram.count(InboundUpdate) == 0


async def test_redelivered_and_concurrent_duplicates_take_effect_once(telegram: Telegram) -> None:
    update = tg.text_message(50, CHAT, "手续费怎么收")
    statuses = await asyncio.gather(*(telegram.post(update) for _ in range(5)))
    assert statuses == [200] * 5
    await telegram.replies(CHAT, 0)
    assert await telegram.post(update) == 200
    await asyncio.sleep(0.1)
    await telegram.replies(CHAT, 0)
    assert len(telegram.stub.sent_texts(CHAT)) == 1
    assert await telegram.count(InboundUpdate) == 1


async def test_a_handled_update_keeps_its_key_but_not_the_users_numbers(
    telegram: Telegram,
) -> None:
    card, phone = "6222020200112233445", "13812345678"
    await telegram.say(f"我的卡号 {card}，电话 {phone}，付款失败了")
    async with telegram.client.app[RUNTIME].bot.sessions() as session:
        stored = (await session.scalars(select(InboundUpdate))).all()
        said = (await session.scalars(select(Message.text))).all()
    assert [row.processed_at is not None for row in stored] == [True]
    assert stored[0].payload == {}
    assert not any(card in text or phone in text for text in said)
    assert any("3445" in text for text in said)  # the transcript keeps the last four


async def test_updates_of_one_chat_are_answered_in_order(telegram: Telegram) -> None:
    questions = ["提现多久到账", "手续费怎么收", "怎么注册", "二维码收款怎么用"]
    for number, text in enumerate(questions):
        assert await telegram.post(tg.text_message(100 + number, CHAT, text)) == 200
    await telegram.replies(CHAT, len(questions) - 1)
    async with telegram.client.app[RUNTIME].bot.sessions() as session:
        stored = (
            await session.scalars(
                select(Message.text).where(Message.direction == "in").order_by(Message.id)
            )
        ).all()
    assert list(stored) == questions
    texts = telegram.stub.sent_texts(CHAT)
    assert "1-3个工作日" in texts[0] and "官网" in texts[1]


async def test_flood_control_429_is_waited_out_and_nothing_is_lost(telegram: Telegram) -> None:
    telegram.stub.fail_next("sendMessage", status=429, retry_after=1)
    replies = await telegram.say("提现多久到账")
    assert len(replies) == 1 and "1-3个工作日" in replies[0]
    attempts = telegram.stub.calls_of("sendMessage")
    assert [c.failed for c in attempts] == [True, False]
    assert attempts[1].at - attempts[0].at >= 0.9
    assert await telegram.settled() == ["sent"]


async def test_payment_link_sends_the_qr_code_as_a_photo(telegram: Telegram) -> None:
    await telegram.say("/bind 482913")
    await telegram.say("/pay 88.5")
    assert "flow:confirm:yes" in telegram.last_keyboard()
    await telegram.press("flow:confirm:yes")
    photo = (await telegram.stub.wait_for("sendPhoto"))[0]
    assert photo.files["photo"].startswith(b"\x89PNG")
    assert any("pay.btp.example/l/PL" in t for t in telegram.stub.sent_texts(CHAT))


async def test_long_button_actions_fit_telegrams_64_bytes(telegram: Telegram) -> None:
    await telegram.say("/bind 275160")
    await telegram.say("登录不了")
    keyboard = telegram.last_keyboard()
    assert keyboard and all(len(data.encode()) <= 64 for data in keyboard)
    replies = await telegram.press(keyboard[0])
    assert replies


async def test_stickers_photos_groups_and_edits(telegram: Telegram) -> None:
    before = len(telegram.stub.sent_texts(CHAT))
    assert await telegram.post(tg.sticker(300, CHAT)) == 200
    assert "文字" in (await telegram.replies(CHAT, before))[0]
    assert await telegram.post(tg.group_message(301, -100200, "大家好")) == 200
    assert await telegram.post(tg.edited_message(302, CHAT, "改一下")) == 200
    dispatcher = telegram.client.app[RUNTIME].dispatcher
    assert dispatcher is not None
    await dispatcher.idle()
    await telegram.client.app[RUNTIME].relay.flush()
    assert telegram.stub.sent_texts(-100200) == []
    assert len(telegram.stub.sent_texts(CHAT)) == before + 1


async def test_payment_notification_reaches_the_bound_merchant(telegram: Telegram) -> None:
    await telegram.say("/bind 482913")
    before = len(telegram.stub.sent_texts(CHAT))
    body = json.dumps(
        {"id": "evt_tg", "order_no": "BT2026112600000013", "status": "paid", "amount": "15.50"}
    ).encode()
    response = await telegram.client.post(
        "/platform/notify",
        data=body,
        headers={"X-BTP-Signature": sign(NOTIFY_SECRET, body), "Content-Type": "application/json"},
    )
    assert response.status == 200
    assert "收到付款 ¥15.50" in (await telegram.replies(CHAT, before))[0]


async def test_the_token_never_reaches_the_logs(
    telegram: Telegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await telegram.say("你好")
    telegram.stub.fail_next("sendMessage", status=502)
    await telegram.say("谢谢")
    assert telegram.stub.token not in caplog.text
    assert SECRET not in caplog.text


def test_long_text_is_split_at_telegrams_limit() -> None:
    text = ("一段很长的回答。" * 300 + "\n") * 3
    parts = split_text(text)
    assert all(len(part) <= 4096 for part in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_keyboard_sends_a_long_action_as_its_index_and_is_built_once() -> None:
    long_action = "flow:payment_link:amount:" + "9" * 60
    buttons = [
        {"label": "转人工", "action": "human", "index": 0},
        {"label": "长" * 80, "action": long_action, "index": 1},
    ]
    markup = keyboard(buttons)
    assert markup is not None
    rows = [[b.to_dict() for b in row] for row in markup.inline_keyboard]
    assert rows == [
        [{"text": "转人工", "callback_data": "human"}],
        [{"text": "长" * 64, "callback_data": "#1"}],
    ]
    assert keyboard([dict(b) for b in buttons]) is markup  # the same keyboard, not rebuilt
    assert keyboard([]) is None

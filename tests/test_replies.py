"""Replies read like a person wrote them: no raw codes, field names, None or JSON, in zh and en,
and an upset, urgent or complaining user hears an acknowledgement first.

Merchant M001 owns orders ...0001-...0013 (one failed order per failure code) and withdrawals
W0001-W0004 (W0003 failed with `bank_account_mismatch`); M002 owns W0005 and a disabled login;
M003 is under review. See bot/platform/demo_world.yaml.
"""

from __future__ import annotations

import itertools
import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import cast

import pytest

from bot.cli import main
from bot.context import Context, ConversationView, Identity
from bot.diagnostics.withdrawal_status import WithdrawalStatusFlow
from bot.engine import Engine
from bot.faq.knowledge import Knowledge, load_knowledge
from bot.handlers.tone import Tone, acknowledgement, tone_of
from bot.platform.gateway import PlatformGateway
from bot.platform.models import (
    FailureCode,
    MerchantStatus,
    OrderStatus,
    Withdrawal,
    WithdrawalStatus,
)
from bot.platform.world import read_world
from bot.render import Renderer
from bot.settings import Settings
from bot.types import IncomingMessage, Label, Language
from tests.support.common import DEMO_WORLD, Chat

ORDER = "BT20261126000000"
ORDERS = [f"{ORDER}{n:02d}" for n in range(1, 14)]
WITHDRAWALS = ["W0001", "W0002", "W0003", "W0004"]
LANGUAGES = [Language.ZH, Language.EN]

# What the platform speaks in and a reply must not: field names and every code with an
# underscore. Plain-word codes ("paid", "failed") are English words, so only zh is checked for
# those (see _machine_words).
FIELD_NAMES = (
    "failure_reason",
    "failure_code",
    "merchant_id",
    "order_no",
    "synced_at",
    "locked_until",
    "failed_attempts",
    "requested_at",
    "paid_at",
    "channel_status",
)
ENUMS: tuple[type[StrEnum], ...] = (FailureCode, OrderStatus, WithdrawalStatus, MerchantStatus)


def _withdrawal_reasons() -> set[str]:
    world = read_world(DEMO_WORLD)
    return {w.failure_reason for w in world.withdrawals if w.failure_reason}


def _machine_words(language: Language) -> set[str]:
    codes = {member.value for enum in ENUMS for member in enum} | _withdrawal_reasons()
    if language == Language.EN:
        codes = {code for code in codes if "_" in code}
    return codes | set(FIELD_NAMES)


def assert_reads_like_words(text: str, language: Language) -> None:
    assert text.strip()
    assert "None" not in text
    assert "{" not in text and "}" not in text
    assert "Undefined" not in text
    assert "(s)" not in text
    for code in _machine_words(language):
        assert not re.search(rf"(?<![A-Za-z_]){re.escape(code)}(?![A-Za-z_])", text), (
            f"{code!r} in {text!r}"
        )


async def start(chat: Chat, language: Language, merchant: str | None = None) -> None:
    if merchant is not None:
        await chat.bind(merchant)
    await chat.say(f"/lang {language.value}")


def check(chat: Chat, language: Language) -> None:
    assert chat.last, "no reply"
    assert all(reply.template != "fallback" for reply in chat.last), chat.text
    assert_reads_like_words(chat.text, language)


# --- every code has words ------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_status_a_reply_can_show_has_words(renderer: Renderer, language: Language) -> None:
    for macro, enum in (
        ("order_status", OrderStatus),
        ("withdrawal_status", WithdrawalStatus),
        ("merchant_status", MerchantStatus),
    ):
        for member in enum:
            words = renderer.ui(language, macro, status=member.value)
            assert words and "_" not in words, (macro, member)
            if language == Language.ZH:
                assert not words.isascii(), (macro, member)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_failure_code_and_withdrawal_reason_has_words(
    knowledge: Knowledge, language: Language
) -> None:
    for code in FailureCode:
        advice = knowledge.failure_codes[code]
        assert_reads_like_words(advice.cause[language] + advice.advice[language], language)
    for reason in _withdrawal_reasons():
        words = knowledge.withdrawal_failure(reason)
        assert words is not None, f"no words for withdrawal failure {reason!r}"
        assert_reads_like_words(words.cause[language] + words.advice[language], language)
    assert knowledge.withdrawal_failure("BANK_ACCOUNT_MISMATCH") is not None
    assert knowledge.withdrawal_failure("a_reason_nobody_wrote_down") is None
    assert knowledge.withdrawal_failure(None) is None


def test_kb_check_guards_the_withdrawal_failure_words(tmp_path: Path) -> None:
    directory = tmp_path / "knowledge"
    shutil.copytree(Path(__file__).parent.parent / "knowledge", directory)
    path = directory / "failure_codes.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("withdrawal_failures:\n", "withdrawal_failures:\n  Card_Lost: {}\n")
    lines = text.splitlines()
    start = lines.index("withdrawal_failures:")
    en = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("en:"))
    del lines[en]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = [str(p) for p in load_knowledge(directory).problems]
    assert any("Card_Lost" in p and "lower case" in p for p in problems), problems
    assert any("bank_account_mismatch cause has no en text" in p for p in problems), problems
    assert main(["--knowledge", str(directory), "kb", "check"]) == 1
    path.write_text("failure_codes: {}\n", encoding="utf-8")
    problems = [str(p) for p in load_knowledge(directory).problems]
    assert any("'withdrawal_failures' map" in p for p in problems), problems


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_topic_button_has_words(
    knowledge: Knowledge, renderer: Renderer, settings: Settings, language: Language
) -> None:
    ctx = _context(knowledge, renderer, settings, language)
    for label in Label:
        if label == Label.OUT_OF_SCOPE:  # never offered as a suggestion
            continue
        button = ctx.topic_button(label)
        assert button.label and label.value not in button.label
        assert_reads_like_words(button.label, language)


def test_no_failure_code_claims_no_money_was_taken(knowledge: Knowledge) -> None:
    # A timeout or an unavailable channel means no result came back: the payer may have been
    # charged while the order was not updated, exactly the case to check before paying again.
    for code in (FailureCode.NETWORK_TIMEOUT, FailureCode.CHANNEL_UNAVAILABLE):
        advice = knowledge.failure_codes[code]
        assert "没有扣" not in advice.cause[Language.ZH]
        assert "no money was taken" not in advice.cause[Language.EN]
        assert "扣款" in advice.advice[Language.ZH]
        assert "charge" in advice.advice[Language.EN]


# --- the flows' replies over the demo world --------------------------------------------------


PAYMENT_FAILURE = {
    Language.ZH: "订单{}支付失败了，怎么回事",
    Language.EN: "why did order {} fail to pay",
}
WITHDRAWAL = {Language.ZH: "提现{}到哪了", Language.EN: "where is my withdrawal {}"}
DATA_SYNC = {Language.ZH: "订单状态不一致", Language.EN: "order status mismatch"}
LOGIN = {Language.ZH: "账号 {} 登录不了", Language.EN: "I can't log in as {}"}


@pytest.mark.parametrize("language", LANGUAGES)
async def test_merchant_order_replies_read_like_words(engine: Engine, language: Language) -> None:
    for order_no in ORDERS:
        chat = Chat(engine)
        await start(chat, language, "M001")
        await chat.say(PAYMENT_FAILURE[language].format(order_no))
        check(chat, language)
        await chat.say(f"/status {order_no}")
        check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_withdrawal_replies_read_like_words(engine: Engine, language: Language) -> None:
    for merchant, withdrawal in [*(("M001", w) for w in WITHDRAWALS), ("M002", "W0005")]:
        chat = Chat(engine)
        await start(chat, language, merchant)
        await chat.say(WITHDRAWAL[language].format(withdrawal))
        assert [r.template for r in chat.last] == ["flows/withdrawal/status"], chat.text
        check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_failed_withdrawal_says_why_in_words(engine: Engine, language: Language) -> None:
    chat = Chat(engine)
    await start(chat, language, "M001")
    await chat.say(WITHDRAWAL[language].format("W0003"))
    words = engine.knowledge.withdrawal_failure("bank_account_mismatch")
    assert words is not None
    assert words.cause[language] in chat.text and words.advice[language] in chat.text
    assert [b.action for b in chat.buttons] == ["human"]


@pytest.mark.parametrize("language", LANGUAGES)
async def test_data_sync_and_login_replies_read_like_words(
    engine: Engine, language: Language
) -> None:
    for order_no in (f"{ORDER}10", f"{ORDER}11", f"{ORDER}12", None):
        chat = Chat(engine)
        await start(chat, language, "M001")
        await chat.say(DATA_SYNC[language])
        assert [r.template for r in chat.last] == ["flows/data_sync/ask"], chat.text
        if order_no is None:
            await chat.press("flow:recent")
        else:
            await chat.say(order_no)
        assert [r.template for r in chat.last] == ["flows/data_sync/result"], chat.text
        check(chat, language)
    for merchant, login in (("M001", "wang"), ("M001", "wang_cashier"), ("M002", "li"),
                            ("M002", "li_risk"), ("M003", "zhang")):  # fmt: skip
        chat = Chat(engine)
        await start(chat, language, merchant)
        await chat.say(LOGIN[language].format(login))
        assert any(r.template and r.template.startswith("flows/login/") for r in chat.last)
        check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_merchant_not_active_replies_read_like_words(
    engine: Engine, language: Language
) -> None:
    chat = Chat(engine)
    await start(chat, language, "M003")
    await chat.say("/pay 50")
    assert [r.template for r in chat.last] == ["flows/payment_link/merchant_not_active"]
    check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_customer_replies_read_like_words(engine: Engine, language: Language) -> None:
    # Each demo order's payer phone ends in its own four digits (…0002 for order 02).
    phones = {f"{ORDER}01": "5678", f"{ORDER}02": "0002", f"{ORDER}06": "0006"}
    phones |= {f"{ORDER}12": "1111", f"{ORDER}13": "2222"}
    for order_no, digits in phones.items():
        chat = Chat(engine)
        await start(chat, language)
        await chat.say(f"/status {order_no}")
        check(chat, language)
        await chat.say(digits)
        assert [r.template for r in chat.last] == ["flows/payment_status/status"], chat.text
        check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_payment_status_of_every_order_status_reads_like_words(
    renderer: Renderer, language: Language
) -> None:
    for status in OrderStatus:
        for merchant, no_result in itertools.product((True, False), (True, False)):
            text = renderer.render(
                language,
                "flows/payment_status/status",
                order_no=f"{ORDER}01",
                amount="88.50",
                status=status.value,
                paid_at="",
                merchant=merchant,
                in_sync=False,
                no_result=no_result,
            )
            assert_reads_like_words(text, language)


# --- a withdrawal failure reason nobody wrote down -------------------------------------------


def _context(
    knowledge: Knowledge,
    renderer: Renderer,
    settings: Settings,
    language: Language,
    text: str = "",
    identity: Identity | None = None,
) -> Context:
    async def recent(key: str, window: timedelta) -> int:
        return 0

    conversation = ConversationView(
        id=1,
        channel="test",
        chat_id="c1",
        state="bot",
        language=language,
        language_pinned=True,
        flow=None,
        flow_step=None,
        slots={},
        failures=0,
        last_label=None,
    )
    return Context(
        message=IncomingMessage("test", "c1", "c1", "c1:1", text),
        conversation=conversation,
        language=language,
        knowledge=knowledge,
        renderer=renderer,
        settings=settings,
        # The tone and the withdrawal report read no live data.
        gateway=cast(PlatformGateway, None),
        identity=identity or Identity(),
        now=datetime(2026, 11, 26, 2, 0, tzinfo=UTC),
        recent=recent,
    )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("reason", ["a_reason_nobody_wrote_down", None, ""])
def test_an_unknown_withdrawal_failure_is_said_honestly(
    knowledge: Knowledge,
    renderer: Renderer,
    settings: Settings,
    language: Language,
    reason: str | None,
) -> None:
    ctx = _context(knowledge, renderer, settings, language, identity=Identity("merchant", "M001"))
    withdrawal = Withdrawal(
        id="W0009",
        merchant_id="M001",
        amount=Decimal("800.00"),
        status=WithdrawalStatus.FAILED,
        requested_at=ctx.now - timedelta(days=2),
        failure_reason=reason,
    )
    outcome = WithdrawalStatusFlow().report(ctx, withdrawal)
    text = outcome.replies[0].text
    assert_reads_like_words(text, language)
    if reason:
        assert reason not in text
    assert "W0009" in text and [b.action for b in outcome.replies[0].buttons] == ["human"]
    assert outcome.findings["failure_reason"] == reason


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_withdrawal_status_reads_like_words(
    knowledge: Knowledge, renderer: Renderer, settings: Settings, language: Language
) -> None:
    ctx = _context(knowledge, renderer, settings, language, identity=Identity("merchant", "M001"))
    base = Withdrawal(
        id="W0009",
        merchant_id="M001",
        amount=Decimal("100.00"),
        status=WithdrawalStatus.REQUESTED,
        requested_at=ctx.now - timedelta(days=1),
    )
    for status in WithdrawalStatus:
        for age in (timedelta(hours=1), timedelta(days=10)):
            withdrawal = replace(
                base,
                status=status,
                requested_at=ctx.now - age,
                paid_at=ctx.now if status == WithdrawalStatus.PAID else None,
                failure_reason="bank_account_mismatch"
                if status == WithdrawalStatus.FAILED
                else None,
            )
            text = WithdrawalStatusFlow().report(ctx, withdrawal).replies[0].text
            assert_reads_like_words(text, language)


# --- binding first: what it gives, where the code is -----------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
async def test_unbound_withdrawal_question_gets_the_fact_and_the_way_to_bind(
    chat: Chat, language: Language
) -> None:
    await start(chat, language)
    await chat.say(
        {Language.ZH: "我的提现到哪一步了", Language.EN: "where is my withdrawal"}[language]
    )
    # The general fact, then how to bind and where the code is (the request is kept).
    assert [r.template for r in chat.last] == ["flows/withdrawal/unbound", "flows/bind_first"]
    assert "1-3" in chat.last[0].text and "/bind" in chat.last[1].text
    assert {Language.ZH: "商户后台", Language.EN: "merchant back office"}[language] in chat.text
    assert [b.action for b in chat.buttons] == ["human"]
    check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_bind_first_says_what_was_asked_and_where_the_code_is(
    chat: Chat, renderer: Renderer, language: Language
) -> None:
    await start(chat, language)
    await chat.say("/pay 50")
    assert [r.template for r in chat.last] == ["flows/bind_first"]
    assert renderer.ui(language, "action_payment_link") in chat.text
    assert {Language.ZH: "商户后台", Language.EN: "merchant back office"}[language] in chat.text
    check(chat, language)
    # Called without what was asked (as older call sites do), it still reads whole.
    assert_reads_like_words(renderer.render(language, "flows/bind_first"), language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_unbound_login_and_data_sync_say_where_the_code_is(
    engine: Engine, language: Language
) -> None:
    asks = {
        Language.ZH: ["登录不了", "后台订单状态和顾客看到的不一致"],
        Language.EN: ["I can't log in", "the order status in my back office doesn't match"],
    }
    for text in asks[language]:
        chat = Chat(engine)
        await start(chat, language)
        await chat.say(text)
        assert {Language.ZH: "商户后台", Language.EN: "merchant back office"}[language] in chat.text
        check(chat, language)


# --- acknowledgement of an upset, urgent or complaining user ---------------------------------


@pytest.mark.parametrize(
    ("text", "tone"),
    [
        ("烦死了！！我的钱到底什么时候到账", Tone.UPSET),
        ("到底什么时候到账！！", Tone.UPSET),
        ("我要投诉！付了钱订单还显示没付款", Tone.COMPLAINT),
        ("I want to file a complaint", Tone.COMPLAINT),
        ("where is my money?? this is ridiculous", Tone.UPSET),
        ("seriously, my payout is STILL not here!!", Tone.UPSET),
        ("ugh I can't log in AGAIN, so annoying", Tone.UPSET),
        ("急用钱，提现快点到", Tone.URGENT),
        ("this is urgent, where is W0001", Tone.URGENT),
        ("I paid an hour ago and NOTHING!! did it go through or not", Tone.URGENT),
        ("提现什么时候到？？", Tone.URGENT),
        ("提现多久到账", None),
        ("how long does a withdrawal take?", None),
        ("BT2026112600000001", None),
        ("", None),
    ],
)
@pytest.mark.parametrize("language", LANGUAGES)
def test_acknowledgement_by_tone(
    knowledge: Knowledge,
    renderer: Renderer,
    settings: Settings,
    language: Language,
    text: str,
    tone: Tone | None,
) -> None:
    ctx = _context(knowledge, renderer, settings, language, text)
    assert tone_of(ctx) == tone
    reply = acknowledgement(ctx)
    if tone is None:
        assert reply is None
        return
    assert reply is not None and reply.template == "dialogue/ack"
    assert_reads_like_words(reply.text, language)
    assert len(reply.text) < 120


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_tone_has_its_own_words_and_a_complaint_hears_how_to_reach_a_person(
    renderer: Renderer, language: Language
) -> None:
    texts = {tone: renderer.render(language, "dialogue/ack", kind=tone.value) for tone in Tone}
    assert len(set(texts.values())) == len(Tone)
    assert "/human" in texts[Tone.COMPLAINT]


def test_a_pressed_button_is_not_a_tone(
    knowledge: Knowledge, renderer: Renderer, settings: Settings
) -> None:
    ctx = _context(knowledge, renderer, settings, Language.ZH)
    ctx.message = IncomingMessage("test", "c1", "c1", "c1:2", "", "human")
    assert acknowledgement(ctx) is None


@pytest.mark.parametrize("language", LANGUAGES)
async def test_no_failure_reply_does_not_contradict_the_payment_channel(
    engine: Engine, language: Language
) -> None:
    # Order ...10: the platform says pending, the channel says paid. "The customer has not paid
    # yet" would be a claim the data does not support; the reply points at the re-sync instead.
    chat = Chat(engine)
    await start(chat, language, "M001")
    await chat.say(PAYMENT_FAILURE[language].format(f"{ORDER}10"))
    assert [r.template for r in chat.last] == ["flows/payment_failure/no_failure"]
    assert {Language.ZH: "订单状态不一致", Language.EN: "order status mismatch"}[
        language
    ] in chat.text
    assert {Language.ZH: "没有收到付款", Language.EN: "no payment"}[language] not in chat.text
    check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_customer_hears_the_failure_in_their_own_words(
    engine: Engine, knowledge: Knowledge, language: Language
) -> None:
    # Order ...02 failed on a timeout; its payer's phone ends in 0002.
    chat = Chat(engine)
    await start(chat, language)
    await chat.say(PAYMENT_FAILURE[language].format(f"{ORDER}02"))
    await chat.say("0002")
    assert [r.template for r in chat.last] == ["flows/payment_failure/explained"], chat.text
    advice = knowledge.failure_codes[FailureCode.NETWORK_TIMEOUT]
    assert advice.customer_cause[language] in chat.text
    assert advice.customer_advice[language] in chat.text
    assert {Language.ZH: "收款链接", Language.EN: "payment link"}[language] not in chat.text
    check(chat, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_customer_words_for_every_failure_code_speak_to_the_payer(
    knowledge: Knowledge, language: Language
) -> None:
    third_person = {Language.ZH: "顾客", Language.EN: "the customer"}[language]
    for code in FailureCode:
        advice = knowledge.failure_codes[code]
        text = advice.cause_for(language, merchant=False) + advice.advice_for(
            language, merchant=False
        )
        assert third_person not in text.lower(), code
        assert_reads_like_words(text, language)


@pytest.mark.parametrize("module", ["ui", "console"])
def test_every_language_has_the_same_short_strings_with_the_same_arguments(
    renderer: Renderer, module: str
) -> None:
    """The short strings are macros in each language's own module (docs/decisions/0004): a
    word missing in one language, or one taking other values, fails here and not in front of
    a user or an agent."""
    shapes = {
        language: {name: m.arguments for name, m in renderer.macros(language, module).items()}
        for language in Language
    }
    assert shapes[Language.ZH], f"{module}.j2 defines no macros"
    assert shapes[Language.ZH] == shapes[Language.EN]


def test_the_console_table_holds_every_word_its_pages_and_script_name(renderer: Renderer) -> None:
    """Each `t.key` a console page names, and each key console.js asks for literally, is in
    the table of both languages (StrictUndefined would only catch the pages that a test opens)."""
    root = Path(__file__).resolve().parent.parent / "bot" / "console"
    pages = " ".join(p.read_text(encoding="utf-8") for p in (root / "templates").glob("*.html"))
    named = set(re.findall(r"\bt\.([a-z_][a-z0-9_]*)", pages))
    script = (root / "static" / "console.js").read_text(encoding="utf-8")
    named |= set(re.findall(r"""\bt\(["']([a-z_][a-z0-9_]*)["']\)""", script))
    assert len(named) > 50
    for language in Language:
        assert named - set(renderer.strings(language, "console")) == set(), language

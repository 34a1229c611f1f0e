"""Whole conversations through Engine.handle on a real database, read like the chats they check."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.engine import Engine
from bot.render import Renderer
from bot.storage.db import session_factory
from bot.storage.models import Conversation, FaqFeedback, Message, UnansweredQuestion
from bot.types import Language
from tests.support.common import Chat


async def test_faq_answer_in_chinese(chat: Chat) -> None:
    await chat.say("提现多久能到账啊")
    assert "1-3个工作日" in chat.text
    assert [b.action for b in chat.buttons][:2] == ["fb:withdraw.how:yes", "fb:withdraw.how:no"]


async def test_faq_answers_say_您_and_leave_related_questions_to_the_buttons(chat: Chat) -> None:
    await chat.say("提现怎么操作")
    assert "您的银行账户" in chat.text and "你" not in chat.text
    assert "相关问题" not in chat.text
    assert [b.action for b in chat.buttons][2:] and all(
        b.action.startswith("faq:") for b in chat.buttons[2:]
    )
    await chat.say("how do I withdraw")
    assert "Related:" not in chat.text


def test_leave_message_in_business_hours_does_not_wait_for_work_to_start(
    renderer: Renderer,
) -> None:
    open_now = renderer.render(Language.ZH, "handoff/leave_message", closed=False, hours="9-21")
    assert "没有客服在线" in open_now and "上班后" not in open_now
    closed = renderer.render(Language.ZH, "handoff/leave_message", closed=True, hours="9-21")
    assert "非工作时间" in closed and "上班后" in closed


async def test_faq_answer_in_english(chat: Chat) -> None:
    await chat.say("how long does a withdrawal take?")
    assert "1-3 working days" in chat.text


async def test_fees_answer_says_rates_are_published_not_a_number(chat: Chat) -> None:
    await chat.say("你们手续费怎么收的")
    assert "官网" in chat.text
    assert "%" not in chat.text


async def test_reply_follows_the_language_of_each_message(chat: Chat) -> None:
    await chat.say("你好")
    assert "您好" in chat.text
    await chat.say("hello")
    assert "Hello" in chat.text


async def test_a_lone_login_name_keeps_a_chinese_chat_chinese(chat: Chat) -> None:
    await chat.say("你好")
    await chat.say("wang")
    assert chat.last[0].text and not chat.text.isascii()
    await chat.say("hello")  # a word the bot knows, not a name: the chat follows it
    assert "Hello" in chat.text


async def test_help_says_a_chosen_language_is_kept(chat: Chat) -> None:
    await chat.say("/help")
    assert "之后的对话都用这种语言" in chat.text
    await chat.say("English")
    await chat.say("/help")
    assert "I keep it" in chat.text


async def test_switching_language_pins_it(chat: Chat) -> None:
    await chat.say("English")
    assert "English" in chat.text
    await chat.say("提现多久到账")
    assert "working days" in chat.text
    await chat.say("/lang zh")
    await chat.say("how long does a withdrawal take")
    assert "工作日" in chat.text


async def test_out_of_scope_is_not_answered_with_the_nearest_faq(chat: Chat) -> None:
    await chat.say("你们可以给商家贷款吗")
    assert "抱歉" in chat.text
    assert chat.buttons[-1].action == "human"


async def test_second_failure_in_a_row_offers_a_person(chat: Chat) -> None:
    await chat.say("今天天气怎么样")
    await chat.say("推荐一只股票")
    assert "dialogue/offer_handoff" in chat.templates
    actions = [b.action for b in chat.buttons]
    assert [a for a in actions if a.startswith("human")] == ["human:bot_failed"]
    assert "dialogue:continue" in actions  # an offer, never a handoff by itself


async def test_suggestion_button_answers_the_faq(chat: Chat) -> None:
    await chat.press("faq:fees.rates")
    assert "官网" in chat.text


async def test_feedback_is_stored(chat: Chat, db: AsyncEngine) -> None:
    await chat.say("怎么注册B特派")
    await chat.press("fb:onboarding.register:no")
    assert chat.buttons[-1].action == "human"
    async with session_factory(db)() as session:
        rows = (await session.scalars(select(FaqFeedback))).all()
    assert [(r.entry_id, r.helpful) for r in rows] == [("onboarding.register", False)]


async def test_typed_number_presses_the_offered_button(chat: Chat) -> None:
    await chat.say("怎么注册B特派")
    await chat.say("1")
    assert "谢谢" in chat.text


async def test_typed_yes_presses_the_affirmative_button(chat: Chat) -> None:
    await chat.say("how do I sign up")
    await chat.say("yes")
    assert "Thanks for your feedback" in chat.text


async def test_forged_button_is_refused_politely(chat: Chat) -> None:
    await chat.press("faq:../../etc/passwd")
    assert "按钮已经失效" in chat.text or "no longer valid" in chat.text
    await chat.press("drop table")
    assert chat.text


async def test_oversized_message_is_refused_and_nothing_stored(chat: Chat, db: AsyncEngine) -> None:
    await chat.say("手续费" * 2000)
    assert "太长" in chat.text
    async with session_factory(db)() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 0


async def test_redelivered_message_is_handled_once(engine: Engine, db: AsyncEngine) -> None:
    chat = Chat(engine)
    message = chat.message("提现多久到账")
    first = await engine.handle(message)
    again = await engine.handle(message)
    assert first and again == []
    async with session_factory(db)() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 2


async def test_concurrent_duplicates_take_effect_once(engine: Engine, db: AsyncEngine) -> None:
    chat = Chat(engine)
    message = chat.message("你好")
    results = await asyncio.gather(*(engine.handle(message) for _ in range(5)))
    assert sum(1 for r in results if r) == 1
    async with session_factory(db)() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 2


async def test_messages_of_one_chat_keep_their_order(engine: Engine, db: AsyncEngine) -> None:
    chat = Chat(engine)
    texts = [f"第{i}个问题：手续费怎么收" for i in range(6)]
    await asyncio.gather(*(engine.handle(chat.message(t)) for t in texts))
    async with session_factory(db)() as session:
        stored = (
            await session.scalars(
                select(Message.text).where(Message.direction == "in").order_by(Message.id)
            )
        ).all()
    assert list(stored) == texts


async def test_personal_numbers_are_masked_in_storage(chat: Chat, db: AsyncEngine) -> None:
    await chat.say("我的卡号6222021234567890123，手机13912345678，问下手续费")
    async with session_factory(db)() as session:
        stored = (await session.scalars(select(Message.text))).all()
    joined = "\n".join(stored)
    assert "6222021234567890123" not in joined and "13912345678" not in joined
    assert "0123" in joined


async def test_unanswered_questions_are_kept_for_the_knowledge(chat: Chat, db: AsyncEngine) -> None:
    await chat.say("支持比特币收款吗")
    async with session_factory(db)() as session:
        rows = (await session.scalars(select(UnansweredQuestion))).all()
        conversation = await session.scalar(select(Conversation))
    assert [r.text for r in rows] == ["支持比特币收款吗"]
    assert conversation is not None and conversation.failures == 1


async def test_cancel_word_ends_what_is_open(chat: Chat) -> None:
    await chat.say("取消")
    assert "没有进行中的操作" in chat.text


async def test_start_and_help_commands(chat: Chat) -> None:
    await chat.say("/start")
    assert len(chat.buttons) == 5
    await chat.say("/help")
    assert "/lang" in chat.text


async def test_a_chat_sending_too_fast_is_asked_to_wait(chat: Chat, db: AsyncEngine) -> None:
    for number in range(20):
        await chat.say(f"第{number}个问题")
    await chat.say("手续费怎么收")
    assert "太快" in chat.text
    async with session_factory(db)() as session:
        inbound = await session.scalar(
            select(func.count()).select_from(Message).where(Message.direction == "in")
        )
    assert inbound == 20


async def test_two_questions_in_one_message_are_both_answered(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("W0001什么时候到 顺便问下手续费怎么算")
    templates = chat.templates
    assert templates[0] == "flows/withdrawal/status" and "faq_answer" in templates
    assert "W0001" in chat.text
    await chat.say("is W0002 in yet? btw how long do withdrawals usually take")
    templates = chat.templates
    assert templates[0] == "flows/withdrawal/status" and "faq_answer" in templates


async def test_a_side_marker_with_one_question_is_one_question(chat: Chat) -> None:
    await chat.say("顺便问下提现多久到账")
    assert chat.templates == ["faq_answer"]
    await chat.say("我还是不太懂 顺便问下")  # nothing after the marker: read whole
    assert len(chat.last) == 1


async def test_another_withdrawal_named_by_its_amount_right_after_one(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("where is my money?? I withdrew 800 like 3 days ago")
    assert "W0003" in chat.text
    await chat.say("and the 1000 one?")
    assert chat.templates == ["flows/withdrawal/status"]
    assert "W0001" in chat.text
    await chat.say("给我生成个1000的收款链接")  # a request of its own, not a withdrawal
    assert chat.templates == ["flows/payment_link/confirm"]


async def test_the_first_login_asked_about_after_the_second_was_checked(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("登录不了后台")
    await chat.say("第二个")
    assert chat.templates == ["flows/login/nothing_wrong"]
    await chat.say("那第一个呢")  # the first login listed, not the first button (reset)
    assert chat.templates == ["flows/login/locked"]
    assert "wang" in chat.text and "wang_cashier" not in chat.text


async def test_a_no_to_an_answer_then_nothing_understood_offers_a_person(chat: Chat) -> None:
    await chat.say("提现多久到账")
    assert chat.templates == ["faq_answer"]
    await chat.say("不是 就那个啊")  # the answer missed, and so does this one
    assert "dialogue/offer_handoff" in chat.templates
    assert "dialogue:continue" in [button.action for button in chat.buttons]


async def test_failed_orders_named_by_their_amounts(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("a few customers couldn't pay today, what's going on")
    assert chat.templates == ["flows/payment_failure/pick_order"]
    await chat.say("the 4999 one")  # not among the buttons shown: still that order
    assert chat.templates == ["flows/payment_failure/explained"]
    assert "BT2026112600000004" in chat.text
    await chat.say("and the one for 35 bucks?")
    assert chat.templates == ["flows/payment_failure/explained"]
    assert "BT2026112600000002" in chat.text


async def test_was_the_money_taken_under_a_failure_explanation(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("顾客付款失败了")
    await chat.say("BT2026112600000002")
    await chat.say("那顾客的钱扣了没有")
    # What the data shows about that order (a timeout: maybe charged, order not updated).
    assert chat.templates == ["flows/order_summary"]
    assert "BT2026112600000002" in chat.text


async def test_a_no_thanks_that_says_why_declines_the_flow(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("forgot pw")
    await chat.say("hmm no thanks, i just remembered it lol")
    assert chat.templates == ["dialogue/declined"]


async def test_a_bare_no_before_a_value_is_not_a_decline(chat: Chat) -> None:
    await chat.say("我付了没有")
    await chat.say("BT2026112600000012")
    await chat.say("不是，手机号后四位是1111")
    assert "dialogue/declined" not in chat.templates


@pytest.mark.parametrize(
    "ask", ["Can we continue in English please?", "Sorry, can we speak English?", "English please"]
)
async def test_a_request_to_switch_language_is_taken_in_the_middle_of_a_flow(
    chat: Chat, ask: str
) -> None:
    await chat.bind("M001")
    await chat.say("帮我生成一个收款链接")
    await chat.say(ask)
    assert "language_switched" in chat.templates
    await chat.say("88")  # the flow is still open, now in English
    assert chat.templates == ["flows/payment_link/confirm"]
    english = chat.text.replace("B特派", "")
    assert "88.00" in english and not re.search(r"[\u4e00-\u9fff]", english)


@pytest.mark.parametrize(
    "text", ["can you send me the english version of the fee list?", "我看不懂中文"]
)
async def test_a_language_named_inside_a_question_is_not_a_switch(chat: Chat, text: str) -> None:
    await chat.say(text)
    assert "language_switched" not in chat.templates


async def test_a_yes_that_says_the_flows_own_request_confirms_it(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("忘记密码了")
    await chat.say("li")
    await chat.say("好，重置吧")
    assert "flows/password_reset/sent" in chat.templates


async def test_what_can_you_do_after_saying_who_is_asking(chat: Chat) -> None:
    await chat.say("你好～刚注册的，朋友推荐来的，不太会用，你能帮我做什么呀？")
    assert chat.templates == ["help"]


async def test_thanks_thats_all_closes_kindly(chat: Chat) -> None:
    await chat.say("how long does a withdrawal take")
    await chat.say("thanks, that's all")
    assert "fallback" not in chat.templates


async def test_a_goodbye_while_a_value_is_asked_ends_the_flow(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("查一下订单付款状态")
    await chat.say("ok cool bye")
    assert chat.templates == ["bye"]


async def test_a_qr_code_for_an_amount_is_a_link_for_it(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("开个250的收款码")
    assert chat.templates == ["flows/payment_link/confirm"]
    assert "250.00" in chat.text


async def test_a_typed_request_presses_the_summarys_button(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("BT2026112600000010")
    assert "order:sync:BT2026112600000010" in [b.action for b in chat.buttons]
    await chat.say("好的 同步一下")
    assert chat.templates == ["flows/data_sync/result"]


async def test_a_second_ask_joined_by_also_is_answered(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("my login li is locked i think, also what are your fees?")
    templates = chat.templates
    assert (templates[0] or "").startswith("flows/login/") and templates[-1] == "faq_answer"


async def test_how_long_a_lock_lasts_after_the_login_check(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("I can't log in, it says my account is locked")
    await chat.say("the locked one")
    await chat.say("wait how long is the lock")
    assert chat.templates == ["flows/login/locked"]


async def test_an_answer_about_collecting_says_first_that_the_merchant_is_under_review(
    chat: Chat,
) -> None:
    await chat.bind("M003")
    await chat.say("用app怎么收款")
    assert chat.last[0].template == "faq_answer"
    assert chat.last[0].preface == "faq_merchant_note" and "审核中" in chat.text
    active = Chat(chat.engine)
    await active.bind("M001")
    await active.say("用app怎么收款")
    assert active.last[0].preface is None


async def test_only_an_upset_word_asks_what_went_wrong(chat: Chat) -> None:
    await chat.say("烦死了")
    assert chat.templates == ["dialogue/what_is_wrong"]
    assert chat.last[0].preface == "dialogue/ack"
    assert "human" in [button.action for button in chat.buttons]


async def test_another_amount_at_the_offer_of_a_new_link_is_confirmed_first(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("BT2026112600000007 为什么付款失败")
    await chat.say("那我拆成两笔 一笔一万")
    assert chat.templates == ["flows/payment_link/confirm"]
    assert "10000.00" in chat.text


async def test_a_merchants_story_names_the_order_by_its_amount(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say(
        "a lady bought a box of mangoes this morning and paid 59.90, "
        "can you check whether the payment went through"
    )
    assert "BT2026112600000009" in chat.text


async def test_an_unbound_merchant_naming_its_failed_order_binds_first_and_gets_it(
    chat: Chat,
) -> None:
    await chat.say("我是商家 订单BT2026112600000022失败了")
    # The customer's check (its proof asked) and how to bind, the request kept.
    assert chat.templates[-1] == "bind/how"
    await chat.say("/bind 275160")  # M002's code: the request is taken up once bound
    assert "flows/payment_failure/explained" in chat.templates
    assert "BT2026112600000022" in chat.text


async def test_a_yes_that_names_another_login_resets_that_one(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("reset password for wang")
    await chat.say("ok then reset wang_cashier")  # not a yes to wang
    assert chat.templates == ["flows/password_reset/confirm"]
    assert "wang_cashier" in chat.text


async def test_phone_digits_sent_with_the_order_number_are_checked_at_once(chat: Chat) -> None:
    await chat.say("我付了没 BT2026112600000009 手机尾号0009")
    assert chat.templates == ["flows/payment_status/status"]
    other = Chat(chat.engine)
    await other.say("BT2026112600000009 last 4 1234")  # a wrong try, counted as one
    assert "flows/not_verified" in other.templates


async def test_a_customer_is_not_told_nothing_was_paid_when_the_channel_says_paid(
    chat: Chat,
) -> None:
    await chat.say("BT2026112600000010 付了吗 尾号0010")  # pending here, paid at the channel
    assert chat.templates == ["flows/payment_status/status"]
    assert "不要重复付款" in chat.text and "还没有收到付款记录" not in chat.text
    assert "human" in [button.action for button in chat.buttons]


async def test_a_disabled_login_is_not_offered_a_reset(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("reset password for li_risk")
    assert chat.templates == ["flows/login/disabled"]
    assert "human" in [button.action for button in chat.buttons]


async def test_a_note_without_its_colon_is_kept(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("收款链接 二百六 备注 水果礼盒")
    assert chat.templates == ["flows/payment_link/confirm"]
    assert "水果礼盒" in chat.text and "260.00" in chat.text

"""Handoff to people, as conversations: triggers, queue, assignment, tickets, rating, audit.

The service's clock starts on a Thursday at 10:00 Beijing time (inside business hours).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.engine import Engine
from bot.escalation.service import HandoffError, HandoffService
from bot.storage.db import session_factory
from bot.storage.models import Agent, AuditEntry, Conversation, Handoff, Message
from tests.support.common import FAST_HASHER, Chat, Clock


async def add_agent(
    db: AsyncEngine,
    clock: Clock,
    name: str,
    *,
    online: bool = True,
    capacity: int = 3,
    supervisor: bool = False,
) -> int:
    async with session_factory(db)() as session, session.begin():
        agent = Agent(
            name=name,
            password_hash=FAST_HASHER.hash("pw-" + name),
            online=online,
            last_seen_at=clock.now,
            capacity=capacity,
            is_supervisor=supervisor,
        )
        session.add(agent)
        await session.flush()
        return agent.id


async def handoff_of(db: AsyncEngine, chat: Chat) -> Handoff:
    async with session_factory(db)() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.chat_id == chat.chat_id)
        )
        assert conversation is not None
        handoff = await session.scalar(
            select(Handoff)
            .where(Handoff.conversation_id == conversation.id)
            .order_by(Handoff.id.desc())
        )
        assert handoff is not None
        return handoff


async def transcript(db: AsyncEngine, chat: Chat) -> list[tuple[str, str]]:
    async with session_factory(db)() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.chat_id == chat.chat_id)
        )
        assert conversation is not None
        rows = (
            await session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation.id)
                .order_by(Message.id)
            )
        ).all()
    return [(m.sender_kind, m.text) for m in rows]


async def test_asking_for_a_person_with_an_agent_free_assigns_at_once(
    chat: Chat, db: AsyncEngine, clock: Clock, handoffs: HandoffService
) -> None:
    agent = await add_agent(db, clock, "alice")
    await chat.say("转人工")
    assert "alice" in chat.text and "接入" in chat.text
    handoff = await handoff_of(db, chat)
    assert (handoff.status, handoff.agent_id, handoff.reason) == ("assigned", agent, "user_asked")
    # While the agent holds the chat the bot is silent and passes everything on.
    assert await chat.say("我的订单一直没到账") == []
    await handoffs.reply(agent, handoff.conversation_id, "您好，我来帮您查一下")
    await handoffs.resolve(agent, handoff.id)
    lines = await transcript(db, chat)
    assert ("agent", "您好，我来帮您查一下") in lines
    assert "打个分" in lines[-1][1]
    await chat.say("5")  # typing the number presses that rating button: 5 stars
    assert "谢谢您的评价" in chat.text
    assert (await handoff_of(db, chat)).rating == 5
    await chat.say("提现多久到账")
    assert "1-3个工作日" in chat.text  # the bot is back


async def test_queue_position_wait_and_priority(
    engine: Engine, db: AsyncEngine, clock: Clock, handoffs: HandoffService
) -> None:
    await add_agent(db, clock, "bob", capacity=1)
    first, second, third, angry = (Chat(engine) for _ in range(4))
    await first.say("转人工")
    assert "bob" in first.text
    await second.say("我要人工客服")
    assert "第 1 位" in second.text
    await third.say("人工客服")
    assert "第 2 位" in third.text
    await angry.say("我要投诉，转人工")
    assert "第 1 位" in angry.text  # a complaint jumps the queue
    await second.say("在吗")
    assert second.last == []  # queued: silent, the console sees it
    entries = await handoffs.queue(await add_agent(db, clock, "sup", online=False, supervisor=True))
    waiting = [e for e in entries if e.status == "queued"]
    assert [e.priority for e in waiting] == [1, 0, 0]


async def test_capacity_and_auto_assignment_when_a_chat_is_resolved(
    engine: Engine, db: AsyncEngine, clock: Clock, handoffs: HandoffService
) -> None:
    bob = await add_agent(db, clock, "bob", capacity=1)
    first, second = Chat(engine), Chat(engine)
    await first.say("转人工")
    await second.say("转人工")
    assert "第 1 位" in second.text
    await handoffs.resolve(bob, (await handoff_of(db, first)).id)
    taken = await handoff_of(db, second)
    assert (taken.status, taken.agent_id) == ("assigned", bob)
    assert any("bob" in text for _, text in await transcript(db, second))


async def test_no_agent_online_offers_a_ticket_that_an_agent_answers(
    chat: Chat, db: AsyncEngine, clock: Clock, handoffs: HandoffService
) -> None:
    agent = await add_agent(db, clock, "carol", online=False)
    await chat.say("我要找人工")
    assert "没有客服在线" in chat.text
    await chat.say("我的提现三天了还没到，麻烦看一下")
    assert chat.templates[-1] == "handoff/ticket_confirm"  # read back first
    await chat.say("确认")
    assert "留言已收到" in chat.text
    ticket = await handoff_of(db, chat)
    assert ticket.status == "ticket" and "三天" in (ticket.ticket_text or "")
    await handoffs.answer_ticket(agent, ticket.id, "已为您加急处理")
    assert ("agent", "客服回复了您的留言：已为您加急处理") in await transcript(db, chat)


async def test_outside_business_hours_in_english(chat: Chat, db: AsyncEngine, clock: Clock) -> None:
    await add_agent(db, clock, "dave")
    clock.advance(hours=13)  # 23:00 in Beijing
    await chat.say("I want to talk to a human agent")
    assert "offline" in chat.text and "09:00-21:00" in chat.text


async def test_two_failures_in_a_row_hand_over_with_the_findings(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    await add_agent(db, clock, "erin")
    await chat.bind("M001")
    # risk_blocked: a person is offered with the explanation (the bot's work done, no
    # failure), and the findings are kept for whoever takes the chat.
    await chat.say("订单BT2026112600000004支付失败了")
    assert "human" in [button.action for button in chat.buttons]
    await chat.say("今天天气怎么样")
    assert "dialogue/offer_handoff" not in chat.templates
    await chat.say("推荐个电影吧")
    assert "dialogue/offer_handoff" in chat.templates
    await chat.press("human:bot_failed")  # the offer taken
    handoff = await handoff_of(db, chat)
    assert handoff.reason == "bot_failed"
    assert handoff.findings["order_no"] == "BT2026112600000004"
    assert handoff.findings["failure_code"] == "risk_blocked"


async def test_unhelpful_answer_then_asking_again_goes_to_a_person(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    await add_agent(db, clock, "frank")
    await chat.say("手续费怎么收")
    await chat.press("fb:fees.rates:no")
    await chat.say("手续费到底是多少")
    assert "dialogue/offer_handoff" in chat.templates
    await chat.press("human:unhelpful_answer")
    assert (await handoff_of(db, chat)).reason == "unhelpful_answer"
    assert "frank" in chat.text


async def test_back_to_bot_cancels_a_queued_handoff(
    engine: Engine, db: AsyncEngine, clock: Clock
) -> None:
    await add_agent(db, clock, "gina", capacity=1)
    first, second = Chat(engine), Chat(engine)
    await first.say("转人工")
    await second.say("转人工")
    await second.say("返回机器人")
    assert "已取消人工服务" in second.text
    assert (await handoff_of(db, second)).status == "returned"
    await second.say("提现多久到账")
    assert "1-3个工作日" in second.text


async def test_back_to_bot_cancels_a_ticket_left_and_not_answered(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    await message_for_staff(chat, db, clock, "能开发票吗")
    await chat.say("确认")
    assert (await handoff_of(db, chat)).status == "ticket"
    await chat.say("返回机器人")
    assert chat.templates == ["handoff/returned"]
    assert "已取消人工服务" in chat.text
    assert (await handoff_of(db, chat)).status == "returned"


@pytest.mark.parametrize(
    "changed",
    [
        "算了 提现一般多久到账",
        "nvm, how long does a withdrawal take",
    ],
)
async def test_never_mind_and_a_question_while_writing_to_staff_answers_it(
    chat: Chat, db: AsyncEngine, clock: Clock, changed: str
) -> None:
    # A cancel word leading a question is a change of mind, not the message for staff.
    await message_for_staff(chat, db, clock, changed)
    templates = chat.templates
    assert "faq_answer" in templates and "handoff/ticket_confirm" not in templates
    assert (await handoff_of(db, chat)).status == "returned"
    async with session_factory(db)() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.chat_id == chat.chat_id)
        )
    assert conversation is not None and conversation.flow is None


async def test_a_cancel_word_before_a_new_amount_still_corrects_it(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("帮我生成一个收款链接")
    await chat.say("100")
    await chat.say("算了 还是200吧")
    assert chat.templates[-1] == "flows/payment_link/confirm"
    assert "200.00" in chat.text


async def test_one_chat_is_never_claimed_twice(
    engine: Engine, db: AsyncEngine, clock: Clock, handoffs: HandoffService
) -> None:
    busy = await add_agent(db, clock, "busy", capacity=1)
    await Chat(engine).say("转人工")  # takes busy's only slot
    waiting = Chat(engine)
    await waiting.say("转人工")
    handoff = await handoff_of(db, waiting)
    a = await add_agent(db, clock, "a", online=False)
    b = await add_agent(db, clock, "b", online=False)
    results = await asyncio.gather(
        handoffs.claim(a, handoff.id), handoffs.claim(b, handoff.id), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["HandoffError", "NoneType"]
    assert (await handoff_of(db, waiting)).agent_id in (a, b)
    assert busy


async def test_agents_see_only_their_chats_supervisors_see_all(
    chat: Chat, db: AsyncEngine, clock: Clock, handoffs: HandoffService
) -> None:
    owner = await add_agent(db, clock, "owner")
    other = await add_agent(db, clock, "other", online=False)
    supervisor = await add_agent(db, clock, "boss", online=False, supervisor=True)
    await chat.say("转人工")
    conversation_id = (await handoff_of(db, chat)).conversation_id
    with pytest.raises(HandoffError) as denied:
        await handoffs.detail(other, conversation_id)
    assert denied.value.code == "not_found"
    with pytest.raises(HandoffError):
        await handoffs.reply(other, conversation_id, "hi")
    assert (await handoffs.detail(supervisor, conversation_id)).conversation.id == conversation_id
    assert (await handoffs.detail(owner, conversation_id)).handoff is not None


async def test_transfer_respects_capacity_and_every_action_is_audited(
    chat: Chat, db: AsyncEngine, clock: Clock, handoffs: HandoffService
) -> None:
    first = await add_agent(db, clock, "first")
    full = await add_agent(db, clock, "full", online=False, capacity=0)
    second = await add_agent(db, clock, "second", online=False)
    await chat.say("转人工")
    handoff = await handoff_of(db, chat)
    with pytest.raises(HandoffError) as refused:
        await handoffs.transfer(first, handoff.id, full)
    assert refused.value.code == "conflict"
    await handoffs.transfer(first, handoff.id, second)
    await handoffs.note(second, handoff.conversation_id, "用户很着急")
    await handoffs.reply(second, handoff.conversation_id, "马上处理")
    await handoffs.resolve(second, handoff.id)
    async with session_factory(db)() as session:
        actions = (await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert list(actions) == ["auto_assign", "transfer", "note", "reply", "resolve"]
    assert all("用户很着急" not in text for _, text in await transcript(db, chat))


async def test_the_message_for_staff_is_free_text_and_a_rewrite_drops_its_lead(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    clock.now = clock.now.replace(hour=15)  # 23:00 in Beijing: no one at work
    await chat.bind("M001")
    await chat.say("转人工")
    await chat.say("我的店铺怎么绑定不了，W0003 也没到账")
    assert "我的店铺怎么绑定不了" in chat.text  # read back, not the binding help
    await chat.say("改成：W0003 提现失败，我已更换银行卡")
    assert "“W0003 提现失败，我已更换银行卡”" in chat.text
    await chat.say("确认")
    assert (await handoff_of(db, chat)).ticket_text == "W0003 提现失败，我已更换银行卡"


async def test_keep_asking_the_bot_said_in_passing_leaves_the_queue(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    await add_agent(db, clock, "hana")
    await chat.say("get me a person")
    await chat.say("oh wait, never mind, I'll keep asking the bot")
    assert (await handoff_of(db, chat)).status == "returned"


async def test_a_bare_yes_to_leaving_a_message_asks_for_the_message(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    await add_agent(db, clock, "jade", online=False)
    await chat.say("我要找人工")
    await chat.say("好")  # yes to the offer of a message, not the message
    assert chat.templates == ["handoff/ask_message"]
    await chat.say("二维码收款从早上开始就不行了")
    assert chat.templates == ["handoff/ticket_confirm"]


async def test_a_question_under_the_read_back_is_answered_and_the_draft_waits(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    await message_for_staff(chat, db, clock, "我的订单BT2026112600000022为什么失败")
    await chat.say("你们客服什么时候上班")  # asked, not the message rewritten
    templates = chat.templates
    assert templates[0] == "faq_answer" and templates[-1] == "dialogue/back_to_flow"
    await chat.say("did you get my message?")  # not yet: the read-back again
    assert "BT2026112600000022" in chat.text
    await chat.say("确认")
    ticket = await handoff_of(db, chat)
    assert ticket.status == "ticket" and "BT2026112600000022" in (ticket.ticket_text or "")


async def message_for_staff(chat: Chat, db: AsyncEngine, clock: Clock, message: str) -> None:
    """With nobody online, ask for a person and write the message left for staff."""
    await add_agent(db, clock, "offline", online=False)
    await chat.say("我要找人工")
    await chat.say(message)


async def test_a_buttons_number_under_the_read_back_presses_it(
    chat: Chat, db: AsyncEngine, clock: Clock
) -> None:
    await message_for_staff(chat, db, clock, "顾客付了钱我没收到")
    await chat.say("2")  # 重新写: write it again, not a message that says "2"
    assert chat.templates == ["handoff/ask_message"]

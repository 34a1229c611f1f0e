"""The decide step alone: what a message does to the conversation, read as typed events and
template ids, with no conversation stored. The platform is the demo world's (real SQL); the
conversation lives only in the view each decision leaves (`view_after`), as the writer would
store it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.context import Context, ConversationView, Identity
from bot.dialogue.events import (
    Bound,
    Decision,
    FeedbackGiven,
    FlowAt,
    FlowEnded,
    FlowSuspended,
    HandoffOffered,
    HandoffRequested,
    OutcomeExpected,
    PendingSet,
    RateCounted,
    SuspendedTaken,
    Unanswered,
    Understood,
    Unsolved,
)
from bot.dialogue.turn import Decider, view_after
from bot.faq.knowledge import Knowledge
from bot.handlers import build_router
from bot.nlu.matcher import Matcher
from bot.platform.gateway import PlatformGateway
from bot.platform.tables import PaymentLinkRow
from bot.render import Renderer
from bot.settings import Settings
from bot.storage.db import session_factory
from bot.storage.models import Conversation, Message
from bot.types import IncomingMessage, Label, Language, OutcomeKind

pytestmark = pytest.mark.usefixtures("world")


class Talk:
    """One chat, decided message by message; `view` is what the writer would have stored."""

    def __init__(
        self,
        decider: Decider,
        context: dict[str, object],
        identity: Identity,
        language: Language = Language.ZH,
    ) -> None:
        self.decider, self.context, self.identity = decider, context, identity
        self.view = ConversationView(
            id=1,
            channel="test",
            chat_id="7",
            state="bot",
            language=language,
            language_pinned=False,
            flow=None,
            flow_step=None,
            slots={},
            failures=0,
            last_label=None,
        )
        self._ids = count(1)

    async def say(
        self, text: str = "", action: str | None = None, *, message_id: str | None = None
    ) -> Decision:
        message = IncomingMessage(
            channel="test",
            chat_id="7",
            user_id="7",
            message_id=message_id or str(next(self._ids)),
            text=text,
            action=action,
        )

        async def nothing_yet(key: str, window: timedelta) -> int:
            return 0

        ctx = Context(
            message=message,
            conversation=self.view,
            language=self.view.language,
            identity=self.identity,
            now=datetime.now(UTC),
            recent=nothing_yet,
            **self.context,  # type: ignore[arg-type]
        )
        decision = await self.decider.decide(ctx, 0)
        self.view = view_after(self.view, decision)
        for bound in decision.of(Bound):
            self.identity = Identity("merchant", bound.merchant_id)
        return decision

    @property
    def flow(self) -> tuple[str | None, str | None]:
        return self.view.flow, self.view.flow_step


@pytest.fixture
def decider(knowledge: Knowledge, matcher: Matcher) -> Decider:
    return Decider(knowledge=knowledge, matcher=matcher, router=build_router(), people=True)


@pytest.fixture
def context(
    knowledge: Knowledge, renderer: Renderer, settings: Settings, gateway: PlatformGateway
) -> dict[str, object]:
    return {"knowledge": knowledge, "renderer": renderer, "settings": settings, "gateway": gateway}


@pytest.fixture
def merchant(decider: Decider, context: dict[str, object]) -> Talk:
    return Talk(decider, context, Identity("merchant", "M001"))


@pytest.fixture
def customer(decider: Decider, context: dict[str, object]) -> Talk:
    return Talk(decider, context, Identity())


async def test_a_digression_is_answered_and_the_open_question_asked_again(
    merchant: Talk,
) -> None:
    started = await merchant.say("帮我生成收款链接")
    assert started.of(FlowAt) == [FlowAt("payment_link", "amount", started.of(FlowAt)[0].slots)]
    asked = await merchant.say("手续费怎么收")
    assert asked.templates[-1] == "dialogue/back_to_flow"
    assert asked.of(Understood)[0].label.is_faq
    assert merchant.flow == ("payment_link", "amount")  # still waiting for the amount
    assert not asked.of(FlowEnded) and not asked.of(Unsolved)
    confirm = await merchant.say("260")
    assert confirm.templates == ["flows/payment_link/confirm"]
    assert merchant.flow == ("payment_link", "confirm")


async def test_a_correction_at_the_confirmation_asks_again_with_the_new_value(
    merchant: Talk,
) -> None:
    await merchant.say("帮我生成收款链接，金额250")
    assert merchant.flow == ("payment_link", "confirm")
    corrected = await merchant.say("不对，是260")
    assert corrected.templates == ["flows/payment_link/confirm"]
    (at,) = corrected.of(FlowAt)
    assert (at.step, at.slots["amount"]) == ("confirm", "260.00")
    assert "260" in corrected.replies[0].text


async def test_a_wrong_answer_is_asked_again_and_is_not_a_bot_failure(merchant: Talk) -> None:
    await merchant.say("帮我生成收款链接")
    retried = await merchant.say("蓝色的那个")
    assert merchant.flow == ("payment_link", "amount")
    assert not retried.of(Unsolved) and not retried.of(HandoffOffered)
    again = await merchant.say("还是蓝色的")
    assert not again.of(Unsolved) and not again.of(HandoffOffered)
    done = await merchant.say("88")
    assert done.templates == ["flows/payment_link/confirm"]


async def test_another_flow_suspends_the_open_one_and_it_is_offered_back(
    merchant: Talk,
) -> None:
    await merchant.say("帮我生成收款链接")
    digression = await merchant.say("W0002到了吗")
    (suspended,) = digression.of(FlowSuspended)
    assert (suspended.frame["flow"], suspended.frame["step"]) == ("payment_link", "amount")
    assert [frame["flow"] for frame in merchant.view.suspended] == ["payment_link"]
    assert "dialogue/offer_resume" in digression.templates  # the withdrawal was answered
    back = await merchant.say(action="resume:yes")
    assert back.of(SuspendedTaken) == [SuspendedTaken(resumed=True)]
    assert back.templates == ["dialogue/back_to_flow"]
    assert merchant.flow == ("payment_link", "amount") and merchant.view.suspended == []


async def test_a_customers_bare_order_number_starts_the_payment_check(customer: Talk) -> None:
    decision = await customer.say("BT2026112600000001")
    (at,) = decision.of(FlowAt)
    assert (at.flow, at.slots["order_no"]) == ("payment_status", "BT2026112600000001")
    assert not decision.of(Unsolved)


async def test_a_merchants_order_number_gets_the_orders_summary(merchant: Talk) -> None:
    decision = await merchant.say("bt 2026 1126 0000 0001")
    assert decision.templates == ["flows/order_summary"]
    assert merchant.flow == (None, None)


async def test_a_lone_number_outside_a_flow_asks_what_it_is(customer: Talk) -> None:
    decision = await customer.say("8888")
    assert decision.templates == ["dialogue/what_number"]
    assert decision.replies[0].buttons[0].action == "intent:status.payment"


async def test_binding_mid_flow_ends_the_old_identitys_flow_and_resumes_the_refused_request(
    customer: Talk,
) -> None:
    refused = await customer.say("帮我生成收款链接")
    assert refused.templates == ["flows/bind_first"]
    assert refused.of(PendingSet)[0].request == {
        "label": Label.ACTION_PAYMENT_LINK.value,
        "text": "帮我生成收款链接",
    }
    await customer.say("BT2026112600000001")  # a customer's check opens
    assert customer.flow[0] == "payment_status"
    bound = await customer.say("/bind 482913")
    assert bound.of(Bound) == [Bound("M001")]
    assert "bind/resumed" in bound.templates
    assert bound.of(PendingSet) == [PendingSet(None)]
    assert bound.of(FlowAt)[-1].flow == "payment_link"  # the refused request, taken up
    assert customer.flow == ("payment_link", "amount")  # the customer's check is gone
    assert customer.view.suspended == []


async def test_two_unsolved_messages_offer_a_person_and_never_hand_over(customer: Talk) -> None:
    first = await customer.say("zxqv wplk mmrt")
    assert first.of(Unsolved) and not first.of(HandoffOffered)
    second = await customer.say("qqzx vvbn lkjh")
    assert second.of(HandoffOffered) == [HandoffOffered("bot_failed")]
    assert second.templates[-1] == "dialogue/offer_handoff"
    actions = [b.action for r in second.replies for b in r.buttons]
    assert "human" not in actions and "human:bot_failed" in actions
    # Offered, so a typed "转人工" or "2" picks a button next time.
    assert customer.view.slots["_offered"][-1][1] == "dialogue:continue"


async def test_deciding_writes_no_conversation(merchant: Talk, db: AsyncEngine) -> None:
    await merchant.say("帮我生成收款链接")
    await merchant.say("手续费怎么收")
    async with session_factory(db)() as session:
        stored = await session.scalar(select(func.count()).select_from(Conversation))
        said = await session.scalar(select(func.count()).select_from(Message))
    assert (stored, said) == (0, 0)


async def test_a_turn_decided_again_makes_no_second_payment_link(
    merchant: Talk, db: AsyncEngine
) -> None:
    await merchant.say("帮我生成收款链接，金额250")
    waiting = merchant.view
    made = await merchant.say("确认", message_id="confirm-1")
    merchant.view = waiting  # the first run's transaction rolled back; the message comes again
    again = await merchant.say("确认", message_id="confirm-1")
    assert made.templates == again.templates == ["flows/payment_link/created"]
    assert made.replies[0].text == again.replies[0].text  # the same link
    async with session_factory(db)() as session:
        links = await session.scalar(select(func.count()).select_from(PaymentLinkRow))
    assert links == 1


async def test_a_link_made_names_its_outcome_check_and_a_declined_one_none(
    merchant: Talk,
) -> None:
    await merchant.say("帮我生成收款链接，金额250")
    declined = await merchant.say(action="flow:confirm:no")
    assert declined.of(OutcomeExpected) == []
    await merchant.say("帮我生成收款链接，金额260")
    made = await merchant.say(action="flow:confirm:yes")
    (expected,) = made.of(OutcomeExpected)
    assert (expected.kind, expected.topic) == (OutcomeKind.PAYMENT_LINK, "payment_link")
    assert expected.subject.startswith("PL")


async def test_an_unbound_withdrawal_question_gets_the_fact_and_is_taken_up_after_binding(
    customer: Talk,
) -> None:
    refused = await customer.say("烦死了！！我的提现到底到哪了")
    # The acknowledgement, the general fact (1-3 working days), then how to bind.
    assert refused.replies[0].preface == "dialogue/ack"
    assert refused.templates == ["flows/withdrawal/unbound", "flows/bind_first"]
    assert refused.of(PendingSet)[0].request is not None
    assert refused.of(PendingSet)[0].request["label"] == Label.STATUS_WITHDRAWAL.value
    bound = await customer.say("/bind 482913")
    assert "bind/resumed" in bound.templates
    assert bound.of(FlowAt)[-1].flow == "withdrawal_status"  # M001's withdrawals, to pick
    assert bound.of(PendingSet) == [PendingSet(None)]


async def test_asking_how_to_bind_gets_how_and_where_the_code_is(customer: Talk) -> None:
    for text in ("去哪找绑定码", "how do I link this chat to my shop?"):
        decision = await customer.say(text)
        assert decision.templates == ["bind/how"]
        assert not decision.of(Bound)


async def test_an_upset_message_is_read_for_what_it_asks(merchant: Talk) -> None:
    decision = await merchant.say("ugh I can't log in AGAIN, so annoying")
    assert decision.replies[0].preface == "dialogue/ack"
    assert decision.of(Understood)[0].label == Label.DIAGNOSE_LOGIN


async def test_a_vague_answer_where_an_amount_is_asked_is_asked_again(merchant: Talk) -> None:
    await merchant.say("create link")
    for vague in ("some money", "随便"):
        retried = await merchant.say(vague)
        assert retried.templates == ["dialogue/retry"]
        assert merchant.flow == ("payment_link", "amount")
        assert not retried.of(Unsolved)


async def test_a_question_marked_as_asked_on_the_side_is_answered(merchant: Talk) -> None:
    await merchant.say("做个收款链接")
    aside = await merchant.say("顺便问下，钱放你们这安全不")
    assert aside.templates[-1] == "dialogue/back_to_flow"
    assert aside.of(Understood)[0].label == Label.SECURITY_ENCRYPTION
    assert merchant.flow == ("payment_link", "amount")


async def test_asking_for_what_an_offer_gives_takes_the_offer(
    merchant: Talk, db: AsyncEngine
) -> None:
    await merchant.say("a payment didn't go through")
    explained = await merchant.say("BT2026112600000008")
    assert merchant.flow == ("payment_failure", "offer")
    assert "flows/payment_failure/explained" in explained.templates
    taken = await merchant.say("sure, send a new link")
    assert taken.templates == ["flows/payment_link/created"]
    async with session_factory(db)() as session:
        amounts = list(await session.scalars(select(PaymentLinkRow.amount_fen)))
    assert amounts == [4500]


async def test_an_upset_merchant_asking_about_withdrawals_means_its_own(merchant: Talk) -> None:
    decision = await merchant.say("烦死了 提现呢！！")
    assert decision.replies[0].preface == "dialogue/ack"
    assert decision.of(Understood)[0].label == Label.STATUS_WITHDRAWAL
    assert merchant.flow == ("withdrawal_status", "pick")  # M001's withdrawals, to pick


@pytest.mark.parametrize(
    "text",
    ["绑定码 482913", "我的绑定码是482913", "ok my bind code is 482913", "bind code: 482913"],
)
async def test_a_bind_code_binds_in_the_words_people_put_before_it(
    customer: Talk, text: str
) -> None:
    decision = await customer.say(text)
    assert decision.of(Bound) == [Bound("M001")]


async def test_a_wrong_bind_code_is_asked_again_not_a_failure(customer: Talk) -> None:
    decision = await customer.say("binding code: 111111")
    assert decision.templates == ["bind/wrong_code"]
    assert not decision.of(Bound) and not decision.of(Unsolved)


async def test_a_code_sent_after_a_wrong_one_binds_and_the_reply_keeps_the_language(
    customer: Talk,
) -> None:
    wrong = await customer.say("hi, the bind code for my shop is 482931")
    assert wrong.templates == ["bind/wrong_code"] and customer.view.language == "en"
    again = await customer.say("sorry typo, 482913")
    assert again.of(Bound) and again.templates[0] == "bind/done"
    assert (await customer.say("sorry typo, 275160")).templates != ["bind/done"]  # asked once


async def test_a_reset_for_several_logins_offers_one_button_each(merchant: Talk) -> None:
    asked = await merchant.say("帮我重置一下密码")
    actions = [b.action for r in asked.replies for b in r.buttons]
    assert {"flow:account:wang", "flow:account:wang_cashier"} <= set(actions)
    picked = await merchant.say("第二个")
    assert picked.templates == ["flows/password_reset/confirm"]


async def test_an_amount_out_of_range_is_explained_then_asked_with_an_example(
    merchant: Talk,
) -> None:
    await merchant.say("帮我生成收款链接")
    for _ in range(2):
        asked = await merchant.say("0")
        assert asked.replies[-1].template == "flows/payment_link/out_of_range"
        assert asked.replies[-1].preface == "dialogue/retry"
        assert not asked.of(Unsolved)
        assert merchant.flow == ("payment_link", "amount")
    assert {"cancel", "human"} <= {b.action for b in asked.replies[-1].buttons}


@pytest.mark.parametrize("text", ["nvm cancel", "算了", "不弄了"])
async def test_a_cancel_in_slang_ends_the_open_flow(merchant: Talk, text: str) -> None:
    await merchant.say("payment link for 120")
    assert merchant.flow == ("payment_link", "confirm")
    await merchant.say(text)
    assert merchant.view.flow is None


@pytest.mark.parametrize("text", ["482913", "fine. 482913", "code is 482913"])
async def test_a_bind_code_alone_answers_the_request_for_one(customer: Talk, text: str) -> None:
    refused = await customer.say("我的提现到哪了")
    assert "flows/bind_first" in refused.templates
    decision = await customer.say(text)
    assert decision.of(Bound) == [Bound("M001")]
    assert "flows/withdrawal/pick" in decision.templates  # the refused request, taken up


async def test_a_lone_code_without_a_refused_request_is_asked_about(customer: Talk) -> None:
    decision = await customer.say("482913")
    assert decision.templates == ["dialogue/what_number"]
    assert not decision.of(Bound)
    assert "绑定 482913" in decision.replies[0].text  # how to send it, if it is a bind code


async def test_a_bind_code_mid_sentence_binds_a_customer_who_turns_out_a_merchant(
    customer: Talk,
) -> None:
    await customer.say("BT2026112600000021 paid?")
    assert customer.flow == ("payment_status", "verify")
    decision = await customer.say("oh wait im the shop owner lol, my code is 275160")
    assert decision.of(Bound) == [Bound("M002")]
    assert customer.view.flow is None


@pytest.mark.parametrize("text", ["yes pls go back", "回到刚才那个", "ok back to it"])
async def test_going_back_in_words_takes_up_the_suspended_flow(merchant: Talk, text: str) -> None:
    await merchant.say("link for 50")
    offered = await merchant.say("W0001到了吗")
    assert offered.of(FlowSuspended) or merchant.view.suspended
    await merchant.say(text)
    assert merchant.flow == ("payment_link", "confirm")


async def test_a_yes_that_names_what_it_agrees_to_confirms(merchant: Talk) -> None:
    await merchant.say("帮我重置下wang_cashier的密码")
    assert merchant.flow == ("password_reset", "confirm")
    decision = await merchant.say("好的 确认重置")
    assert decision.templates == ["flows/password_reset/sent"]


async def test_a_login_named_inside_chinese_text_is_the_one_reset(merchant: Talk) -> None:
    decision = await merchant.say("帮我重置下wang的密码")
    assert decision.templates == ["flows/password_reset/confirm"]
    assert merchant.view.slots["login"] == "wang"


async def test_thanks_under_an_optional_offer_ends_the_flow(merchant: Talk) -> None:
    await merchant.say("订单BT2026112600000003为什么支付失败")
    assert merchant.flow == ("payment_failure", "offer")
    decision = await merchant.say("ok thx")
    assert decision.templates == ["thanks"]
    assert merchant.view.flow is None


async def test_thanks_where_a_value_is_owed_keeps_the_flow(merchant: Talk) -> None:
    await merchant.say("payment link pls")
    await merchant.say("ok cool thanks")
    assert merchant.flow == ("payment_link", "amount")


async def test_a_withdrawal_is_picked_by_its_amount_beyond_the_first_page(
    merchant: Talk,
) -> None:
    await merchant.say("查下我的提现")
    assert merchant.flow == ("withdrawal_status", "pick")
    decision = await merchant.say("2500那笔")
    assert decision.templates == ["flows/withdrawal/status"]
    assert "W0002" in decision.replies[0].text


async def test_a_customer_proves_an_order_with_the_whole_phone_number(customer: Talk) -> None:
    await customer.say("BT2026112600000012付了没")
    decision = await customer.say("13700001111")
    assert decision.templates == ["flows/payment_status/status"]


async def test_a_wrong_whole_phone_number_is_a_wrong_proof(customer: Talk) -> None:
    await customer.say("BT2026112600000012付了没")
    decision = await customer.say("13700009999")
    assert "flows/not_verified" in decision.templates
    assert customer.flow == ("payment_status", "verify")


async def test_a_card_number_is_never_read_as_an_order(customer: Talk) -> None:
    decision = await customer.say("card 6222021234567890")
    assert customer.view.flow is None
    assert "BT6222021234567890" not in " ".join(r.text for r in decision.replies)


async def test_not_understanding_an_answer_names_it_and_votes_it_unhelpful(
    merchant: Talk,
) -> None:
    await merchant.say("手续费怎么收")
    unclear = await merchant.say("这个回答我没看懂")
    assert unclear.templates == ["dialogue/unclear"]
    assert unclear.of(FeedbackGiven) == [FeedbackGiven(Label.FEES_RATES, helpful=False)]
    actions = [b.action for b in unclear.replies[0].buttons]
    assert actions[-1] == "human" and all(a.startswith("faq:") for a in actions[:-1])
    assert not unclear.of(Unanswered)
    # The user not understanding the reply is feedback on it, not the bot misunderstanding
    # the user: it does not count toward the offer of a person.
    assert not unclear.of(Unsolved)


async def test_not_understanding_a_flows_question_asks_it_another_way(merchant: Talk) -> None:
    await merchant.say("帮我生成收款链接")
    again = await merchant.say("what does that mean")
    assert again.templates == ["dialogue/retry"]
    assert merchant.flow == ("payment_link", "amount") and not again.of(Unsolved)


async def test_an_order_said_to_have_failed_starts_the_failure_check(customer: Talk) -> None:
    decision = await customer.say("烦死了 在店里扫了三遍都付不了 BT2026112600000005")
    assert customer.flow == ("payment_failure", "verify")
    assert "flows/ask_verification" in decision.templates


async def test_an_amount_typed_as_people_do_is_a_proof_attempt(customer: Talk) -> None:
    await customer.say("BT2026112600000002付不了")
    wrong = await customer.say("我付的53")
    assert customer.flow == ("payment_failure", "verify")
    assert wrong.templates[0] == "flows/not_verified" and wrong.of(RateCounted)
    right = await customer.say("三十五块")  # the order's amount, ¥35.00
    assert "flows/payment_failure/explained" in right.templates


async def test_a_value_for_the_suspended_flow_takes_it_up_again(merchant: Talk) -> None:
    await merchant.say("帮我生成收款链接")
    await merchant.say("W0002到了吗")
    decision = await merchant.say("300")
    assert decision.of(SuspendedTaken) == [SuspendedTaken(resumed=True)]
    assert merchant.flow == ("payment_link", "confirm") and merchant.view.suspended == []


async def test_going_back_by_the_flows_name_takes_the_offer(merchant: Talk) -> None:
    await merchant.say("帮我生成收款链接")
    await merchant.say("W0002到了吗")
    decision = await merchant.say("ya back to the link")
    assert decision.of(SuspendedTaken) == [SuspendedTaken(resumed=True)]
    assert merchant.flow == ("payment_link", "amount")


async def test_a_bound_merchant_naming_an_action_gets_it(merchant: Talk) -> None:
    named = await merchant.say("payment link")
    assert merchant.flow == ("payment_link", "amount") and named.templates == [
        "flows/payment_link/ask_amount"
    ]
    await merchant.say("取消")
    asked = await merchant.say("how do payment links work?")
    assert asked.templates == ["faq_answer"]


async def test_a_pasted_record_gets_that_orders_summary(merchant: Talk) -> None:
    decision = await merchant.say("Order No.: BT2026112600000010 | Amount: 128.00 | Method: link")
    assert decision.templates == ["flows/order_summary"]


async def test_an_amount_corrected_in_the_same_message_is_the_one_meant(merchant: Talk) -> None:
    decision = await merchant.say("弄一下收款链接，12块，哦不对，15块5")
    (at,) = decision.of(FlowAt)
    assert (at.step, at.slots["amount"]) == ("confirm", "15.50")


async def test_the_first_retry_already_offers_a_way_out(merchant: Talk) -> None:
    await merchant.say("帮我生成收款链接")
    retried = await merchant.say("蓝色的那个")
    assert [b.action for b in retried.replies[-1].buttons] == ["cancel", "human"]


async def test_a_finding_that_needs_a_person_is_not_a_bot_failure(
    decider: Decider, context: dict[str, object]
) -> None:
    talk = Talk(decider, context, Identity("merchant", "M002"))
    await talk.say("登不上去了")
    disabled = await talk.say("li_risk")
    assert disabled.templates == ["flows/login/disabled"]
    assert not disabled.of(Unsolved) and talk.view.failures == 0
    assert [b.action for b in disabled.replies[0].buttons] == ["human"]


async def test_a_vague_message_is_not_guessed_at(merchant: Talk) -> None:
    first = await merchant.say("那个东西又不行了")
    assert first.templates == ["fallback"] and first.of(Unsolved)
    second = await merchant.say("就是那个啊 上次那个 你懂的")
    assert second.templates[-1] == "dialogue/offer_handoff"


async def test_a_wrong_try_at_an_order_number_is_asked_again(customer: Talk) -> None:
    await customer.say("/status")
    assert customer.flow == ("payment_status", "order")
    again = await customer.say("BT20261126")
    assert customer.flow == ("payment_status", "order") and again.templates == ["dialogue/retry"]


async def test_a_bare_ok_with_nothing_asked_is_taken_in(merchant: Talk) -> None:
    for text in ("ok", "好", "ok la"):
        decision = await merchant.say(text)
        assert decision.templates == ["dialogue/okay"] and not decision.of(Unsolved)


async def test_a_code_sent_with_a_few_words_after_the_ask_binds(customer: Talk) -> None:
    await customer.say("帮我生成收款链接")
    assert customer.view.pending is not None
    bound = await customer.say("找到了 482913")
    assert [b.merchant_id for b in bound.of(Bound)] == ["M001"]


async def test_a_question_on_the_side_the_bot_cannot_answer_comes_back_to_the_flow(
    merchant: Talk,
) -> None:
    await merchant.say("帮我生成收款链接")
    aside = await merchant.say("顺便问下 你们能开发票不")
    assert aside.templates == ["fallback", "dialogue/back_to_flow"]
    assert merchant.flow == ("payment_link", "amount")


async def test_a_chinese_a_not_a_question_in_a_flow_is_answered(merchant: Talk) -> None:
    await merchant.say("帮我生成收款链接")
    asked = await merchant.say("手续费能加到价格里让客人出不")
    assert asked.templates == ["faq_answer", "dialogue/back_to_flow"]


async def test_an_unbound_chat_between_a_merchants_flow_and_a_customers_gets_the_customers(
    customer: Talk,
) -> None:
    await customer.say("hi, i want to check if my payment went through")
    assert customer.flow == ("payment_status", "order")


async def test_an_ordinal_after_a_digression_counts_the_open_questions_options(
    merchant: Talk,
) -> None:
    await merchant.say("查一下我的提现")
    await merchant.say("提现一般要几天到账？")
    picked = await merchant.say("第二个")
    assert picked.templates == ["flows/withdrawal/status"]
    assert "W0001" in picked.replies[0].text


async def test_a_cancel_taken_back_restores_the_flow(merchant: Talk) -> None:
    await merchant.say("帮我生成一个45块5的收款链接")
    await merchant.say("取消")
    back = await merchant.say("啊不是，我点错了，刚才那个链接还是要的")
    assert merchant.flow == ("payment_link", "confirm")
    assert back.templates == ["dialogue/back_to_flow"]
    again = await merchant.say("还是要吧，100块的")  # nothing cancelled now: a new request
    assert (
        merchant.flow == ("payment_link", "confirm")
        and again.of(FlowAt)[0].slots["amount"] == "100.00"
    )


async def test_what_can_you_do_is_answered_inside_a_flow_too(merchant: Talk) -> None:
    await merchant.say("帮我生成收款链接")
    helped = await merchant.say("what can you do?")
    assert helped.templates == ["help", "dialogue/back_to_flow"]
    assert merchant.flow == ("payment_link", "amount")


async def test_asking_whether_the_bot_is_a_person_is_answered_not_handed_off(
    merchant: Talk,
) -> None:
    await merchant.say("I need a payment link")
    told = await merchant.say("wait, are you a real person or a bot?")
    assert told.templates == ["dialogue/who_i_am", "dialogue/back_to_flow"]
    assert any(b.action == "human" for b in told.replies[0].buttons)
    assert merchant.flow == ("payment_link", "amount") and not told.of(HandoffRequested)
    plain = await merchant.say("cancel")
    assert merchant.view.flow is None and plain.templates == ["cancelled"]
    assert (await merchant.say("你是机器人吗")).templates == ["dialogue/who_i_am"]
    assert (await merchant.say("I want a real person please")).of(HandoffRequested)


async def test_a_follow_up_without_a_number_is_about_what_was_just_shown(merchant: Talk) -> None:
    await merchant.say("BT2026112600000001")
    why = await merchant.say("为什么失败")
    assert "flows/payment_failure/explained" in why.templates
    assert "BT2026112600000001" in why.replies[-1].text
    await merchant.say("W0003")
    again = await merchant.say("为啥失败啊")
    assert again.templates[0] == "flows/withdrawal/status" and "W0003" in again.replies[0].text
    await merchant.say("W0001")
    landed = await merchant.say("thanks! when will it land?")
    assert landed.templates[0] == "flows/withdrawal/status" and "W0001" in landed.replies[0].text
    await merchant.say("hello")
    fresh = await merchant.say("为什么失败")  # nothing shown just before: which order?
    assert fresh.templates == ["flows/payment_failure/pick_order"]


async def test_a_customer_follow_up_on_a_proved_order_needs_no_second_proof(
    customer: Talk,
) -> None:
    await customer.say("BT2026112600000013")
    await customer.say("2222")
    again = await customer.say("so should i pay again?")
    assert "flows/ask_verification" not in again.templates
    assert "BT2026112600000013" in again.replies[-1].text
    await customer.say("hi")
    other = await customer.say("did BT2026112600000012 go through?")
    assert other.templates == ["flows/ask_verification"]


async def test_an_amount_typed_at_a_pick_picks_the_record_with_that_amount(
    merchant: Talk,
) -> None:
    await merchant.say("顾客付不了款")
    picked = await merchant.say("88.5那笔")
    assert "flows/payment_failure/explained" in picked.templates
    assert "BT2026112600000001" in picked.replies[-1].text


async def test_a_flow_asked_for_on_the_side_suspends_the_open_one(merchant: Talk) -> None:
    await merchant.say("帮我开个链接")
    aside = await merchant.say("哦对了，我们店有个账号登不进去了，你先帮我看看这个")
    assert merchant.flow == ("login", "account") and aside.of(FlowSuspended)


async def test_the_same_flow_started_again_supersedes_the_one_waiting(merchant: Talk) -> None:
    await merchant.say("帮我开个链接")
    await merchant.say("W0004 什么时候到账")
    assert [f["flow"] for f in merchant.view.suspended] == ["payment_link"]
    await merchant.say("再帮我生成一个一百二的收款链接")
    created = await merchant.say("好")
    assert "flows/payment_link/created" in created.templates
    assert "dialogue/offer_resume" not in created.templates and not merchant.view.suspended


async def test_a_login_said_not_to_is_not_the_one_picked(
    decider: Decider, context: dict[str, object]
) -> None:
    li = Talk(decider, context, Identity("merchant", "M002"))
    await li.say("我忘记密码了，帮我重置一下呗")
    picked = await li.say("li 这个，不是li_risk")
    assert picked.of(FlowAt)[-1].slots["login"] == "li"


async def test_asking_for_a_language_in_words_switches_to_it(merchant: Talk) -> None:
    await merchant.say("hello")
    switched = await merchant.say("可以说中文吗？")
    assert switched.templates == ["language_switched"]
    assert merchant.view.language == "zh"


async def test_another_order_after_an_explanation_is_explained_too(merchant: Talk) -> None:
    await merchant.say("why did order bt2026112600000005 fail")
    assert merchant.flow == ("payment_failure", "offer")
    other = await merchant.say("and BT2026112600000008?")
    assert "flows/payment_failure/explained" in other.templates
    assert "BT2026112600000008" in other.replies[-1].text and not other.of(Unsolved)


async def test_thanks_at_a_choice_among_buttons_ends_the_flow(merchant: Talk) -> None:
    await merchant.say("有个订单支付失败了")
    assert merchant.flow == ("payment_failure", "order")
    thanks = await merchant.say("ok thanks")
    assert thanks.templates == ["thanks"] and merchant.view.flow is None


async def test_ok_and_thanks_together_is_a_thanks(merchant: Talk) -> None:
    decision = await merchant.say("好的谢谢")
    assert decision.templates == ["thanks"]


async def test_no_failure_but_a_channel_that_disagrees_offers_the_resync(merchant: Talk) -> None:
    decision = await merchant.say("订单BT2026112600000011后台显示已支付，但是顾客说银行那边失败了")
    assert decision.templates == ["flows/payment_failure/no_failure"]
    actions = [b.action for b in decision.replies[0].buttons]
    assert actions == ["order:sync:BT2026112600000011", "human"]


async def test_a_yes_to_the_offer_of_a_person_takes_it(customer: Talk) -> None:
    await customer.say("今天天气怎么样")
    offered = await customer.say("推荐个电影吧")
    assert offered.of(HandoffOffered)
    taken = await customer.say("好的")
    assert taken.of(HandoffRequested)


async def test_a_login_named_by_its_role_in_chinese_is_picked(merchant: Talk) -> None:
    await merchant.say("帮我重置密码")
    assert merchant.flow == ("password_reset", "login")
    picked = await merchant.say("收银那个账号")
    (at,) = picked.of(FlowAt)
    assert (at.step, at.slots["login"]) == ("confirm", "wang_cashier")


async def test_either_does_not_drown_a_short_english_question(matcher: Matcher) -> None:
    assert matcher.parse("I can't log in either").label == Label.DIAGNOSE_LOGIN


async def test_a_sentence_naming_the_bind_code_binds(customer: Talk) -> None:
    bound = await customer.say("482913 is my bind code")
    assert [b.merchant_id for b in bound.of(Bound)] == ["M001"]


async def test_a_person_asked_for_beside_a_problem_is_a_handoff(merchant: Talk) -> None:
    decision = await merchant.say("两边状态不一样，帮我转人工")
    assert decision.of(HandoffRequested)


async def test_a_login_typed_with_a_slip_is_confirmed_by_its_real_name(merchant: Talk) -> None:
    await merchant.say("I forgot my password")
    confirm = await merchant.say("wang_cahsier")
    (at,) = confirm.of(FlowAt)
    assert (at.step, at.slots["login"]) == ("confirm", "wang_cashier")


async def test_the_last_one_is_the_last_withdrawal_not_the_more_button(merchant: Talk) -> None:
    await merchant.say("check my withdrawals")
    picked = await merchant.say("the last one")
    assert picked.templates == ["flows/withdrawal/status"]


async def test_asking_whether_a_person_can_look_hands_off(merchant: Talk) -> None:
    decision = await merchant.say("the bank shows it failed. can a person look at this?")
    assert decision.of(HandoffRequested)


async def test_a_withdrawal_picked_by_the_day_it_was_requested(merchant: Talk) -> None:
    await merchant.say("check my withdrawals")
    picked = await merchant.say("the one from yesterday")  # W0001, requested a day ago
    assert picked.templates == ["flows/withdrawal/status"]
    assert "W0001" in picked.replies[0].text

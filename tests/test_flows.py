"""The live-data flows as conversations, in zh and en, on the demo world.

Merchant M001 (小王水果店) owns orders ...0001-...0013 and withdrawals W0001-W0004; M002 owns
...0021-...0022 and W0005. See bot/platform/demo_world.yaml.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_gateway
from bot.engine import Engine
from bot.platform.models import FailureCode
from bot.platform.tables import NotificationOutboxRow, OrderRow, PasswordResetRow, PaymentLinkRow
from bot.render import Renderer
from bot.storage.db import session_factory
from bot.storage.models import Conversation, Message
from tests.support.common import Chat

ORDER = "BT20261126000000"


async def count(db: AsyncEngine, model: type) -> int:
    async with session_factory(db)() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- binding -------------------------------------------------------------------------------


async def test_bind_with_a_code_once(chat: Chat, engine: Engine) -> None:
    await chat.say("/bind 482913")
    assert "小王水果店" in chat.text
    other = Chat(engine)
    await other.say("绑定 482913")
    assert "无效或已被使用" in other.text


async def test_binding_a_merchant_under_review_says_what_review_means(chat: Chat) -> None:
    await chat.say("/bind 913527")
    assert "张姐服装" in chat.text
    assert "审核中" in chat.text and "审核通过前还不能收款" in chat.text
    assert "现在我可以帮您查询订单" not in chat.text
    assert [b.action for b in chat.buttons] == ["human"]


async def test_five_wrong_bind_codes_lock_binding(
    engine: Engine, db: AsyncEngine, renderer: Renderer
) -> None:
    # Under the default global limit binding pauses for everyone after 3 wrong codes (see
    # tests/test_attacks_guess.py); raised here, the chat's own lock of 5 is what stops it.
    engine.settings = engine.settings.model_copy(update={"bind_global_limit": 100})
    engine.gateway = build_gateway(engine.settings, session_factory(db), renderer)
    chat = Chat(engine)
    for code in ("000001", "000002", "000003", "000004", "000005"):
        await chat.say(f"/bind {code}")
        assert "无效" in chat.text
    await chat.say("/bind 482913")
    assert "15分钟" in chat.text


# --- payment failure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "code"),
    [
        ("01", FailureCode.INSUFFICIENT_BALANCE),
        ("02", FailureCode.NETWORK_TIMEOUT),
        ("03", FailureCode.INVALID_PAYMENT_INFO),
        ("04", FailureCode.RISK_BLOCKED),
        ("05", FailureCode.BANK_DECLINED),
        ("06", FailureCode.ORDER_EXPIRED),
        ("07", FailureCode.LIMIT_EXCEEDED),
        ("08", FailureCode.CHANNEL_UNAVAILABLE),
    ],
)
async def test_every_failure_code_is_explained_with_its_fix(
    chat: Chat, engine: Engine, suffix: str, code: FailureCode
) -> None:
    await chat.bind("M001")
    await chat.say(f"订单{ORDER}{suffix}支付失败了，怎么回事")
    advice = engine.knowledge.failure_codes[code]
    assert advice.cause[chat.engine.settings.default_language] in chat.text
    actions = [b.action for b in chat.buttons]
    assert "human" in actions
    assert ("flow:newlink:yes" in actions) == (not advice.needs_person)


async def test_payment_failure_in_english_then_a_new_link_for_the_same_amount(
    chat: Chat, db: AsyncEngine
) -> None:
    await chat.bind("M001")
    await chat.say(f"payment failed for order {ORDER}01, why?")
    assert "did not have enough balance" in chat.text
    await chat.press("flow:newlink:yes")  # the button names the amount: it is the yes
    assert "¥88.50" in chat.text
    assert "https://pay.btp.example/l/PL" in chat.text
    assert chat.last[0].image is not None and chat.last[0].image.startswith(b"\x89PNG")
    assert await count(db, PaymentLinkRow) == 1


async def test_order_paid_after_a_failure_is_noticed(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say(f"{ORDER}09 顾客说付款失败了")
    assert "重新支付成功" in chat.text and "59.90" in chat.text


async def test_merchant_picks_from_recent_failed_orders(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("顾客付款一直失败")
    assert "最近有这些支付失败的订单" in chat.text
    await chat.press(chat.buttons[0].action)
    assert "支付失败的原因" in chat.text


async def test_another_merchants_order_reads_as_not_found(chat: Chat, engine: Engine) -> None:
    await chat.bind("M001")
    await chat.say(f"订单{ORDER}21支付失败了")
    other = chat.last[0].text
    await chat.say(f"订单{ORDER}99支付失败了")
    assert other.replace(f"{ORDER}21", "X") == chat.last[0].text.replace(f"{ORDER}99", "X")


async def test_an_answer_that_does_not_fit_is_asked_again_with_an_example(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("支付失败了")
    await chat.say("就是那个")
    assert [r.template for r in chat.last] == ["dialogue/retry"]
    assert "BT20261126xxxxxxxx" in chat.text and chat.buttons  # an example, and the choices
    await chat.say("那个那个")
    actions = [b.action for b in chat.buttons]
    assert "cancel" in actions and "human" in actions  # a way out, after a few tries
    await chat.say("不知道")
    assert [r.template for r in chat.last] == ["dialogue/retry"]  # still open, never given up
    await chat.say(f"{ORDER}22")
    assert "9.50" in chat.text


async def test_cancel_word_ends_an_open_flow(chat: Chat) -> None:
    await chat.say("支付失败了")
    await chat.say("取消")
    assert "已取消" in chat.text
    await chat.say("1234")  # a proof for the order flow, had it still been open
    assert [r.template for r in chat.last] == ["dialogue/what_number"]


async def test_a_new_question_in_the_middle_of_a_flow_is_answered(chat: Chat) -> None:
    await chat.say("支付失败了")
    await chat.say("提现多久到账")
    assert "1-3个工作日" in chat.text


async def test_restart_in_the_middle_of_a_flow_resumes_it(
    db: AsyncEngine, engine: Engine, chat: Chat
) -> None:
    await chat.bind("M001")
    await chat.say("帮我生成一个收款链接")
    assert "金额" in chat.text
    restarted = Engine(
        settings=engine.settings,
        sessions=session_factory(db),
        knowledge=engine.knowledge,
        matcher=engine.matcher,
        renderer=engine.renderer,
        gateway=engine.gateway,
    )
    chat.engine = restarted
    await chat.say("66.6")
    assert "¥66.60" in chat.text
    await chat.say("确认")
    assert "收款链接已生成" in chat.text


# --- customer payment status ---------------------------------------------------------------


async def test_customer_gets_status_after_verifying_with_phone_digits(chat: Chat) -> None:
    await chat.say(f"我付款了吗 订单号{ORDER}12")
    assert "手机号的后4位" in chat.text
    await chat.say("1111")
    assert "已支付" in chat.text


async def test_customer_verifies_with_the_exact_amount_in_english(chat: Chat) -> None:
    await chat.say("did my payment go through?")
    await chat.say(f"{ORDER}13")
    await chat.say("¥15.50")
    assert "awaiting payment" in chat.text


async def test_unknown_order_and_wrong_verification_read_the_same(chat: Chat) -> None:
    await chat.say(f"查一下订单{ORDER}12付款了没")
    await chat.say("9999")
    wrong = chat.text.replace(f"{ORDER}12", "X")
    await chat.say(f"查一下订单{ORDER}77付款了没")
    await chat.say("1111")
    assert chat.text.replace(f"{ORDER}77", "X") == wrong


async def test_five_wrong_verifications_lock_the_look_up(chat: Chat) -> None:
    for attempt in range(5):
        await chat.say(f"查询订单{ORDER}12的付款状态")
        await chat.say(f"{attempt:04d}")
        assert "无法核实" in chat.text
    await chat.say(f"查询订单{ORDER}12的付款状态")
    assert "15分钟" in chat.text


async def test_merchant_sees_own_order_status_without_verification(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say(f"{ORDER}10 这单付款了吗")
    assert "待支付" in chat.text and "不一致" in chat.text


# --- login ---------------------------------------------------------------------------------


async def test_locked_login_says_until_when_in_beijing_time(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("登录不上去了")
    await chat.press("flow:account:wang")
    assert "锁定" in chat.text and "北京时间" in chat.text
    # The reset offered is for the login just diagnosed: it is not asked for again.
    assert any(b.action == "reset:wang" for b in chat.buttons)


async def test_login_named_in_the_message_in_english(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("I can't log in with wang_cashier")
    assert "good standing" in chat.text


async def test_disabled_login_goes_to_a_person(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("账号登录不了")
    await chat.say("li_risk")
    assert "风控" in chat.text
    assert [b.action for b in chat.buttons] == ["human"]


async def test_many_failed_attempts_warns(chat: Chat) -> None:
    await chat.bind("M002")
    await chat.say("登录一直提示密码错误")
    await chat.press("flow:account:li")
    assert "3 次" in chat.text


async def test_unbound_chat_gets_general_login_advice_only(chat: Chat) -> None:
    await chat.say("wang 这个账号登录不上")
    assert "锁定" in chat.text and "北京时间" not in chat.text


async def test_merchant_under_review(chat: Chat) -> None:
    await chat.bind("M003")
    await chat.say("登录不了")
    assert "审核中" in chat.text


# --- data sync -----------------------------------------------------------------------------


async def test_recent_orders_are_compared_and_resynced(chat: Chat, db: AsyncEngine) -> None:
    await chat.bind("M001")
    await chat.say("后台和顾客那边订单状态不一致")
    await chat.press("flow:recent")
    assert f"{ORDER}10" in chat.text and "✅" in chat.text
    assert f"{ORDER}11" in chat.text and "⚠️" in chat.text
    assert [b.action for b in chat.buttons] == ["human"]
    async with session_factory(db)() as session:
        fixed = await session.get(OrderRow, f"{ORDER}10")
        conflict = await session.get(OrderRow, f"{ORDER}11")
        conversation = await session.scalar(select(Conversation))
    assert fixed is not None and fixed.status == "paid"
    assert conflict is not None and conflict.status == "paid"
    assert conversation is not None
    assert [m["order_no"] for m in conversation.findings["still_different"]] == [f"{ORDER}11"]


async def test_one_order_in_sync_in_english(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say(f"order {ORDER}12 shows a different status to my customer")
    assert "same status" in chat.text


async def test_data_sync_for_unbound_chat_gives_the_guides_advice(chat: Chat) -> None:
    await chat.say("掉单了，顾客付了钱后台还是未支付")
    assert "刷新页面" in chat.text


# --- withdrawals ---------------------------------------------------------------------------


async def test_withdrawal_status_with_expected_arrival(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("W0001 提现怎么还没到账")
    assert "处理中" in chat.text and "预计最晚" in chat.text


async def test_failed_withdrawal_goes_to_a_person_in_english(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("where is my withdrawal W0003")
    assert "failed" in chat.text
    assert [b.action for b in chat.buttons] == ["human"]


async def test_withdrawal_of_another_merchant_is_not_found(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("提现W0005到哪了")
    assert "没有在您的商户下找到" in chat.text


async def test_withdrawal_pick_from_recent(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("我的提现到哪一步了")
    assert [b.action for b in chat.buttons][-1] == "flow:more:3"
    assert len(chat.buttons) == 4  # the 3 most recent of M001's 4, and "more"
    await chat.say("1")
    assert "提现 W" in chat.text


async def test_more_shows_the_withdrawals_after_the_first_three(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("我的提现到哪一步了")
    first = [b.action for b in chat.buttons if b.action.startswith("flow:pick:")]
    await chat.say("查看更多")  # the button's label, typed
    rest = [b.action for b in chat.buttons]
    assert rest and set(rest).isdisjoint(first)
    assert sorted(first + rest) == [f"flow:pick:W000{n}" for n in (1, 2, 3, 4)]
    await chat.press(rest[0])
    assert f"提现 {rest[0].removeprefix('flow:pick:')}" in chat.text


async def test_an_order_summary_ends_a_failure_cause_with_one_full_stop(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("BT2026112600000001")
    assert "拒绝了扣款。" in chat.text
    assert "。。" not in chat.text and "。）" not in chat.text


async def test_an_order_summary_says_each_fact_on_its_own_line(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("what about BT2026112600000011")
    lines = chat.text.splitlines()
    assert lines[0].startswith("Order BT2026112600000011") and lines[0].endswith("paid.")
    assert lines[1].startswith("Last payment attempt:")
    assert lines[2].startswith("The payment channel shows:")


async def test_this_one_after_an_orders_summary_is_that_order(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("BT2026112600000011")
    await chat.say("whats going on with this one")
    assert chat.text.startswith("Order BT2026112600000011")


async def test_more_pages_through_every_recent_failed_order(chat: Chat) -> None:
    await chat.bind("M001")
    await chat.say("有个订单支付失败了")
    seen: list[str] = []
    while True:
        actions = [b.action for b in chat.buttons]
        seen += [a for a in actions if a.startswith("flow:order:")]
        more = [a for a in actions if a.startswith("flow:more:")]
        if not more:
            break
        assert len(actions) == 4
        await chat.press(more[0])
    assert len(seen) > 3 and len(set(seen)) == len(seen)
    await chat.press(seen[-1])
    assert seen[-1].removeprefix("flow:order:") in chat.text


async def test_withdrawal_needs_binding(chat: Chat) -> None:
    await chat.say("我的提现到哪一步了")
    assert "/bind" in chat.text


# --- payment links -------------------------------------------------------------------------


async def test_link_amount_out_of_range_is_asked_again(chat: Chat, db: AsyncEngine) -> None:
    await chat.bind("M001")
    await chat.say("生成一个60000元的收款链接")
    assert "超出" in chat.text
    await chat.say("600")
    assert "¥600.00" in chat.text
    await chat.press("flow:confirm:no")
    assert await count(db, PaymentLinkRow) == 0


async def test_link_with_a_note_in_english(chat: Chat, db: AsyncEngine) -> None:
    await chat.bind("M001")
    await chat.say("create a payment link for 120 yuan, note: durian box")
    assert "durian box" in chat.text
    await chat.press("flow:confirm:yes")
    assert "durian box" in chat.text
    assert await count(db, PaymentLinkRow) == 1


async def test_customer_cannot_create_links(chat: Chat, db: AsyncEngine) -> None:
    await chat.say("帮我生成一个100元的收款链接")
    assert "绑定" in chat.text
    assert await count(db, PaymentLinkRow) == 0


async def test_confirming_twice_creates_one_link(chat: Chat, db: AsyncEngine) -> None:
    await chat.bind("M001")
    await chat.say("收款链接 50元")
    await chat.press("flow:confirm:yes")
    await chat.press("flow:confirm:yes")
    assert "失效" in chat.text
    assert await count(db, PaymentLinkRow) == 1


# --- password reset ------------------------------------------------------------------------


async def test_a_login_name_in_a_chinese_flow_keeps_the_chat_chinese(chat: Chat) -> None:
    await chat.say("忘记密码了")
    await chat.say("wang")
    assert "wang" in chat.text and "重置" in chat.text  # asked in Chinese, not in English


async def test_reset_for_known_and_unknown_logins_reads_the_same(
    chat: Chat, db: AsyncEngine
) -> None:
    await chat.say("忘记密码了")
    await chat.say("wang")
    await chat.say("是")
    known = chat.text.replace("wang", "X")
    await chat.say("我要重置密码")
    await chat.say("nobody_here")
    await chat.say("是")
    assert chat.text.replace("nobody_here", "X") == known
    assert await count(db, PasswordResetRow) == 1
    async with session_factory(db)() as session:
        notice = await session.scalar(select(NotificationOutboxRow))
        stored = "\n".join((await session.scalars(select(Message.text))).all())
    assert notice is not None and notice.recipient == "w***@example.com"
    assert "token=" in notice.body and "…" in notice.body
    assert "token=" not in stored


async def test_resets_per_account_are_throttled_silently(chat: Chat, db: AsyncEngine) -> None:
    await chat.bind("M003")
    for _ in range(4):
        await chat.say("reset my password")
        assert "zhang" in chat.text  # the one login, to confirm
        await chat.say("yes")
        assert "reset link has been sent" in chat.text
    assert await count(db, PasswordResetRow) == 3


async def test_resets_per_chat_are_limited(chat: Chat, engine: Engine) -> None:
    engine.settings = engine.settings.model_copy(update={"rate_limit_per_minute": 100})
    for number in range(10):
        await chat.say("重置密码")
        await chat.say(f"user{number}")
        await chat.say("确认")
    await chat.say("重置密码")
    assert "次数太多" in chat.text


async def test_a_timed_out_order_status_says_a_charge_is_possible(chat: Chat) -> None:
    """A timeout is no result, not a refusal: the status never tells the payer that no money
    was taken, and tells the merchant the customer may have been charged."""
    await chat.say("/lang en")
    await chat.say(f"/status {ORDER}02")
    await chat.say("0002")
    assert [r.template for r in chat.last] == ["flows/payment_status/status"]
    assert "may still have been charged" in chat.text
    assert "received no payment" not in chat.text
    await chat.bind("M001")
    await chat.say(f"/status {ORDER}02")
    assert "customer may still have been charged" in chat.text


@pytest.mark.parametrize(
    ("text", "login"),
    [
        ("wang_cashier的密码忘了，帮我重置一下", "wang_cashier"),
        ("账号 li_risk 密码忘了", "li_risk"),
        ("reset the password for wang please", "wang"),
        ("my login is li, forgot the password", "li"),
        ("reset the password for my account", None),
        ("I forgot my password, pls reset it", None),
    ],
)
async def test_an_unbound_reset_takes_the_login_it_names(
    chat: Chat, text: str, login: str | None
) -> None:
    """Without a binding there is no list of logins to pick from: a login named in so many
    words goes to its confirmation, anything else asks for the login."""
    await chat.say(text)
    templates = [r.template for r in chat.last]
    if login is None:
        assert templates[-1] == "flows/password_reset/ask_login"
    else:
        assert templates[-1] == "flows/password_reset/confirm" and login in chat.text


async def test_why_it_failed_at_the_proof_step_keeps_the_order(chat: Chat) -> None:
    """A customer who asks why the payment failed while the payment check waits for the proof
    gets the failure check of the same order: the number is not asked again, the proof is."""
    await chat.say(f"{ORDER}03")
    assert [r.template for r in chat.last] == ["flows/ask_verification"]
    await chat.say("为什么失败")
    assert [r.template for r in chat.last] == ["flows/ask_verification"]
    await chat.say("13912340003")
    assert [r.template for r in chat.last] == ["flows/payment_failure/explained"]
    assert f"{ORDER}03" in chat.text

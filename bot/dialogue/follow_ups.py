"""What a message means right after a reply: follow-ups about the record it showed.

A reply about one order, withdrawal or login leaves its `Subject` in the slots for one message
(`bot/dialogue/turn.py`, from the reply's findings). A short message after it with no number of
its own is about that record unless it is a clear question of its own: "why?", "so was I
charged?", "and the other one?", "reset it then" (`FollowUps.about_subject`). The answer to
"what is this number?" that says what it is takes the number along (`what_number_was`). After
an FAQ answer, a tie the matcher cannot break goes to the topic just answered (`after_answer`);
a question the matcher only leans to read as a pleasantry is not one (`asked_not_said`).
Decision record 0001 says why each rule is there and what it must not take.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from bot.context import OFFERED, SUBJECT, Context, Outcome, Subject
from bot.diagnostics.payment_failure import PaymentFailureFlow
from bot.diagnostics.registry import FLOWS
from bot.diagnostics.withdrawal_status import WithdrawalStatusFlow
from bot.dialogue.policy import CLEAR_QUESTION_SCORE, PLEASANTRY_SCORE, is_question
from bot.faq.knowledge import Knowledge
from bot.nlu.matcher import TOPIC_REFUSALS, Matcher
from bot.nlu.values import (
    names_said,
    read_amount,
    read_order_no,
    read_position,
    read_withdrawal_id,
)
from bot.nlu.words import few
from bot.types import CHITCHAT_LABELS, Alternative, Label, Parse

# How sure at least a label close behind the matcher's must be to be preferred to it.
UPSET_FLOOR = 0.2
# The same for a short follow-up right after a reply about one record, toward that record.
SUBJECT_MARGIN = 0.12
# The matcher's refusal that means "not sure which of these", not "not ours".
_UNSURE = frozenset({"ambiguous"})
# A follow-up about what was just shown is short ("为什么失败", "can the customer just try
# again?"); a longer message is a new question with its own details.
_FOLLOW_UP_WORDS = 10
_FOLLOW_UP_CHARS = 20
_ORDER_FOLLOW_UPS = frozenset(
    {Label.DIAGNOSE_PAYMENT_FAILURE, Label.DIAGNOSE_DATA_SYNC, Label.STATUS_PAYMENT}
)
# After a withdrawal's status, "为啥失败啊" is about that withdrawal, not a payment.
_WITHDRAWAL_FOLLOW_UPS = frozenset(
    {Label.STATUS_WITHDRAWAL, Label.WITHDRAW_HOW, Label.DIAGNOSE_PAYMENT_FAILURE}
)
# What a number the bot asked about may turn out to be, by the words of the answer.
_NUMBER_KINDS = {
    Label.STATUS_WITHDRAWAL: "withdrawal_status",
    Label.WITHDRAW_HOW: "withdrawal_status",
    Label.ACTION_PAYMENT_LINK: "payment_link",
    Label.METHODS_LINK: "payment_link",
}
# A button's handler run as if pressed: (context, action prefix, argument).
Act = Callable[[Context, str, str], Awaitable[Outcome]]


class FollowUps:
    def __init__(self, knowledge: Knowledge, matcher: Matcher, act: Act) -> None:
        self.knowledge = knowledge
        self.matcher = matcher
        self._act = act

    async def about_subject(self, ctx: Context, text: str) -> tuple[str, Outcome | None]:
        """A follow-up with no number of its own, right after a reply about one order,
        withdrawal or login, is about that one: "这单怎么回事" (its buttons carry its number),
        "为什么失败" after an order's summary, "so should i pay again?" after its status,
        "那什么时候到" after a withdrawal's; the number is added to the message. After a
        login's check, "why is it disabled?" is that check again and "reset it then" its
        reset; after a withdrawal's, "and the 800 one?" is the one of that amount."""
        if read_order_no(text) is not None or read_withdrawal_id(text) is not None:
            return text, None
        subject: Subject = ctx.conversation.slots.get(SUBJECT) or {}
        offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
        orders = {no for _, action in offered if (no := read_order_no(action)) is not None}
        if "order_no" in subject:
            orders.add(subject["order_no"])
        that_one = len(orders) == 1 and self.knowledge.words.contains("that_one", text)
        if not that_one and (not subject or not few(text, _FOLLOW_UP_WORDS, _FOLLOW_UP_CHARS)):
            return text, None
        if not that_one and self.knowledge.words.contains("in_general", text):
            # "提现一般多久到账", "how long do they normally take": the general question.
            return text, None
        parse = self.matcher.parse(text, ctx.conversation.language)
        if that_one:
            # "这单怎么回事": that order; "这笔手续费多少" is a question of its own about fees,
            # "ok got it thanks" a thanks.
            clear = (parse.label.is_faq and parse.score >= CLEAR_QUESTION_SCORE) or (
                parse.label in CHITCHAT_LABELS and parse.score >= PLEASANTRY_SCORE
            )
            return (text if clear else f"{text} {orders.pop()}"), None
        if "login" in subject:
            return text, await self._about_login(ctx, text, parse, subject["login"])
        if "withdrawal" in subject and self.knowledge.words.contains("which_one", text):
            # "失败那笔呢" after a withdrawal that did not fail: the one that did.
            flow = FLOWS["withdrawal_status"]
            assert isinstance(flow, WithdrawalStatusFlow)
            other = await flow.another(ctx, subject["withdrawal"])
            if other is not None:
                return text, other
        labels = {parse.label}
        if parse.label in CHITCHAT_LABELS and parse.alternatives and is_question(ctx, text):
            # "thanks! when will it land?": the thanks and the question after it.
            labels.add(parse.alternatives[0].label)
        follow_ups = _ORDER_FOLLOW_UPS if "order_no" in subject else _WITHDRAWAL_FOLLOW_UPS
        # Right after a record, its own topic close behind what the matcher only leans to
        # wins ("ok so its still processing then" after a withdrawal's status); a clear
        # question of its own ("这笔手续费多少") keeps its topic.
        unsure = parse.score < CLEAR_QUESTION_SCORE or parse.reason in _UNSURE
        if unsure and parse.label not in CHITCHAT_LABELS:
            # (A thanks is never lifted: "ok got it thanks" ends the topic.)
            labels.add(lifted(parse, follow_ups, SUBJECT_MARGIN, floor=UPSET_FLOOR).label)
        about = labels & follow_ups
        why = self._why(text, parse)
        if "withdrawal" in subject and self.knowledge.words.contains("payment_side", text):
            # "为什么我的付款失败了" after a withdrawal is about a payment, not the withdrawal.
            about -= {Label.DIAGNOSE_PAYMENT_FAILURE}
            why = False
        if "order_no" in subject and self.knowledge.words.contains("money_taken", text):
            # "so was i charged or not?" after an order's status: that order's status again
            # (which says what the data shows about a charge), not the fees.
            return subject["order_no"], None
        amount = read_amount(text)
        named = amount is not None and "withdrawal" in subject
        if named and (about or why or not (_clear(parse) or ctx.conversation.suspended)):
            # "what about the one that failed, the 800", "and the 1000 one?": another
            # withdrawal, named by its amount (a clear request of its own, "给我生成个1000的
            # 收款链接", is that request; with a flow waiting below, "back to the link -- 88"
            # is its value).
            ctx.parse = parse
            flow = FLOWS["withdrawal_status"]
            return text, await flow.start(ctx)
        if amount is not None and "order_no" in subject and not _clear(parse):
            # "and the one for 35 bucks?" after a failed order's reply: that failed order.
            failure = FLOWS["payment_failure"]
            assert isinstance(failure, PaymentFailureFlow)
            ctx.parse = parse
            other = await failure.another(ctx, subject["order_no"])
            if other is not None:
                return text, other
        if (not about and not why) or amount is not None:
            return text, None
        if "withdrawal" in subject and parse.score < CLEAR_QUESTION_SCORE:
            # Words the matcher places only loosely ("ok so its still processing then"): the
            # withdrawal's status again. A clear question ("how long do withdrawals normally
            # take?") goes with the number to the words, which decide.
            return subject["withdrawal"], None
        return f"{text} {subject.get('order_no') or subject.get('withdrawal')}", None

    async def what_number_was(self, ctx: Context, text: str) -> Outcome | None:
        """The answer to "what is this number?" (`dialogue/what_number`, whose link button
        carries the number): "是提现的金额，到了没" after "1000" is the withdrawal of 1000,
        "it's for a payment link" a link for it. Anything else is read as it stands."""
        offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
        actions = {action for _, action in offered}
        if "intent:status.payment" not in actions or read_amount(text) is not None:
            return None
        amount = next((a.removeprefix("pay:") for a in actions if a.startswith("pay:")), None)
        if amount is None or not self.knowledge.words.contains("number_is", text):
            # ("啊发错了，我是想问提现一般几天到账" is a question of its own.)
            return None
        parse = self.matcher.parse(f"{text} ¥{amount}", ctx.conversation.language)
        flow = _NUMBER_KINDS.get(parse.label)
        if flow is None:
            return None
        ctx.parse = parse
        return await FLOWS[flow].start(ctx)

    def _why(self, text: str, parse: Parse) -> bool:
        """ "why??", "怎么会这样": asked about what was just shown, in words the matcher places
        nowhere or only loosely (a question on a topic the bot does not cover stays refused,
        a clear question of its own keeps its topic)."""
        if parse.label == Label.OUT_OF_SCOPE:
            loose = parse.reason not in TOPIC_REFUSALS
        else:
            loose = parse.score < CLEAR_QUESTION_SCORE and parse.label not in CHITCHAT_LABELS
        return loose and self.knowledge.words.contains("why", text)

    async def _about_login(
        self, ctx: Context, text: str, parse: Parse, login: str
    ) -> Outcome | None:
        if not ctx.identity.is_merchant or ctx.identity.merchant_id is None:
            return None
        accounts = await ctx.gateway.list_accounts(ctx.identity.merchant_id)
        # Another login by name: "那帮我把li的密码重置一下", "那li这个号呢" (the longest name
        # that is there, so "li_risk" is not read as "li").
        named = names_said(text, [a.login for a in accounts])
        target = named[-1] if named else login
        others = [a.login for a in accounts if a.login != login]
        ctx.parse = parse
        position = None if named else read_position(text, len(accounts))
        if position is not None:
            # "那第一个呢", "and the second?": the login at that place in the list the check
            # offered (the merchant's logins, in the platform's order).
            return await self._act(ctx, "login", accounts[position].login)
        if not named and len(others) == 1 and self.knowledge.words.contains("which_one", text):
            # "那另一个呢", "and the other one?" after one of two logins: the other one.
            return await self._act(ctx, "login", others[0])
        if parse.label == Label.ACTION_PASSWORD_RESET:
            return await self._act(ctx, "reset", target)
        unplaced = parse.label == Label.OUT_OF_SCOPE and parse.reason not in TOPIC_REFUSALS
        if parse.label == Label.DIAGNOSE_LOGIN or self._why(text, parse) or (named and unplaced):
            return await self._act(ctx, "login", target)
        return None

    def after_answer(self, ctx: Context, text: str, parse: Parse) -> Parse:
        """A short question right after an FAQ answer that the matcher cannot tell apart from
        its neighbours ("and I'll get an email once it's approved?" after how the review
        works) is on the topic just answered: that entry, or a related one, when it is among
        the matcher's close alternatives."""
        if parse.reason not in _UNSURE or not few(text, _FOLLOW_UP_WORDS, _FOLLOW_UP_CHARS):
            return parse
        try:
            last = Label(ctx.conversation.last_label or "")
        except ValueError:
            return parse
        entry = self.knowledge.entries.get(last)
        if entry is None:
            return parse
        near = {last, *entry.related}
        best = parse.alternatives[0].score if parse.alternatives else 0.0
        # Among the two the matcher could not tell apart.
        found = next(
            (
                a
                for a in parse.alternatives[:2]
                if a.label in near and a.score >= max(best - SUBJECT_MARGIN, UPSET_FLOOR)
            ),
            None,
        )
        if found is None:
            return parse
        return replace(parse, label=found.label, score=found.score, reason=None)


def asked_not_said(ctx: Context, text: str, parse: Parse) -> Parse:
    """A question the matcher only leans to read as a pleasantry ("can you check something
    else" near "nothing else", a goodbye) is not one: it is a question the bot is not sure
    of, answered with what it may mean, never with a goodbye."""
    if parse.label not in CHITCHAT_LABELS or parse.score >= PLEASANTRY_SCORE:
        return parse
    if not is_question(ctx, text):
        return parse
    alternatives = (Alternative(parse.label, parse.score), *parse.alternatives)
    kept = tuple(a for a in alternatives if a.label not in CHITCHAT_LABELS)[:3]
    return replace(parse, label=Label.OUT_OF_SCOPE, alternatives=kept, reason="ambiguous")


def lifted(parse: Parse, labels: frozenset[Label], margin: float, *, floor: float = 0.0) -> Parse:
    """`parse` moved to the best of its alternatives among `labels` that is at most `margin`
    behind it and scores at least `floor`; `parse` itself when there is none."""
    close = max(parse.score - margin, floor)
    found = next((a for a in parse.alternatives if a.label in labels and a.score >= close), None)
    return replace(parse, label=found.label, score=found.score) if found else parse


def _clear(parse: Parse) -> bool:
    """The matcher places the message clearly, on a label of its own."""
    return parse.label != Label.OUT_OF_SCOPE and parse.score >= CLEAR_QUESTION_SCORE

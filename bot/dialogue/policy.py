"""Dialogue policy: what a typed message means for the conversation it arrives in.

The engine has already taken buttons, typed answers to buttons (yes, no, a number, an option's
name), commands and fixed words (cancel, back to the bot, a language, a bind code). What is
left is decided here, in this order:

With a flow open:
0. **A change of mind.** A cancel word leading a question or request of its own ("算了 你们客服
   几点上班", "nvm, did BT… go through") ends the flow (a message being written for staff, and
   its handoff, too) and the rest is answered as a new message.
1. **The step's answer.** The step reads its value in the forms people type.
2. **A correction.** A value for something given earlier ("不对，是260", "actually make it 45")
   replaces it, at any step; a confirmation then asks again with the new value.
3. **The same request again**, with new details: the flow starts over from them.
4. **Another flow's request**: the open flow waits below the new one, and is offered back when
   the new one ends.
5. **A question the knowledge answers, or a pleasantry** (a digression): answered, then the open
   question is asked again ("回到刚才的收款链接：金额是多少？").
6. **Anything else**: the flow says what it needs, with an example, and asks again. A user's
   wrong input is never counted as the bot failing; each re-prompt offers a way out.

With no flow open, an entity decides before the words do:
- an order number said to have failed to pay: the failure check;
- an order number with nothing else clear: a customer's payment check, or a bound merchant's
  order summary;
- a withdrawal id: that withdrawal's status;
- a lone number: "what is this number?", with choices.

Over 400 lines: the order above is the design, and it reads best as one module in that order;
the follow-ups about the last record (`follow_ups.py`) and two questions in one message
(`two_questions.py`) live beside it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from bot.context import Context, FlowState, Outcome, PendingRequest, SuspendedFrame
from bot.diagnostics.flow import Flow, Slot, prompt_of
from bot.handlers.orders import order_summary
from bot.nlu.entities import ORDER_DIGITS, ORDER_NO, WITHDRAWAL_ID
from bot.nlu.matcher import TOPIC_REFUSALS, Matcher
from bot.nlu.normalize import fold, strip_punctuation
from bot.nlu.requests import marker_key
from bot.nlu.values import read_amount, read_order_no, read_withdrawal_id, read_yes_no
from bot.nlu.words import few
from bot.routing import UNHANDLED
from bot.types import CHITCHAT_LABELS, CLOSING_LABELS, Button, Entity, Label, Parse

# How sure the NLU must be before a message inside a flow is taken as a new subject.
SWITCH_SCORE = 0.25
# A pleasantry inside a flow is short and unmistakable ("谢谢" scores about 0.8); a vague
# answer the matcher leans toward one ("不知道" ~ 0.26 thanks) is not one.
PLEASANTRY_SCORE = 0.5
# A question the knowledge answers is taken as a digression at a lower score than a new
# request: answering it costs nothing, since the open question is asked again right after.
FAQ_DIGRESSION_SCORE = 0.25
# Before a correction is looked for, only a clear question is taken as a digression.
CLEAR_QUESTION_SCORE = 0.4
# A question marked as asked on the side ("顺便问下", "btw") is answered at a lower score.
ASIDE_SCORE = 0.15
_PLEASANTRIES = frozenset({Label.CHITCHAT_GREET, Label.CHITCHAT_THANKS})
# Steps that wait for a value typed in (not a choice among buttons or a yes/no).
_VALUE_SLOTS = frozenset({Slot.AMOUNT, Slot.ORDER_NO, Slot.PROOF, Slot.WITHDRAWAL_ID, Slot.LOGIN})
# Labels for which an order number in the message is the flow's own business.
_ORDER_LABELS = frozenset(
    {Label.STATUS_PAYMENT, Label.DIAGNOSE_PAYMENT_FAILURE, Label.DIAGNOSE_DATA_SYNC}
)
_MERCHANT_ORDER_LABELS = _ORDER_LABELS - {Label.STATUS_PAYMENT}
# The flows about one order: the payment check and the failure check (which take a proof).
_ORDER_FLOWS = frozenset({Label.STATUS_PAYMENT, Label.DIAGNOSE_PAYMENT_FAILURE})
# What only a bound merchant can ask for: beside a customer's order number ("DBS Alert: Payment
# of CNY 15.50 … ref BT…" leans to a payment link) the order decides.
_MERCHANT_ONLY = frozenset(
    {
        Label.ACTION_PAYMENT_LINK,
        Label.ACTION_PASSWORD_RESET,
        Label.DIAGNOSE_LOGIN,
        Label.STATUS_WITHDRAWAL,
    }
)
# The end of a Chinese yes/no question asked as "A-not-A" ("出不", "到了没").
_A_NOT_A = ("不", "没", "没有")
_LONE_NUMBER = re.compile(r"^\s*[¥$]?\s*(\d{1,12}(?:\.\d{1,2})?)\s*$")
# What is left of a message once its order number or withdrawal id is taken out, when that is
# all it says: "付了没", "what about it?" (short enough that the entity is the message).
_SHORT_REST = 12

# What a try at a step's value looks like, right or wrong: "bt2026…" (too short), "w01".
_ATTEMPTS = {
    Slot.ORDER_NO: re.compile(r"\bbt\s*\d{4,}|\b20\d{6,}"),
    Slot.WITHDRAWAL_ID: re.compile(r"\bw\s*\d{1,6}\b"),
}
# "Order No.: BT…", "金额：128.00": a field's name and its colon.
_FIELD = re.compile(r"[A-Za-z\u4e00-\u9fff][A-Za-z\u4e00-\u9fff .]{0,15}[:：]")
_PASTED_FIELDS = 2

RouteLabel = Callable[[Context], Awaitable[Outcome]]


class DialoguePolicy:
    def __init__(self, flows: Mapping[str, Flow], matcher: Matcher, route: RouteLabel) -> None:
        self._flows = flows
        self._matcher = matcher
        self._route = route
        self._flow_labels = {flow.label: name for name, flow in flows.items() if name != "ticket"}

    def _parse(self, ctx: Context, text: str) -> Parse:
        ctx.parse = self._matcher.parse(text, ctx.conversation.language)
        return ctx.parse

    def _aside(self, ctx: Context, text: str) -> tuple[Parse, bool]:
        """The parse of a message in a flow, and whether it says it is asked on the side
        ("顺便问下…", "btw …"): then it is read without those words, and taken as a
        digression more readily."""
        words = ctx.knowledge.words
        if words.contains("digression", text):
            return self._parse(ctx, words.without(("digression",), text, punctuation=True)), True
        return self._parse(ctx, text), False

    async def in_flow(self, ctx: Context, state: FlowState, text: str) -> Outcome:
        flow = self._flows[state.name]
        step = flow.steps.get(state.step)
        free_text = step is not None and step.slot == Slot.TEXT
        changed = await self._changed_mind(ctx, flow, text)
        if changed is not None:
            return changed
        result = await flow.resume(ctx, state)
        if result is not UNHANDLED:
            return result
        corrects = ctx.knowledge.words.contains("correction", text)
        if not free_text and not corrects:
            # A clear question comes before a correction: "手续费怎么收" at a read-back is asked,
            # not a new value; a message that says it corrects ("no wait, it's wang, not the
            # cashier") is not. (At a free-text step, such as the message for staff, any text
            # is the answer: it is read back before it is left.)
            question = await self._digression(ctx, flow, state, text, clear_only=True)
            if question is not None:
                return question
        if flow.name == "ticket" and state.step == "confirm" and not corrects:
            asked = await self._at_read_back(ctx, flow, state, text)
            if asked is not None:
                return asked
        result = await flow.correct(ctx, state)
        if result is not UNHANDLED:
            return result
        yes = _offered_yes(state) if step is not None and step.slot == Slot.YES_NO else None
        if yes is not None and _agrees(ctx, text):
            # "好的 确认重置", "yes send it over": a yes that names what it agrees to.
            ctx.argument = yes
            result = await flow.resume(ctx, state)
            if result is not UNHANDLED:
                return result
        asks_yes_no = step is not None and step.slot in (Slot.YES_NO, Slot.CHOICE)
        if (asks_yes_no and _declines(ctx, text)) or _declined_first(ctx, text):
            # "no thanks" to an offer with no "no" button: the offer is declined; so is the
            # flow when a message opens with a plain no and says why ("hmm no thanks, i just
            # remembered it lol" when asked which login to reset).
            return flow.finish(ctx, [ctx.say("dialogue/declined")])
        if not free_text and not (step is not None and _attempt(step.slot, text)):
            digression = await self._digression(ctx, flow, state, text)
            if digression is not None:
                return digression
        offers_link = step is not None and Label.ACTION_PAYMENT_LINK in dict(step.accepts)
        if offers_link and read_amount(text) is not None and not is_question(ctx, text):
            # "那我拆成两笔 一笔一万" at the offer of a new link for the same amount: a link for
            # the amount said, confirmed first (never the offered amount on the next "确认").
            link = self._flows[self._flow_labels[Label.ACTION_PAYMENT_LINK]]
            return await link.start(ctx)
        held = state.slots.get("order_no")
        if held and ctx.identity.is_merchant and ctx.knowledge.words.contains("money_taken", text):
            # "那顾客的钱扣了没有" under the explanation of a failure: what the data shows about
            # that order and its charge, with its next steps as buttons (which take over from
            # the flow's).
            summary = await order_summary(ctx, str(held))
            summary.end_flow = True
            return summary
        return flow.retry(ctx, state)

    async def _at_read_back(
        self, ctx: Context, flow: Flow, state: FlowState, text: str
    ) -> Outcome | None:
        """A question typed under the read-back of a message for staff is asked, not the
        message rewritten (that is "改成…" or the rewrite button): one the bot can answer is
        answered and the read-back comes again; "did you get my message?" hears that it is
        not left yet. The draft waits either way."""
        if not is_question(ctx, text):
            return None
        if self._parse(ctx, text).label == Label.HANDOFF_HUMAN:
            return flow.retry(ctx, state)
        return await self._digression(ctx, flow, state, text)

    async def _changed_mind(self, ctx: Context, flow: Flow, text: str) -> Outcome | None:
        """A cancel word, then something the bot can answer on its own: the flow ends and the
        rest is answered. A value after the cancel word is a correction ("算了 还是200吧"), and
        the flow's own request again is not a change of mind; both are left to the steps."""
        rest = ctx.knowledge.words.after_lead("cancel", text, past_fillers=True)
        if not rest or read_amount(rest) is not None:
            return None
        parse = self._parse(ctx, rest)
        if parse.label in (Label.OUT_OF_SCOPE, flow.label):
            ctx.parse = None
            return None
        outcome = await self._route(ctx)
        outcome.end_flow = outcome.end_flow or outcome.flow is None
        outcome.return_to_bot = outcome.return_to_bot or flow.name == "ticket"
        return outcome

    async def _digression(
        self, ctx: Context, flow: Flow, state: FlowState, text: str, *, clear_only: bool = False
    ) -> Outcome | None:
        withdrawal = read_withdrawal_id(text)
        # (Not in the message for staff, which is read back as written: "改成：W0003 提现失败…")
        staff = flow.name == "ticket"
        if withdrawal is not None and flow.label != Label.STATUS_WITHDRAWAL and not staff:
            # "W0002到了吗" in the middle of a payment link: that withdrawal, then back.
            outcome = await self._flows[self._flow_labels[Label.STATUS_WITHDRAWAL]].start(ctx)
            outcome.suspend = state
            return outcome
        parse, aside = self._aside(ctx, text)
        if parse.label == Label.OUT_OF_SCOPE and parse.reason == "ambiguous":
            parse = _leaning_question(ctx, text, parse)
        label = parse.label
        question = CLEAR_QUESTION_SCORE if not aside else ASIDE_SCORE
        step = flow.steps.get(state.step)
        # Where a value is asked ("some money" for an amount), a message that neither asks
        # nor is marked as asked on the side is a wrong answer to ask again, not a question.
        valued = step is not None and step.slot in _VALUE_SLOTS
        asks = not valued or aside or is_question(ctx, text)
        if clear_only and not (label.is_faq and parse.score >= question and asks):
            return None
        leavable = step is not None and (
            step.optional or step.slot == Slot.CHOICE or _offered_picks(state)
        )
        thanked = label in CHITCHAT_LABELS and parse.score >= PLEASANTRY_SCORE
        if leavable and not thanked and thanks_at_end(self._matcher, text):
            # "行吧 我让顾客查下银行流水 谢谢" under an offer: a thanks that closes it.
            ctx.parse = replace(parse, label=Label.CHITCHAT_THANKS, reason=None)
            thanked = True
        if thanked and leavable:
            # "ok thx" under an offer the user may leave, or at a choice among buttons: the
            # conversation is done (where only a typed value is asked, a thanks keeps the
            # question).
            outcome = await self._route(ctx)
            outcome.end_flow = True
            return outcome
        if label in _PLEASANTRIES and parse.score >= PLEASANTRY_SCORE:
            outcome = await self._route(ctx)
            return self.back(ctx, flow, state, outcome)
        if label == Label.CHITCHAT_BYE and parse.score >= CLEAR_QUESTION_SCORE and not asks:
            # "ok cool bye" while a value is asked: the user is leaving, not answering.
            outcome = await self._route(ctx)
            outcome.end_flow = True
            return outcome
        if label == Label.OUT_OF_SCOPE:
            if not (aside or (is_question(ctx, text) and parse.reason in TOPIC_REFUSALS)):
                return None
            # "顺便问下 你们能开发票不": a question asked on the side that the bot cannot
            # answer is told so, and the open question comes again.
            outcome = await self._route(ctx)
            return self.back(ctx, flow, state, outcome)
        if label.is_faq and asks and parse.score >= min(question, FAQ_DIGRESSION_SCORE):
            outcome = await self._route(ctx)
            return self.back(ctx, flow, state, outcome)
        # A flow asked for on the side ("哦对了，我们店有个账号登不进去了") switches more readily.
        if parse.score < (ASIDE_SCORE if aside else SWITCH_SCORE):
            return None
        if label == flow.label and flow.name != "ticket":
            # The request again, with new details ("帮我生成收款链接，金额300"): start over.
            # Without any ("随便" read as a link request) it is an answer that did not fit,
            # but where the step offers a choice, asking again ("那我自己那笔提现呢") is
            # answered afresh: the choices again, or the only one there is.
            choosing = step is not None and step.slot == Slot.CHOICE
            return await flow.start(ctx) if ctx.entities or choosing else None
        accepted = dict(step.accepts).get(label) if step is not None else None
        if accepted is not None and read_amount(text) is None:
            # "sure, send a new link" at the offer of one: the offer taken, as if pressed.
            # With an amount said ("那给他发个35块的收款链接") it is a request of its own,
            # confirmed with that amount like any other.
            ctx.argument = accepted
            result = await flow.resume(ctx, state)
            if result is not UNHANDLED:
                return result
        if label == Label.HANDOFF_HUMAN:
            outcome = await self._route(ctx)
            outcome.end_flow = True
            return outcome
        held = state.slots.get("order_no")
        same_order = held and read_order_no(text) is None
        if label in self._flow_labels and same_order and {label, flow.label} <= _ORDER_FLOWS:
            # "为什么失败" at the proof step of the payment check: the failure check of the
            # same order, which the open check hands over (the proof is still asked).
            order = Entity("order_no", str(held), 0, 0)
            ctx.parse = replace(parse, entities=(*parse.entities, order))
            outcome = await self._route(ctx)
            outcome.end_flow = outcome.end_flow or outcome.flow is None
            return outcome
        if label in self._flow_labels:
            outcome = await self._route(ctx)
            if step is not None and step.optional:
                # Past an offer the user may leave, the first flow is done: nothing to go
                # back to.
                outcome.end_flow = outcome.end_flow or outcome.flow is None
                return outcome
            outcome.suspend = state
            return outcome
        return None

    @staticmethod
    def back(ctx: Context, flow: Flow, state: FlowState, outcome: Outcome) -> Outcome:
        """The digression answered, then the open question again."""
        outcome.replies.append(flow.prompt(ctx, state, "dialogue/back_to_flow"))
        outcome.flow = state
        outcome.end_flow = False
        return outcome

    async def take_back(self, ctx: Context, frame: SuspendedFrame) -> Outcome:
        """ "no wait, I didn't mean to cancel", "还是要吧，100块的" right after a cancel: the
        flow back where it was, with the new value if the message gives one."""
        state = frame_state(frame)
        flow = self._flows[state.name]
        for step in (flow.correct, flow.resume):
            result = await step(ctx, state)
            if result is not UNHANDLED:
                return result
        return Outcome([flow.prompt(ctx, state, "dialogue/back_to_flow")], flow=state)

    async def into_suspended(self, ctx: Context, text: str) -> Outcome | None:
        """A value alone ("300", an order number) while a suspended flow is offered back, and
        it is what that flow's open step asks: the flow taken up again with it."""
        state = frame_state(ctx.conversation.suspended[-1])
        flow = self._flows.get(state.name)
        step = flow.steps.get(state.step) if flow is not None else None
        if flow is None or step is None or step.slot not in _VALUE_SLOTS:
            return None
        order_no, withdrawal = read_order_no(text), read_withdrawal_id(text)
        alone = (
            _LONE_NUMBER.match(fold(text)) is not None
            or ((order_no or withdrawal) and len(_rest(text, order_no, withdrawal)) <= _SHORT_REST)
            # "一百二", "45块5": an amount in words, where the flow waits for one.
            or (
                step.slot == Slot.AMOUNT
                and read_amount(text) is not None
                and len(strip_punctuation(fold(text)).strip()) <= _SHORT_REST
            )
        )
        if not alone:
            return None
        result = await flow.resume(ctx, state)
        if result is UNHANDLED:
            return None
        result.resume_suspended = True
        return result

    async def without_flow(self, ctx: Context, text: str) -> Outcome | None:
        """Entity-first routing; None when the words should decide."""
        number = _LONE_NUMBER.match(fold(text))
        order_no = read_order_no(text)
        if number is not None and order_no is None:
            if self._signing_off(ctx, text):
                return None
            return self._what_number(ctx, number.group(1))
        withdrawal = read_withdrawal_id(text)
        if order_no is None and withdrawal is None:
            return None
        parse = self._parse(ctx, text)
        # A greeting or a goodbye around an entity ("hi, ... BT...", "what is going on with
        # BT..." leaning to bye) is not what the message is about: the entity is.
        clear = (
            parse.label != Label.OUT_OF_SCOPE
            and parse.label not in CHITCHAT_LABELS
            and parse.score >= SWITCH_SCORE
        )
        rest = _rest(text, order_no, withdrawal)
        words = ctx.knowledge.words
        claims = not ctx.identity.is_merchant and words.contains("i_am_merchant", text)
        if order_no is not None and claims:
            # "我是商家 订单BT…022 失败了" in an unbound chat: the check a customer gets (with
            # its proof) and how to bind; the request is kept and taken up once the chat binds,
            # as the merchant's.
            failed = ctx.knowledge.requests.has("failed", marker_key(text))
            label = Label.DIAGNOSE_PAYMENT_FAILURE if failed else Label.STATUS_PAYMENT
            outcome = await self._flows[self._flow_labels[label]].start(ctx)
            outcome.replies.append(ctx.say("bind/how"))
            outcome.pending = PendingRequest(label=label.value, text=ctx.message.text)
            return outcome
        if order_no is not None and ctx.knowledge.requests.has("failed", marker_key(text)):
            # "扫了三遍都付不了 BT…", "customer cant pay, order BT…": the order and that its
            # payment failed say what is asked, however upset or long the words around them.
            return await self._flows[self._flow_labels[Label.DIAGNOSE_PAYMENT_FAILURE]].start(ctx)
        if order_no is not None:
            if ctx.identity.is_merchant:
                # A merchant asking whether its own order is paid, or what is going on with
                # it, gets the whole summary (so does a record pasted from the back office,
                # "Order No.: BT… | Amount: 128.00"); another flow or a long question of its
                # own decides.
                summary = parse.label == Label.STATUS_PAYMENT or _pasted(text)
                own = parse.label in _MERCHANT_ORDER_LABELS or (
                    len(rest) > _SHORT_REST and _about_more(parse)
                )
                if clear and not summary and own:
                    return None
                return await order_summary(ctx, order_no)
            # A customer's order number is about that customer's payment, however it is told
            # ("I paid for BT... but the shop says nothing arrived" leans to the merchant's
            # data-sync check): only why it failed, or a long message about something else,
            # decides by its words.
            elsewhere = (
                parse.label not in _ORDER_LABELS
                and parse.label not in _MERCHANT_ONLY
                and len(rest) > _SHORT_REST
                and _about_more(parse)
                and not _pasted(text)
            )
            if clear and (parse.label == Label.DIAGNOSE_PAYMENT_FAILURE or elsewhere):
                return None
            return await self._flows[self._flow_labels[Label.STATUS_PAYMENT]].start(ctx)
        # "actually one thing, W0001 status?" leans to the payment check, which is about an
        # order this message does not name: the withdrawal it names decides.
        about_order = parse.label in _ORDER_LABELS
        # "W0001 when is that gonna arrive" leans to how withdrawals work: with its id, it is
        # about that one withdrawal.
        about_withdrawals = parse.label in (Label.STATUS_WITHDRAWAL, Label.WITHDRAW_HOW)
        if clear and not about_withdrawals and not about_order and len(rest) > _SHORT_REST:
            return None
        return await self._flows[self._flow_labels[Label.STATUS_WITHDRAWAL]].start(ctx)

    def _signing_off(self, ctx: Context, text: str) -> bool:
        """ "88" (拜拜) right after a thanks or a goodbye is one more goodbye, not a number to
        ask about; as a first message, or after anything else, it may be an amount."""
        if ctx.conversation.last_label not in CLOSING_LABELS:
            return False
        parse = self._parse(ctx, text)
        return parse.label == Label.CHITCHAT_BYE and parse.score >= PLEASANTRY_SCORE

    @staticmethod
    def _what_number(ctx: Context, number: str) -> Outcome:
        buttons = [Button(ctx.ui("number_order"), "intent:status.payment")]
        amount = read_amount(number)
        as_amount = ctx.identity.is_merchant and amount is not None
        if as_amount:
            buttons.append(Button(ctx.ui("number_amount", amount=str(amount)), f"pay:{amount}"))
        buttons.append(ctx.human_button())
        # Six digits from a chat with no merchant bound may be the back office's bind code.
        as_code = not ctx.identity.is_merchant and len(number) == 6 and number.isdigit()
        reply = ctx.say(
            "dialogue/what_number", *buttons, number=number, as_amount=as_amount, as_code=as_code
        )
        return Outcome([reply])


# The last words of a message, after its last punctuation or space: "行吧 我让顾客查下 谢谢".
_LAST_WORDS = re.compile(r"[\s,，。.!！?？~～]+")

# Where a message's first clause ends: a comma or the end of a sentence.
_CLAUSE_END = re.compile(r"[,，。.!！?？~～]+")


def thanks_at_end(matcher: Matcher, text: str) -> bool:
    """The message ends by thanking ("fine. thanks", "行吧 我让顾客查下银行流水 谢谢") and asks
    nothing after it."""
    parts = [p for p in _LAST_WORDS.split(text.strip()) if p]
    if len(parts) < 2 or text.rstrip().endswith(("?", "？")):
        return False
    last = matcher.parse(parts[-1])
    return last.label == Label.CHITCHAT_THANKS and last.score >= PLEASANTRY_SCORE


def _declined_first(ctx: Context, text: str) -> bool:
    """The message opens with a no that declines ("no thanks", "不用了": not a bare "不是" or
    "no", which lead a correction as often) and nothing else in its first clause, and gives
    no value or correction after it ("不是，手机号是5678" corrects; "不记得了" is no no)."""
    parts = _CLAUSE_END.split(text.strip(), maxsplit=1)
    words = ctx.knowledge.words
    if len(parts) < 2 or not parts[1].strip() or not words.means("no", parts[0]):
        return False
    if few(parts[0], 1, 2):
        return False
    if any(ch.isdigit() for ch in text):
        return False
    return not words.contains("correction", text)


def _declines(ctx: Context, text: str) -> bool:
    """A no, or a no that explains itself ("不用再发链接了", "no, not now"), but not a
    correction ("不对，是260")."""
    words = ctx.knowledge.words
    meaning = read_yes_no(text, words)
    if meaning is not None:
        return not meaning
    explained = words.leads("no", text) and read_amount(text) is None
    # "不对，是260" corrects; "no thanks actually i remembered it" (no new value) declines.
    return explained and not (words.contains("correction", text) and ctx.entities)


def _leaning_question(ctx: Context, text: str, parse: Parse) -> Parse:
    """A question asked inside a flow that the NLU finds between two topics of the knowledge
    ("这个链接顾客要怎么付款啊": how customers pay, or how links work) is answered from the
    nearer one: the open question comes right after, so a near miss costs little, and asking
    again instead would read as not listening."""
    best = parse.alternatives[0] if parse.alternatives else None
    if best is None or not best.label.is_faq or not is_question(ctx, text):
        return parse
    ctx.parse = replace(parse, label=best.label, score=best.score, reason=None)
    return ctx.parse


def frame_state(frame: SuspendedFrame) -> FlowState:
    """A flow kept aside (suspended, or just cancelled) as its handlers see it."""
    return FlowState(str(frame["flow"]), str(frame["step"]), dict(frame.get("slots") or {}))


def _offered_picks(state: FlowState) -> bool:
    """The open step offered options to pick on buttons (the recent failed orders)."""
    buttons = prompt_of(state.slots).get("buttons", [])
    return any(action.startswith("flow:") for _, action in buttons)


def _offered_yes(state: FlowState) -> str | None:
    """The argument of the yes button the open step offered ("confirm:yes")."""
    for _, action in prompt_of(state.slots).get("buttons", []):
        if action.startswith("flow:") and action.endswith(":yes"):
            return action.removeprefix("flow:")
    return None


def _agrees(ctx: Context, text: str) -> bool:
    """A yes said twice over, the second naming what it agrees to, with no no, cancel,
    correction, question or new value: "好的 确认重置", "ok go ahead and send it" (but not
    "好贵啊": a yes word leading a remark is no yes)."""
    words = ctx.knowledge.words
    rest = words.after_lead("yes", text)
    if not rest or not words.leads("yes", rest):
        return False
    if read_amount(text) is not None or ctx.entities:
        return False
    return not any(
        words.contains(kind, text) for kind in ("no", "cancel", "correction", "question")
    )


def is_question(ctx: Context, text: str) -> bool:
    """A question mark, a question word, or a Chinese question that ends in its "not"
    ("手续费能加到价格里让客人出不", "到了没")."""
    if "?" in text or "？" in text or ctx.knowledge.words.contains("question", text):
        return True
    return strip_punctuation(fold(text)).strip().endswith(_A_NOT_A)


def _about_more(parse: Parse) -> bool:
    """Words beside an order number that say more than the order: another flow, or a
    question the knowledge answers clearly ("BT… 手续费怎么算"); not a topic the matcher only
    leans to ("what happened with BT…" near risk control)."""
    return not parse.label.is_faq or parse.score >= CLEAR_QUESTION_SCORE


def _attempt(slot: Slot, text: str) -> bool:
    """A message that tries to give the step's value and gets it wrong ("BT20261126" for an
    order number): an answer to ask again, not a new subject."""
    pattern = _ATTEMPTS.get(slot)
    return pattern is not None and pattern.search(fold(text)) is not None


def _pasted(text: str) -> bool:
    """A record copied from a table or the back office: several "field: value" pairs."""
    return len(_FIELD.findall(text)) >= _PASTED_FIELDS


def _rest(text: str, order_no: str | None, withdrawal: str | None) -> str:
    """The message without its order number or withdrawal id, spaces and punctuation."""
    rest = ORDER_NO.sub(" ", fold(text))
    rest = WITHDRAWAL_ID.sub(" ", ORDER_DIGITS.sub(" ", rest))
    return strip_punctuation(rest).replace(" ", "")

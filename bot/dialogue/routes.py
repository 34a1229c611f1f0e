"""Which handler a message goes to: buttons, typed answers to buttons, fixed words, the policy.

In order: a button's action (or a typed answer that means one of the offered buttons: yes/no,
a number or ordinal, its label), a command or fixed word (cancel, back to the bot, a language,
a bind code), "I don't understand" (`unclear`), and then the dialogue policy
(`bot/dialogue/policy.py`) with or without a flow open; the NLU's label goes through the
routing registry (`bot/routing.py`). Everything here returns an `Outcome`; nothing writes.
Follow-ups about the record the last reply showed are `bot/dialogue/follow_ups.py`'s.

Over 400 lines: the order of the routes is the design (a typed answer before a fixed word
before the policy), and it reads best as one `route` with its small helpers beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bot.context import ASKED_CODE, Context, FlowState, Identity, Outcome
from bot.diagnostics.registry import FLOWS
from bot.dialogue.events import CANCELLED, OFFERED
from bot.dialogue.follow_ups import UPSET_FLOOR, FollowUps, asked_not_said, lifted
from bot.dialogue.policy import (
    PLEASANTRY_SCORE,
    DialoguePolicy,
    frame_state,
    is_question,
    thanks_at_end,
)
from bot.dialogue.two_questions import second_question
from bot.faq.knowledge import Knowledge
from bot.handlers.binding import asked_code_in, bind_code_in
from bot.handlers.commands import language_word
from bot.handlers.fallback import fallback
from bot.handlers.faq import unclear
from bot.handlers.tone import calm, tone_of
from bot.nlu.language import detect_language
from bot.nlu.matcher import TOPIC_REFUSALS, Matcher
from bot.nlu.normalize import fold, strip_punctuation
from bot.nlu.values import (
    read_amount,
    read_order_no,
    read_position,
    read_yes_no,
)
from bot.nlu.words import Words, few
from bot.routing import UNHANDLED, Handler, Result, Router
from bot.types import CHITCHAT_LABELS, Alternative, Label, Language, Parse

# How far behind the NLU's label a flow's label may be, and how sure at least, for an upset
# merchant's message to be read as about its own data.
UPSET_MARGIN = 0.08
# Below this score a vague message ("上次那个 你懂的") is not taken for the topic it leans to;
# for a pleasantry, below this one.
VAGUE_SCORE = 0.4
# How far behind a merchant's flow a customer's may be, for a chat with no merchant bound.
CUSTOMER_MARGIN = 0.05
_MERCHANT_FLOWS = frozenset(
    {Label.DIAGNOSE_DATA_SYNC, Label.DIAGNOSE_LOGIN, Label.STATUS_WITHDRAWAL}
)
_CUSTOMER_FLOWS = frozenset({Label.STATUS_PAYMENT, Label.DIAGNOSE_PAYMENT_FAILURE})
# A message that only names an action: at most this many English words or Chinese characters.
_NAMED_WORDS = 3
_NAMED_CHARS = 6
# A short message: at most this many English words or characters.
_SHORT_WORDS = 8
_SHORT_CHARS = 16
# The buttons that pick one record, labelled with its amount, and how short a message that
# picks one by its amount is ("88.5那笔", "the 1000 one").
_PICKS = ("flow:order:", "flow:pick:")
_PICK_WORDS = 5
_PICK_CHARS = 9
# What a question about the bot itself may say around it ("wait, are you a real person or a bot?").
_ASK_WORDS = 12
_ASK_CHARS = 24
# A short message that goes back to a suspended flow in passing: at most this many words or
# characters, in phrases at least this long ("go back", "回到"; not "back").
_RESUME_WORDS = 8
_RESUME_CHARS = 10
_RESUME_SHORTEST = 2
_FLOW_LABELS = frozenset(flow.label for flow in FLOWS.values() if flow.name != "ticket")
# The words of a tone, which may stand together in a message that says only how it feels.
_TONE = ("upset", "urgent", "complaint")
# More buttons than a reply ever offers (a typed number up to this is a button's number),
# in a message this short ("2", "第二个").
_MAX_BUTTONS = 10
_PLAIN_WORDS = 2
_PLAIN_CHARS = 4
# Where a clause of a chatty message ends.
_CLAUSE_END = re.compile(r"[，。！？,.!?~～；;\n]+")
_COMMAND = re.compile(r"^/([a-z_]+)(?:@\w+)?(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    argument: str = ""


class Routes:
    """The message's route to a handler; `people`: an escalation service is there to take
    cancelled tickets back."""

    def __init__(
        self, knowledge: Knowledge, matcher: Matcher, router: Router, *, people: bool
    ) -> None:
        self.knowledge = knowledge
        self.matcher = matcher
        self.router = router
        self.people = people
        self.policy = DialoguePolicy(FLOWS, matcher, self.route_label)
        self.follow_ups = FollowUps(knowledge, matcher, self._act)

    async def _act(self, ctx: Context, action: str, argument: str) -> Outcome:
        """A button's handler run as if pressed with `argument` (a follow-up's own route)."""
        return await self._run(ctx, _Route(self.router.actions[action], argument))

    async def route(self, ctx: Context) -> Outcome:
        state = flow_state(ctx)
        action = ctx.message.action or self._typed_button(ctx)
        typed = action is not None and not ctx.message.action
        if typed and state is not None and not self._plain_answer(ctx.message.text):
            # "no sorry the cashier one wang_cashier" at a confirmation: a no that gives the
            # value instead corrects it (the confirmation asks again with it); so does a yes
            # that names another one ("ok then reset li" while li_risk is asked about).
            corrected = await FLOWS[state.name].correct(ctx, state)
            if corrected is not UNHANDLED:
                return corrected
        if action:
            return await self._route_action(ctx, action, state)
        text = ctx.message.text.strip()
        if not text.startswith("/"):
            # The reply is in the message's language, whatever route it takes ("hi, the bind
            # code for my shop is 482931" is answered in English).
            self._detect_language(ctx, text)
        explicit = self._explicit_text_route(
            text, ticket_open=state is not None and state.name == "ticket"
        )
        code = self._code_answer(ctx, text, state) if explicit is None else None
        if code is not None:
            explicit = _Route(self.router.commands["bind"], code)
        if explicit is not None:
            return await self._run(ctx, explicit)
        if not text:
            return Outcome([ctx.say("empty")])
        ticket = state is not None and state.name == "ticket"
        words = self.knowledge.words
        if not ticket and few(text, _ASK_WORDS, _ASK_CHARS) and words.contains("ask_bot", text):
            # "are you a real person or a bot?": said plainly, with the way to a person, and
            # the open question again (asking what the bot is is not asking for a person).
            told = Outcome([ctx.say("dialogue/who_i_am", ctx.human_button())])
            return self.policy.back(ctx, FLOWS[state.name], state, told) if state else told
        if not ticket and words.contains("to_person", text):
            # "两边状态不一样，帮我转人工": a person asked for in so many words, whatever the
            # rest of the message is about (in the message's language).
            return await self._run(ctx, _Route(self.router.commands["human"]))
        # An upset or urgent message is read for what it asks; its tone gets the
        # acknowledgement (`bot/handlers/tone.py`).
        asked = calm(self.knowledge.words, text)
        if self.knowledge.words.means("unclear", asked, along=("about_reply",)):
            # "这个回答我没看懂", "what does that mean": in a flow, its question again with an
            # example; after an answer, what it was about and where to go from there.
            if state is not None:
                return FLOWS[state.name].retry(ctx, state, unclear=True)
            return unclear(ctx)
        if _asks_help(words, asked):
            # "what can you do?", "你能帮我做什么": what the bot does, then the open question.
            helped = Outcome([ctx.say("help", ctx.human_button())])
            return self.policy.back(ctx, FLOWS[state.name], state, helped) if state else helped
        if words.means("apology", text, along=("yes",)):
            # "ok. sorry for shouting", "刚才不好意思": taken in kindly, and the open question
            # again (an apology is not a question the bot missed).
            kind = Outcome([ctx.say("dialogue/no_worries")])
            return self.policy.back(ctx, FLOWS[state.name], state, kind) if state else kind
        if self._only_tone(text):
            # "烦死了" alone: the acknowledgement (the turn adds it), what would help, and the
            # way to a person; it asks nothing the bot missed.
            told = Outcome([ctx.say("dialogue/what_is_wrong", ctx.human_button())])
            return self.policy.back(ctx, FLOWS[state.name], state, told) if state else told
        if state is not None:
            return await self.policy.in_flow(ctx, state, asked)
        two = second_question(words, self.matcher, asked, ctx.conversation.language)
        if two is None:
            return await self._without_flow(ctx, asked)
        first, second = two
        outcome = await self._without_flow(ctx, first)
        return await self._also_answered(ctx, outcome, second)

    async def _also_answered(self, ctx: Context, outcome: Outcome, second: Parse) -> Outcome:
        """The second question of the message answered after the first one's reply (the
        turn stays the first question's: its label, its flow)."""
        first = ctx.parse
        ctx.parse = second
        also = await self.route_label(ctx)
        if not outcome.solved and outcome.flow is None:
            # The first part understood by nothing: the second is the question answered.
            return also
        ctx.parse = first
        outcome.replies.extend(also.replies)
        return outcome

    async def _without_flow(self, ctx: Context, asked: str) -> Outcome:
        """A message with no flow open: a take-back, a plain yes, a suspended flow's return,
        a follow-up about the last record, an entity, then the NLU's label."""
        words = self.knowledge.words
        cancelled = ctx.conversation.slots.get(CANCELLED)
        if cancelled and words.contains("take_back", asked):
            # "no wait, I didn't mean to cancel": the flow just cancelled, back where it was.
            return await self.policy.take_back(ctx, cancelled)
        if words.means("yes", asked) and not self._small_talk(asked) is not None:
            # "ok", "好", "ya" with nothing asked: taken in, not a question the bot missed
            # ("好的谢谢" is a thanks).
            return Outcome([ctx.say("dialogue/okay")])
        if ctx.conversation.suspended and _offered(ctx, "resume:yes"):
            resumed = await self.policy.into_suspended(ctx, asked)
            if resumed is not None:
                return resumed
        number = await self.follow_ups.what_number_was(ctx, asked)
        if number is not None:
            return number
        asked, about = await self.follow_ups.about_subject(ctx, asked)
        if about is not None:
            return about
        entity_first = await self.policy.without_flow(ctx, asked)
        if entity_first is not None:
            return entity_first
        ctx.parse = self.matcher.parse(asked, ctx.conversation.language)
        if tone_of(ctx) is not None:
            ctx.parse = _own_data(ctx.parse, merchant=ctx.identity.is_merchant)
        if ctx.identity.is_merchant:
            ctx.parse = self._named_action(ctx, asked, ctx.parse)
        elif not self.knowledge.words.contains("merchant_side", asked):
            ctx.parse = _customers_view(ctx.parse)
        ctx.parse = self._vague(asked, ctx.parse)
        ctx.parse = self.follow_ups.after_answer(ctx, asked, ctx.parse)
        ctx.parse = asked_not_said(ctx, asked, ctx.parse)
        unplaced = ctx.parse.label == Label.OUT_OF_SCOPE and ctx.parse.reason not in TOPIC_REFUSALS
        if unplaced and thanks_at_end(self.matcher, asked):
            # "fine. thanks": words the matcher places nowhere, then a thanks.
            ctx.parse = replace(ctx.parse, label=Label.CHITCHAT_THANKS, reason=None)
        if not ctx.conversation.language_pinned:
            ctx.language = ctx.parse.language
        return await self.route_label(ctx)

    @staticmethod
    def _detect_language(ctx: Context, text: str) -> None:
        if not ctx.conversation.language_pinned and (
            language := detect_language(fold(text), current=Language(ctx.conversation.language))
        ):
            ctx.language = language

    def _named_action(self, ctx: Context, text: str, parse: Parse) -> Parse:
        """A bound merchant who only names what the bot can do for it ("payment link",
        "链接收款") asks for it: the topic's action (`knowledge/requests.yaml`, a request
        move), not the topic's explanation, which a question ("how do links work") gets."""
        move = self.knowledge.requests.moves.get(parse.label)
        if move is None or move.kind != "request" or parse.reason is not None:
            return parse
        short = few(text, _NAMED_WORDS, _NAMED_CHARS)
        if not short or self.knowledge.words.contains("question", text) or "?" in text:
            return parse
        return replace(parse, label=move.target)

    def _small_talk(self, text: str) -> Label | None:
        """The pleasantry a short answer is ("好的谢谢" a thanks, "fine. thanks" too: its
        last words thank), or None."""
        label = self.matcher.parse(text).label
        if label in CHITCHAT_LABELS:
            return label
        return Label.CHITCHAT_THANKS if thanks_at_end(self.matcher, text) else None

    def _vague(self, text: str, parse: Parse) -> Parse:
        """ "就是那个啊 上次那个 你懂的", "the thing from yesterday, u know what i mean": a
        message that points at something the bot cannot see is not guessed at from a topic
        the matcher only leans to; it is an honest "I don't know what you mean" (a bot
        failure: the second in a row offers a person)."""
        if parse.label == Label.OUT_OF_SCOPE or parse.score >= _vague_score(parse.label):
            return parse
        if not self.knowledge.words.contains("vague", text):
            return parse
        alternatives = (Alternative(parse.label, parse.score), *parse.alternatives)[:3]
        return replace(parse, label=Label.OUT_OF_SCOPE, alternatives=alternatives, reason="vague")

    async def route_label(self, ctx: Context) -> Outcome:
        assert ctx.parse is not None
        handler = self.router.for_label(ctx.parse.label)
        if handler is None:
            return fallback(ctx)
        return await self._run(ctx, _Route(handler))

    async def after_binding(self, ctx: Context, outcome: Outcome) -> Outcome:
        """A chat that just bound takes up the request it was refused for want of a binding;
        the flows of its old identity end."""
        if outcome.bind_merchant is None:
            # The flows keep a request they refused (`Flow.bind_first`); one that went on
            # without a binding (a reset by login name) and is done needs no taking up.
            pending = ctx.conversation.pending
            view = ctx.conversation
            if pending and outcome.pending is None and view.flow in FLOWS:
                done = outcome.flow is None and (outcome.end_flow or view.flow is None)
                if done and FLOWS[view.flow].label.value == pending["label"]:
                    outcome.forget_pending = True
            return outcome
        outcome.end_flow = True
        outcome.resume_suspended = False
        pending = ctx.conversation.pending
        outcome.forget_pending = True
        if not pending:
            return outcome
        merchant = Identity("merchant", outcome.bind_merchant)
        again = ctx.saying(pending["text"], merchant)
        again.parse = self.matcher.parse(again.message.text, ctx.conversation.language)
        handler = self.router.for_label(Label(pending["label"]))
        if handler is None:
            return outcome
        resumed = await self._run(again, _Route(handler))
        outcome.replies += [ctx.say("bind/resumed"), *resumed.replies]
        outcome.flow, outcome.end_flow = resumed.flow, resumed.flow is None
        outcome.findings.update(resumed.findings)
        return outcome

    async def _route_action(self, ctx: Context, action: str, state: FlowState | None) -> Outcome:
        if action.startswith("#"):
            # A button whose action was too long for the channel travels as its index.
            offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
            index = action[1:]
            if not index.isdigit() or not 0 <= int(index) < len(offered):
                return Outcome([ctx.say("stale_action")])
            action = offered[int(index)][1]
        prefix, _, argument = action.partition(":")
        if prefix == "resume":
            return _resume(ctx, argument == "yes")
        if action == "dialogue:continue":
            return Outcome([ctx.say("dialogue/continue")])
        if prefix == "flow":
            if state is None:
                return Outcome([ctx.say("stale_action")])
            ctx.argument = argument
            result = await FLOWS[state.name].resume(ctx, state)
            return result if result is not UNHANDLED else Outcome([ctx.say("stale_action")])
        handler = self.router.actions.get(prefix)
        if handler is None:
            return Outcome([ctx.say("stale_action")])
        return await self._run(ctx, _Route(handler, argument))

    def _code_answer(self, ctx: Context, text: str, state: FlowState | None) -> str | None:
        """A bind code sent on its own or with a few words ("482913", "找到了 482913") by a
        chat that was just asked for one: a request was refused for want of a binding, and no
        flow is open but the one that asked (a reset by login name goes on while the binding
        is offered)."""
        pending = ctx.conversation.pending
        if ctx.identity.is_merchant:
            return None
        if pending is None:
            # Right after a wrong code or how to find one: "sorry typo, 482913".
            asked = state is None and ctx.conversation.slots.get(ASKED_CODE)
            return asked_code_in(text) if asked else None
        if state is not None and FLOWS[state.name].label.value != pending["label"]:
            return None
        return asked_code_in(text)

    def _explicit_text_route(self, text: str, *, ticket_open: bool = False) -> _Route | None:
        """Commands, language words, cancel words and bind codes: never read as anything else."""
        command = _COMMAND.match(text)
        if command:
            handler = self.router.commands.get(command.group(1).lower())
            return _Route(handler or _unknown_command, (command.group(2) or "").strip())
        language = language_word(text, self.knowledge.words)
        if language is not None:
            return _Route(self.router.commands["lang"], language.value)
        words = self.knowledge.words
        # "那不留言了，返回机器人": while writing to staff, going back is said in passing ("call me
        # back" is a message, not "back").
        if words.back_to_bot(text, in_passing=ticket_open):
            return _Route(_back_to_bot)
        if words.means("cancel", text, along=("no",)):
            # "算了不要了": a cancel said with a no beside it is still a cancel.
            # Cancelling the message being written for staff cancels the handoff it is for.
            ticket = ticket_open and self.people
            return _Route(_back_to_bot) if ticket else _Route(self.router.commands["cancel"])
        if ticket_open:
            # The message for staff is free text: "我的店铺怎么绑定不了" is what they will read.
            return None
        code = bind_code_in(text)
        if code is not None:
            return _Route(self.router.commands["bind"], code)
        if words.contains("bind_how", text):
            # "去哪找绑定码", "how do I link this chat to my shop?": how to bind, and where;
            # "482913 is my bind code" is the code itself.
            return _Route(self.router.commands["bind"], asked_code_in(text) or "")
        return None

    async def _run(self, ctx: Context, route: _Route) -> Outcome:
        ctx.argument = route.argument
        result: Result = await route.handler(ctx)
        if result is not UNHANDLED:
            return result
        if ctx.message.action:
            return Outcome([ctx.say("stale_action")])
        return fallback(ctx)

    def _yes_to_offer(self, ctx: Context, text: str, offered: list[list[str]]) -> str | None:
        """ "行，再发一个", "ok send another one" at the offer of a new link: a yes followed by
        the request the open step takes as its yes (`Step.accepts`); "行吧 我让顾客查下银行流水
        谢谢" agrees to nothing offered."""
        state = flow_state(ctx)
        step = FLOWS[state.name].steps.get(state.step) if state is not None else None
        rest = self.knowledge.words.after_lead("yes", text)
        if step is None or not rest or read_amount(text) is not None or is_question(ctx, text):
            return None
        parse = self.matcher.parse(rest, ctx.conversation.language)
        accepts = dict(step.accepts)
        # After a yes, the offer's request among the two nearest topics is enough ("sure, send
        # them a new one" leans to a new password about as much as to a new link).
        nearest = [(a.label, a.score) for a in parse.alternatives]
        if parse.label != Label.OUT_OF_SCOPE:
            nearest.insert(0, (parse.label, parse.score))
        for label, score in nearest[:2]:
            accepted = accepts.get(label)
            if accepted is not None and score >= _YES_REQUEST_SCORE:
                action = f"flow:{accepted}"
                return action if any(a == action for _, a in offered) else None
        return None

    def _plain_answer(self, text: str) -> bool:
        """A yes or no word, or a button's number ("2"): an answer that says nothing else, so
        there is nothing in it to correct the open step with."""
        if read_yes_no(text, self.knowledge.words) is not None:
            return True
        numbered = read_position(text, _MAX_BUTTONS) is not None
        return numbered and few(text, _PLAIN_WORDS, _PLAIN_CHARS)

    def _only_tone(self, text: str) -> bool:
        """The message only says how the user feels: "烦死了", "ugh this is so annoying"."""
        words = self.knowledge.words
        return words.means("upset", text, along=_TONE) or words.means("urgent", text, along=_TONE)

    def _request_for_button(self, ctx: Context, text: str, offered: list[list[str]]) -> str | None:
        """ "好的 同步一下", "sync it", "那看看为什么失败" under an order's summary: a short
        request (after a yes, if any) for what exactly one offered button does presses it."""
        words = self.knowledge.words
        prefixes = tuple(prefix for prefix, _ in _BUTTON_REQUESTS)
        if not any(action.startswith(prefixes) for _, action in offered):
            return None  # (most replies offer none of these: no parse for them)
        if not _short(text) or read_amount(text) is not None or read_order_no(text):
            return None
        if words.contains("to_person", text):
            return None  # "两边状态不一样，帮我转人工" asks for a person, not the button
        rest = words.after_lead("yes", text) or text
        parse = self.matcher.parse(rest, ctx.conversation.language)
        if parse.label == Label.OUT_OF_SCOPE or parse.score < _YES_REQUEST_SCORE:
            return None
        pressed = [
            action
            for _, action in offered
            for prefix, label in _BUTTON_REQUESTS
            if action.startswith(prefix) and label == parse.label
        ]
        return pressed[0] if len(pressed) == 1 else None

    def _typed_button(self, ctx: Context) -> str | None:
        """The offered button a typed answer means: its number, its label, or yes/no."""
        offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
        if not offered:
            return None
        text = ctx.message.text
        words = self.knowledge.words
        if any(a == "resume:yes" for _, a in offered) and _resumes(words, text):
            # "yes pls go back", "回到刚才那个", "ya back to the link": the offer to take the
            # flow up again.
            return "resume:yes"
        meaning = read_yes_no(text, words)
        if meaning is not None:
            # A yes answers the open question (a flow's, or the offer to resume one), never
            # the "was this helpful?" buttons under an answer given on the way.
            wanted = ":yes" if meaning else ":no"
            answers = [a for _, a in offered if a.endswith(wanted)]
            first = [a for a in answers if a.startswith(("flow:", "resume:"))]
            rest = [a for a in answers if not a.startswith("fb:")]
            if first or rest:
                return (first or rest)[0]
            if answers and not (meaning and self._small_talk(text) == Label.CHITCHAT_THANKS):
                # A bare "yes" under "was this helpful?" votes; "好吧，谢谢" thanks.
                return answers[0]
            # "好的" to "would you like a person?" (the offer's button keeps its reason).
            offer = [a for _, a in offered if a.startswith("human:")]
            if meaning and offer:
                return offer[0]
        if meaning is None and words.leads("yes", text):
            taken = self._yes_to_offer(ctx, text, offered)
            if taken is not None:
                return taken
        asked = self._request_for_button(ctx, text, offered)
        if asked is not None:
            return asked
        # "不用再发链接了": a no that explains itself; but "不对，是260" corrects.
        explained_no = meaning is None and words.leads("no", text) and read_amount(text) is None
        if explained_no and not words.contains("correction", text):
            no = [a for _, a in offered if a.endswith(":no") and a.startswith(("flow:", "resume:"))]
            if no:
                return no[0]
        # "第二个" counts among the open question's own options (a flow's buttons), not the
        # "was this helpful?" and related-question buttons of an answer given on the way.
        own = [
            pair
            for pair in offered
            if pair[1].startswith("flow:") and not pair[1].startswith("flow:more")
        ] or [pair for pair in offered if not pair[1].startswith(_NOT_PICKED_BY_POSITION)]
        index = read_position(text, len(own))
        if index is not None:
            return own[index][1]
        picked = _by_amount(text, own)
        if picked is not None:
            return picked
        answer = strip_punctuation(fold(text))
        for label, action in offered:
            if answer and answer == strip_punctuation(fold(label)):
                return action
        return None


# The buttons under a record that a typed request presses, by what the request asks.
_BUTTON_REQUESTS = (
    ("order:sync:", Label.DIAGNOSE_DATA_SYNC),
    ("order:failure:", Label.DIAGNOSE_PAYMENT_FAILURE),
    ("reset:", Label.ACTION_PASSWORD_RESET),
)

# A request after a yes, read on its own, takes the offer it names at this score
# ("再发一个" alone leans to a new link only a little).
_YES_REQUEST_SCORE = 0.15

# Buttons that act rather than choose: "那第一个呢" under a login's result (reset, a person)
# asks about the first login listed before, not to reset this one.
_NOT_PICKED_BY_POSITION = ("reset:", "human")


def _by_amount(text: str, offered: list[list[str]]) -> str | None:
    """ "88.5那笔", "the 1000 one": the one order or withdrawal among the buttons whose label
    shows that amount ("000001 ¥88.50")."""
    amount = read_amount(text)
    if amount is None or not few(text, _PICK_WORDS, _PICK_CHARS):
        # ("先帮我生成个收款链接 一百二" asks for a link of that amount, not that order.)
        return None
    shown = f"¥{amount}"
    picks = [a for label, a in offered if a.startswith(_PICKS) and label.endswith(shown)]
    return picks[0] if len(picks) == 1 else None


def _vague_score(label: Label) -> float:
    """How sure the matcher must be for a vague message to keep its label: a pleasantry
    ("就那个，你知道的" leaning to thanks) is short and unmistakable when it is one."""
    return PLEASANTRY_SCORE if label in CHITCHAT_LABELS else VAGUE_SCORE


def _short(text: str) -> bool:
    """A message of a few words: what a fixed question ("what can you do") is asked in."""
    return few(text, _SHORT_WORDS, _SHORT_CHARS)


def _asks_help(words: Words, text: str) -> bool:
    """ "what can you do?" asked alone, or as the last clause of a message that first says who
    is asking ("刚注册的，不太会用，你能帮我做什么呀？")."""
    last = next((c for c in reversed(_CLAUSE_END.split(text)) if c.strip()), "")
    return any(_short(t) and words.contains("ask_help", t) for t in {text, last})


def _offered(ctx: Context, action: str) -> bool:
    offered: list[list[str]] = ctx.conversation.slots.get(OFFERED) or []
    return any(a == action for _, a in offered)


def _resumes(words: Words, text: str) -> bool:
    """Only words that take the flow up again ("yes pls go back"), or a short message that
    says so and names what it goes back to ("ya back to the link", "回到链接那个"), with no
    no or cancel in it."""
    if words.means("resume", text, along=("yes",)):
        return True
    short = few(text, _RESUME_WORDS, _RESUME_CHARS)
    refused = any(words.contains(kind, text) for kind in ("no", "cancel", "question"))
    return short and not refused and words.contains("resume", text, shortest=_RESUME_SHORTEST)


def _customers_view(parse: Parse) -> Parse:
    """A chat with no merchant bound, on a merchant's own-data flow with a customer's close
    behind ("i want to check if my payment went through": the order out of sync, or the
    payment's status), in words no merchant's side ("back office", "顾客"): the customer's,
    which needs no binding."""
    if parse.label not in _MERCHANT_FLOWS:
        return parse
    return lifted(parse, _CUSTOMER_FLOWS, CUSTOMER_MARGIN)


def _own_data(parse: Parse, *, merchant: bool) -> Parse:
    """An upset or urgent merchant asks about its own data: a flow's label close behind a
    general topic wins ("烦死了 提现呢！！" is this merchant's withdrawal, not how withdrawals
    work). A chat with no merchant bound that is upset about its withdrawal ("where is my
    money?? I asked for a withdrawal two days ago") is a merchant's too (customers do not
    withdraw): the withdrawal check, which tells the general fact and keeps the request for
    after a binding."""
    if parse.label in _FLOW_LABELS:
        return parse
    labels = _FLOW_LABELS if merchant else frozenset({Label.STATUS_WITHDRAWAL})
    return lifted(parse, labels, UPSET_MARGIN, floor=UPSET_FLOOR)


def flow_state(ctx: Context) -> FlowState | None:
    """The open flow, as its handlers see it (without the offered buttons)."""
    view = ctx.conversation
    if not view.flow or view.flow not in FLOWS or not view.flow_step:
        return None
    slots = {k: v for k, v in view.slots.items() if k != OFFERED}
    return FlowState(view.flow, view.flow_step, slots)


def _resume(ctx: Context, yes: bool) -> Outcome:
    """The offer to go back to the flow a digression suspended: taken, or declined."""
    if not ctx.conversation.suspended:
        return Outcome([ctx.say("stale_action")])
    frame = ctx.conversation.suspended[-1]
    state = frame_state(frame)
    flow = FLOWS[state.name]
    if not yes:
        reply = ctx.say("dialogue/resume_dropped", flow=ctx.ui(f"flow_{flow.name}"))
        return Outcome([reply], resume_suspended=False)
    reply = flow.prompt(ctx, state, "dialogue/back_to_flow")
    return Outcome([reply], flow=state, resume_suspended=True)


async def _back_to_bot(ctx: Context) -> Outcome:
    # An open ticket (the message being written) ends with the handoff it belongs to.
    return Outcome([], return_to_bot=True, end_flow=True)


async def _unknown_command(ctx: Context) -> Outcome:
    return Outcome([ctx.say("help", ctx.human_button())])

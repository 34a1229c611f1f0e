"""Agent assist: drafts for the reply to a chat's latest user message.

For the user's latest typed message, the two FAQ entries the bot's own matcher scores best
(the parse's label and its alternatives, at or above the matcher's `min_score`), each as the
entry's answer in the conversation's language, and the bot's incident notice when an incident
is open. The agent clicks one into the reply box, edits it and sends it; nothing is sent from
here. Only the conversation's own messages and the shared knowledge go in, so a draft never
carries anything from another chat (decision record 0023).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.escalation.agent_actions import ConversationDetail
from bot.faq.knowledge import Knowledge
from bot.incidents.store import OpenIncident
from bot.nlu.matcher import Matcher
from bot.render import Renderer
from bot.storage.models import Message
from bot.types import Alternative, Direction, Label, Language

# How many knowledge-base answers are offered: the agent reads them all before choosing.
SUGGESTED = 2

# The matcher and the knowledge the bot answers with right now (a published change swaps them).
Current = Callable[[], tuple[Matcher, Knowledge]]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One draft: an FAQ entry's answer (`entry_id`, `score`) or the incident notice."""

    kind: str  # "faq" or "incident"
    text: str
    # The entry's title in the conversation's language; the page names an incident itself.
    title: str
    entry_id: str | None = None
    score: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "text": self.text,
            "title": self.title,
            "entry_id": self.entry_id,
            "score": None if self.score is None else round(self.score, 3),
        }


@dataclass(frozen=True, slots=True)
class Assist:
    """The drafts for one message (`message_id`, None when the user has written nothing)."""

    message_id: int | None
    language: Language
    suggestions: tuple[Suggestion, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "language": self.language.value,
            "suggestions": [s.to_json() for s in self.suggestions],
        }


def latest_question(messages: Sequence[Message]) -> Message | None:
    """The user's latest typed message (a button press has no words to match)."""
    return next(
        (m for m in reversed(messages) if m.direction == Direction.IN and (m.text or "").strip()),
        None,
    )


def ranked_entries(
    matcher: Matcher, knowledge: Knowledge, text: str, language: Language
) -> list[Alternative]:
    """The FAQ entries the matcher scores for `text`, best first, above its cutoff.

    The parse's label counts with its score even when the bot refused it (too short, a tie):
    the agent judges; the cutoff still keeps a guess out."""
    parse = matcher.parse(text, fallback_language=language)
    candidates = [Alternative(parse.label, parse.score), *parse.alternatives]
    cutoff = matcher.config.min_score
    best: dict[Label, float] = {}
    for candidate in candidates:
        if candidate.label not in knowledge.entries or candidate.score < cutoff:
            continue
        best[candidate.label] = max(candidate.score, best.get(candidate.label, 0.0))
    ordered = sorted(best.items(), key=lambda kv: (-kv[1], kv[0].value))
    return [Alternative(label, score) for label, score in ordered]


class Assistant:
    def __init__(self, current: Current, renderer: Renderer) -> None:
        self._current = current
        self._renderer = renderer

    def suggest(self, detail: ConversationDetail) -> Assist:
        """The drafts for the conversation in `detail`, from its messages alone."""
        language = Language(detail.conversation.language)
        question = latest_question(detail.messages)
        if question is None:
            return Assist(None, language)
        matcher, knowledge = self._current()
        suggestions = [
            Suggestion(
                "faq",
                knowledge.entries[found.label].answer[language],
                knowledge.entries[found.label].title[language],
                found.label.value,
                found.score,
            )
            for found in ranked_entries(matcher, knowledge, question.text or "", language)[
                :SUGGESTED
            ]
        ]
        incidents: Sequence[OpenIncident] = detail.context.get("incidents") or ()
        if incidents:
            merchant = detail.identity is not None and detail.identity.kind == "merchant"
            suggestions.append(self._incident(incidents[0], language, merchant=merchant))
        return Assist(question.id, language, tuple(suggestions))

    def _incident(
        self, incident: OpenIncident, language: Language, *, merchant: bool
    ) -> Suggestion:
        """The line the bot itself says to a merchant starting a chat during the incident."""
        text = self._renderer.render(
            language,
            "incidents/notice",
            kind=incident.kind.value,
            key=incident.key,
            message=incident.message(language),
            merchant=merchant,
        )
        return Suggestion("incident", text, "")

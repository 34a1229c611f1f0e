"""What a handler receives (`Context`) and what it gives back (`Outcome`).

Handlers do not write to the database or send anything: they return an Outcome, and the engine
applies it in the message's one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.faq.knowledge import Knowledge
from bot.render import Renderer
from bot.settings import Settings
from bot.types import Button, IncomingMessage, Label, Language, Parse, Reply


@dataclass(slots=True)
class ConversationView:
    """A snapshot of the conversation as the handler sees it."""

    id: int
    channel: str
    chat_id: str
    state: str
    language: Language
    language_pinned: bool
    flow: str | None
    slots: dict[str, Any]
    failures: int
    last_label: str | None


@dataclass(slots=True)
class Outcome:
    """What should happen after a message; the engine stores and sends it."""

    replies: list[Reply] = field(default_factory=list)
    solved: bool = True
    language: Language | None = None
    pin_language: bool = False
    end_flow: bool = False
    feedback: tuple[Label, bool] | None = None
    unanswered: bool = False


@dataclass(slots=True)
class Context:
    message: IncomingMessage
    conversation: ConversationView
    language: Language
    knowledge: Knowledge
    renderer: Renderer
    settings: Settings
    parse: Parse | None = None
    argument: str = ""

    def say(self, template: str, *buttons: Button, **values: Any) -> Reply:
        return Reply(self.renderer.render(self.language, template, **values), tuple(buttons))

    def ui(self, key: str, **values: Any) -> str:
        return self.renderer.ui(self.language, key, **values)

    def human_button(self) -> Button:
        return Button(self.ui("human"), "human")

    def topic_button(self, label: Label) -> Button:
        """A button that asks about `label`: an FAQ entry's title, or a flow's name."""
        entry = self.knowledge.entries.get(label)
        if entry is not None:
            return Button(entry.title[self.language], f"faq:{label.value}")
        return Button(self.ui(label.value), f"intent:{label.value}")

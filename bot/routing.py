"""Routing tables from labels, commands and button actions to handlers (no if/elif ladders).

Each handler module owns one `Router`; the engine merges them. A handler that decides a message
is not its business returns `UNHANDLED`, never None, and the engine falls through to the fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, Final, TypeAlias

from bot.types import Label

if TYPE_CHECKING:
    from bot.context import Context, Outcome


class _Unhandled(Enum):
    UNHANDLED = "unhandled"


UNHANDLED: Final = _Unhandled.UNHANDLED
Result: TypeAlias = "Outcome | _Unhandled"
Handler: TypeAlias = Callable[["Context"], Awaitable[Result]]


class Router:
    """Declares which labels, commands and button actions a module handles."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.labels: dict[Label, Handler] = {}
        self.commands: dict[str, Handler] = {}
        self.actions: dict[str, Handler] = {}
        # The handler of every FAQ entry, the fixed ones and those a supervisor adds.
        self.entries: Handler | None = None

    def _register(
        self,
        table: dict[str, Handler] | dict[Label, Handler],
        keys: tuple[object, ...],
        handler: Handler,
    ) -> Handler:
        for key in keys:
            if key in table:
                raise ValueError(f"{self.name}: {key} is registered twice")
            table[key] = handler  # type: ignore[index]
        return handler

    def label(self, *labels: Label) -> Callable[[Handler], Handler]:
        return lambda handler: self._register(self.labels, labels, handler)

    def faq_entries(self, handler: Handler) -> Handler:
        """Every FAQ entry's label (`Label.is_faq`), whichever entries the knowledge has."""
        if self.entries is not None:
            raise ValueError(f"{self.name}: FAQ entries are registered twice")
        self.entries = handler
        return handler

    def for_label(self, label: Label) -> Handler | None:
        handler = self.labels.get(label)
        return self.entries if handler is None and label.is_faq else handler

    def command(self, *names: str) -> Callable[[Handler], Handler]:
        return lambda handler: self._register(self.commands, names, handler)

    def action(self, *prefixes: str) -> Callable[[Handler], Handler]:
        """Buttons whose action is `prefix` or `prefix:argument`."""
        return lambda handler: self._register(self.actions, prefixes, handler)

    def include(self, other: Router) -> None:
        if other.entries is not None:
            self.faq_entries(other.entries)
        for label, handler in other.labels.items():
            self._register(self.labels, (label,), handler)
        for name, handler in other.commands.items():
            self._register(self.commands, (name,), handler)
        for prefix, handler in other.actions.items():
            self._register(self.actions, (prefix,), handler)

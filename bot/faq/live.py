"""The published knowledge in a running process, swapped in whole when another is published.

Every process answers from the published version (`bot/faq/store.py`). When one is published
(`KnowledgePublished` on the event bus: NOTIFY on PostgreSQL, in-process on SQLite) each
process reads it, builds its knowledge and matcher on a worker thread, and only then swaps
one reference: a turn in progress finishes with what it started with, the next one meets the
new version, and no turn waits for the build. A slow poll (`keep_fresh`) catches a
notification lost while the listening connection was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.faq import store
from bot.faq.files import Files, digest, read_folder
from bot.faq.knowledge import Knowledge, load_valid_knowledge_files
from bot.nlu.matcher import Matcher
from bot.storage.events import Event, KnowledgePublished

log = logging.getLogger(__name__)

# Seconds between two looks at the published version, for a notification that was lost.
POLL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Published:
    """One version, ready to answer from."""

    version_id: int
    digest: str
    knowledge: Knowledge
    matcher: Matcher


Swapped = Callable[[Published], None]


class LiveKnowledge:
    """`current` is the published version as this process answers from it."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        build_matcher: Callable[[Knowledge], Matcher],
        built: tuple[str, Knowledge, Matcher] | None = None,
    ) -> None:
        """`built`: files already built in this process (their digest, knowledge and
        matcher), used instead of building again a version with the same files."""
        self._sessions = sessions
        self._build_matcher = build_matcher
        self._built = built
        self._current: Published | None = None
        self._listeners: list[Swapped] = []
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Published:
        assert self._current is not None, "LiveKnowledge used before start()"
        return self._current

    @property
    def knowledge(self) -> Knowledge:
        return self.current.knowledge

    @property
    def matcher(self) -> Matcher:
        return self.current.matcher

    def on_swap(self, listener: Swapped) -> None:
        """`listener` is called, on the event loop, with each version swapped in."""
        self._listeners.append(listener)

    def build(self, files: Files) -> tuple[Knowledge, Matcher]:
        """Knowledge and matcher from a version's files (KnowledgeError when they fail the
        check); CPU work, run on a worker thread by `refresh`."""
        knowledge = load_valid_knowledge_files(files)
        return knowledge, self._build_matcher(knowledge)

    async def start(self, folder: Path) -> Published:
        """The published version, importing `folder` as version 1 on the first start (after
        the same check as `btp-bot kb check`: the bot never starts on bad data)."""
        files = read_folder(folder)
        version_id = await store.ensure_first(self._sessions, files, load_valid_knowledge_files)
        await self.refresh(version_id)
        if digest(files) != self.current.digest:
            log.warning(
                "%s differs from the published knowledge (version %s, published by a person), "
                "which the bot answers from; `btp-bot kb import %s` makes the files a new "
                "version",
                folder,
                version_id,
                folder,
            )
        return self.current

    async def refresh(self, version_id: int | None = None) -> bool:
        """Swap in the published version (read from the database, `version_id` only saves
        the read) when it is not the one in use; True when it swapped."""
        async with self._lock:
            async with self._sessions() as session:
                wanted = version_id or await store.published_id(session)
                if wanted is None or (self._current and self._current.version_id == wanted):
                    return False
                files = await store.files_of(session, wanted)
            if files is None:
                return False
            files_digest = digest(files)
            if self._built is not None and self._built[0] == files_digest:
                knowledge, matcher = self._built[1], self._built[2]
            else:
                knowledge, matcher = await asyncio.to_thread(self.build, files)
            self._current = Published(wanted, files_digest, knowledge, matcher)
            for listener in self._listeners:
                listener(self._current)
            log.info("knowledge version %s in use", wanted)
            return True

    async def on_event(self, event: Event) -> None:
        if isinstance(event, KnowledgePublished):
            await self.refresh()

    async def keep_fresh(self, every: float = POLL_SECONDS) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception:
                log.exception("could not look at the published knowledge")

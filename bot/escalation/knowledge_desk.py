"""What supervisors do with the knowledge (decision record 0022): turn a cluster of unanswered
questions into phrasings of an entry or into out-of-scope examples, see what the draft does
to the NLU sets, publish it, roll back to any earlier version.

Each action is a supervisor's only and writes an audit entry. A draft is a version of the
knowledge files (`bot/faq/edits.py` writes the new lines) checked by the rules of `btp-bot kb
check`: a draft that fails them is refused with the reasons. Publishing a draft needs its
preview, and a second confirmation when accuracy on the test set drops; publishing a version
that was published before (a rollback) needs neither. The SQL is `bot.faq.store`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.escalation.agent_sessions import Viewer
from bot.escalation.core import HandoffError
from bot.escalation.stats import UnansweredGroup, group_similar
from bot.faq import store
from bot.faq.edits import Edit, EditError, NewEntry, add_entry, add_phrasings
from bot.faq.files import Files
from bot.faq.knowledge import Problem, load_knowledge_files
from bot.faq.live import LiveKnowledge
from bot.faq.preview import EvalSet, Preview, compare, labels, read_sets
from bot.nlu.language import detect_language
from bot.nlu.normalize import fold, strip_punctuation
from bot.storage.events import EventBus, KnowledgePublished
from bot.storage.models import AuditEntry, KnowledgePublication, UnansweredQuestion
from bot.types import Label, Language

# The unanswered questions the knowledge page groups into clusters.
CLUSTER_DAYS = 30
CLUSTERS = 20


class KnowledgeRefused(HandoffError):
    """The draft breaks the rules of `kb check`; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("kb_check", "; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Cluster:
    example: str
    count: int
    texts: list[str]


def _key(text: str) -> str:
    return strip_punctuation(fold(text)).replace(" ", "")


def _language(text: str) -> Language:
    return detect_language(fold(text)) or Language.ZH


def _by_language(texts: list[str]) -> dict[Language, list[str]]:
    by_language: dict[Language, list[str]] = {}
    for text in texts:
        if text.strip():
            by_language.setdefault(_language(text), []).append(text)
    return by_language


class KnowledgeDesk:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        live: LiveKnowledge,
        bus: EventBus,
        eval_dir: Path | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._live = live
        self._bus = bus
        self._eval_dir = eval_dir
        self._clock = clock
        self._sets: list[EvalSet] | None = None
        # The NLU sets' labels under each version, computed once (a version never changes).
        self._labels: dict[int, dict[str, list[str]]] = {}

    @staticmethod
    def _supervisor(viewer: Viewer) -> None:
        if not viewer.is_supervisor:
            raise HandoffError("forbidden", "only a supervisor changes the knowledge")

    # -- what the page shows -------------------------------------------------------------------

    async def clusters(self) -> list[Cluster]:
        """Unanswered questions of the last CLUSTER_DAYS, grouped, without those the published
        knowledge has as phrasings or examples by now."""
        since = self._clock() - timedelta(days=CLUSTER_DAYS)
        async with self._sessions() as session:
            texts = (
                await session.scalars(
                    select(UnansweredQuestion.text)
                    .where(UnansweredQuestion.created_at >= since)
                    .order_by(UnansweredQuestion.id)
                )
            ).all()
        known = {_key(p.text) for p in self._live.knowledge.phrasings}
        fresh = [text for text in texts if _key(text) not in known]
        groups: list[UnansweredGroup] = group_similar(fresh, limit=CLUSTERS)
        return [Cluster(g.example, g.count, list(dict.fromkeys(g.texts))) for g in groups]

    async def versions(self) -> list[store.VersionRow]:
        async with self._sessions() as session:
            return await store.history(session)

    async def draft(self, viewer: Viewer, version_id: int) -> dict[str, Any]:
        """A version as its page shows it: who, why, its preview (computed on first view)."""
        self._supervisor(viewer)
        async with self._sessions() as session:
            row = await store.version(session, version_id)
            ever = await session.scalar(
                select(KnowledgePublication.id)
                .where(KnowledgePublication.version_id == version_id)
                .limit(1)
            )
            current = await store.published_id(session)
        if row is None:
            raise HandoffError("not_found", "no such knowledge version")
        preview = row.preview
        if preview is None and ever is None:
            preview = (await self.preview(viewer, version_id)).as_json()
        return {
            "id": row.id,
            "created_at": row.created_at,
            "created_by": row.created_by,
            "source": row.source,
            "note": row.note,
            "base_id": row.base_id,
            "published": row.id == current,
            "ever_published": ever is not None,
            "stale": ever is None and row.base_id != current,
            "preview": preview,
        }

    # -- drafts --------------------------------------------------------------------------------

    async def draft_phrasings(self, viewer: Viewer, label: str, texts: list[str]) -> int:
        """A draft with `texts` as phrasings of `label` (an FAQ entry or an intent)."""
        self._supervisor(viewer)
        try:
            target = Label(label)
        except ValueError as exc:
            raise HandoffError("bad_request", "choose an entry of the knowledge") from exc
        if target == Label.OUT_OF_SCOPE:
            raise HandoffError("bad_request", "out of scope is its own action")
        return await self._draft(viewer, target, texts)

    async def draft_out_of_scope(self, viewer: Viewer, texts: list[str]) -> int:
        """A draft with `texts` as out-of-scope examples."""
        self._supervisor(viewer)
        return await self._draft(viewer, Label.OUT_OF_SCOPE, texts)

    async def draft_entry(
        self,
        viewer: Viewer,
        label: str,
        title: dict[Language, str],
        answer: dict[Language, str],
        texts: list[str],
        related: list[str],
    ) -> int:
        """A draft with a new FAQ entry: its id, title and answer in zh and en, `texts` as its
        phrasings (each under the language it is written in), up to three related entries."""
        self._supervisor(viewer)
        try:
            target = Label(label)
        except ValueError as exc:
            raise HandoffError("entry_id", "an entry id is <topic>.<name>") from exc
        if not target.is_faq:
            raise HandoffError("entry_id", "an entry id is <topic>.<name>")
        links = []
        for value in dict.fromkeys(r for r in related if r):
            try:
                links.append(Label(value))
            except ValueError as exc:
                raise HandoffError("bad_request", f"no entry {value}") from exc
        entry = NewEntry(target, title, answer, _by_language(texts), tuple(links))
        return await self._store(viewer, target, lambda files: add_entry(files, entry), new=True)

    async def _draft(self, viewer: Viewer, label: Label, texts: list[str]) -> int:
        by_language = _by_language(texts)
        if not by_language:
            raise HandoffError("bad_request", "give at least one question")
        return await self._store(
            viewer, label, lambda files: add_phrasings(files, label, by_language)
        )

    async def _store(
        self, viewer: Viewer, label: Label, change: Callable[[Files], Edit], *, new: bool = False
    ) -> int:
        """The published files changed by `change`, checked, stored as a draft and audited."""
        base = self._live.current
        async with self._sessions() as session:
            files = await store.files_of(session, base.version_id)
        assert files is not None
        try:
            edit = change(files)
        except EditError as exc:
            raise HandoffError(exc.code, str(exc)) from exc
        problems = load_knowledge_files(edit.files).problems
        if problems:
            raise KnowledgeRefused(problems)
        added = {str(language): items for language, items in edit.added.items()}
        # The note names ids and language codes only, so it reads the same in zh and en.
        counts = " ".join(f"+{len(v)} {k}" for k, v in added.items())
        note = f"{'+' if new else ''}{label.value} {counts}"
        now = self._clock()
        async with self._sessions() as session, session.begin():
            version_id = await store.create(
                session,
                edit.files,
                by=viewer.name,
                source="console",
                note=note.strip(),
                base_id=base.version_id,
                now=now,
            )
            detail = {"version": version_id, "label": label.value, "added": added, "new": new}
            session.add(self._audit(viewer, "kb_drafted", detail, now))
        return version_id

    # -- preview and publishing ----------------------------------------------------------------

    async def preview(self, viewer: Viewer, version_id: int) -> Preview:
        """The draft against its base on every NLU set; kept on the draft's row."""
        self._supervisor(viewer)
        started = time.perf_counter()
        async with self._sessions() as session:
            row = await store.version(session, version_id)
            if row is None:
                raise HandoffError("not_found", "no such knowledge version")
            files = {str(k): str(v) for k, v in row.files.items()}
            base_id = row.base_id
        sets = await self._eval_sets()
        before = await self._labels_of(base_id, sets) if base_id is not None else None
        _, matcher = await asyncio.to_thread(self._live.build, files)
        result = await asyncio.to_thread(
            compare, sets, before or {s.name: labels(matcher, s) for s in sets}, matcher
        )
        result.seconds = time.perf_counter() - started
        async with self._sessions() as session, session.begin():
            await store.set_preview(session, version_id, result.as_json())
        return result

    async def _eval_sets(self) -> list[EvalSet]:
        if self._sets is None:
            self._sets = await asyncio.to_thread(read_sets, self._eval_dir)
        return self._sets

    async def _labels_of(self, version_id: int, sets: list[EvalSet]) -> dict[str, list[str]]:
        cached = self._labels.get(version_id)
        if cached is not None:
            return cached
        current = self._live.current
        if current.version_id == version_id:
            matcher = current.matcher
        else:
            async with self._sessions() as session:
                files = await store.files_of(session, version_id)
            if files is None:
                raise HandoffError("not_found", "the draft's base version is gone")
            matcher = (await asyncio.to_thread(self._live.build, files))[1]
        computed = await asyncio.to_thread(lambda: {s.name: labels(matcher, s) for s in sets})
        self._labels[version_id] = computed
        return computed

    async def publish(self, viewer: Viewer, version_id: int, *, confirm_drop: bool) -> None:
        """Publish a version: a draft after its preview (and, when the test set drops, only
        with `confirm_drop`); an earlier version again as a rollback."""
        self._supervisor(viewer)
        page = await self.draft(viewer, version_id)
        if page["published"]:
            raise HandoffError("conflict", "this version is the published one already")
        if not page["ever_published"]:
            if page["stale"]:
                raise HandoffError(
                    "conflict", "another version was published since this draft; draft again"
                )
            preview = page["preview"] or {}
            if preview.get("test_dropped") and not confirm_drop:
                raise HandoffError("confirm_drop", "accuracy on the test set drops: confirm")
        async with self._sessions() as session:
            files = await store.files_of(session, version_id)
        problems = load_knowledge_files(files or {}).problems
        if problems:
            raise KnowledgeRefused(problems)
        now = self._clock()
        async with self._sessions() as session, session.begin():
            published = await store.publish(
                session,
                version_id,
                by=viewer.name,
                agent_id=viewer.agent_id,
                now=now,
                only_over=None if page["ever_published"] else page["base_id"],
            )
            if not published:
                raise HandoffError(
                    "conflict", "another version was published since this draft; draft again"
                )
            await self._bus.emit(session, KnowledgePublished(version_id))

    @staticmethod
    def _audit(viewer: Viewer, action: str, detail: dict[str, Any], now: datetime) -> AuditEntry:
        return AuditEntry(agent_id=viewer.agent_id, action=action, detail=detail, at=now)

"""The knowledge's versions in the database: the one module with their SQL.

A version is a full copy of the knowledge files (`bot/faq/files.py`); the latest publication
names the version the bot answers from. Publishing writes a publication row and an audit
entry (who, when, which version, what changed) in one transaction; rolling back is publishing
an earlier version again. The first start imports `knowledge/` as version 1
(`ensure_first`), once even when several processes start together on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.faq.files import Files, digest
from bot.storage.models import AuditEntry, KnowledgePublication, KnowledgeVersion

# pg_advisory_xact_lock keys: the first import, and publishing ("kb" in ASCII, then 1 or 2).
_FIRST_IMPORT_LOCK = 0x6B6201
_PUBLISH_LOCK = 0x6B6202
# Who made and published the versions imported from the installation's folder at a start.
FILES = "files"


async def _lock(session: AsyncSession, key: int) -> None:
    """One transaction at a time past this point (PostgreSQL; SQLite writes one at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


@dataclass(frozen=True, slots=True)
class VersionRow:
    """A version as the console's list shows it (without its files)."""

    id: int
    created_at: datetime
    created_by: str
    source: str
    note: str
    base_id: int | None
    published: bool
    ever_published: bool
    preview: dict[str, Any] | None


_LATEST = (
    select(KnowledgePublication.version_id, KnowledgePublication.published_by)
    .order_by(KnowledgePublication.id.desc())
    .limit(1)
)


async def published_id(session: AsyncSession) -> int | None:
    """The version the bot answers from; None before the first start imported one."""
    latest = (await session.execute(_LATEST)).first()
    return None if latest is None else int(latest.version_id)


async def files_of(session: AsyncSession, version_id: int) -> dict[str, str] | None:
    row = await session.get(KnowledgeVersion, version_id)
    return None if row is None else {str(k): str(v) for k, v in row.files.items()}


async def version(session: AsyncSession, version_id: int) -> KnowledgeVersion | None:
    return await session.get(KnowledgeVersion, version_id)


async def create(
    session: AsyncSession,
    files: Files,
    *,
    by: str,
    source: str,
    note: str = "",
    base_id: int | None = None,
    now: datetime | None = None,
) -> int:
    row = KnowledgeVersion(
        created_at=now or datetime.now(UTC),
        created_by=by,
        source=source,
        note=note,
        base_id=base_id,
        digest=digest(files),
        files=dict(files),
    )
    session.add(row)
    await session.flush()
    return row.id


async def set_preview(session: AsyncSession, version_id: int, preview: dict[str, Any]) -> None:
    row = await session.get(KnowledgeVersion, version_id)
    if row is not None:
        row.preview = preview


async def publish(
    session: AsyncSession,
    version_id: int,
    *,
    by: str,
    agent_id: int | None = None,
    now: datetime | None = None,
    audit: bool = True,
    only_over: int | None = None,
) -> bool:
    """Make `version_id` the published version (the caller emits the event); audited unless
    it is the first start's import, which no one did (its publication row says "files").
    With `only_over`, only while that version is the published one (a draft over its base:
    False when another was published meanwhile, and nothing is written)."""
    moment = now or datetime.now(UTC)
    await _lock(session, _PUBLISH_LOCK)
    before = await published_id(session)
    if only_over is not None and before != only_over:
        return False
    row = await session.get(KnowledgeVersion, version_id)
    assert row is not None, f"no knowledge version {version_id}"
    session.add(KnowledgePublication(version_id=version_id, published_at=moment, published_by=by))
    if audit:
        detail = {"version": version_id, "previous": before, "by": by, "note": row.note}
        session.add(AuditEntry(agent_id=agent_id, action="kb_published", detail=detail, at=moment))
    await session.flush()
    return True


async def ensure_first(
    sessions: async_sessionmaker[AsyncSession], files: Files, check: Callable[[Files], object]
) -> int:
    """The published version's id, importing `files` as version 1 when there is none yet
    (`check` raises when they may not be used).

    After that, `files` (the installation's folder) become a new version by themselves only
    while the published version is the folder's own, published at a start: a release that
    ships changed files then answers from them without a manual import, and nothing a person
    published (a console edit, an import, a rollback) is ever undone by a restart."""
    async with sessions() as session, session.begin():
        await _lock(session, _FIRST_IMPORT_LOCK)
        latest = (await session.execute(_LATEST)).first()
        if latest is None:
            check(files)
            version_id = await create(session, files, by=FILES, source=FILES, note="knowledge/")
            await publish(session, version_id, by=FILES, audit=False)
            return version_id
        current = int(latest.version_id)
        if latest.published_by != FILES or not await _folders_own(session, current, files):
            return current
        check(files)
        version_id = await create(
            session, files, by=FILES, source=FILES, note="knowledge/ changed", base_id=current
        )
        await publish(session, version_id, by=FILES)
        return version_id


async def _folders_own(session: AsyncSession, current: int, files: Files) -> bool:
    """Whether the published version (published at a start, not by a person) came from the
    folder and differs from what the folder holds now: then the folder replaces it."""
    row = await session.get(KnowledgeVersion, current)
    return row is not None and row.source == FILES and row.digest != digest(files)


async def history(session: AsyncSession, limit: int = 30) -> list[VersionRow]:
    """The latest versions, newest first, each marked published / once published."""
    current = await published_id(session)
    ever = set((await session.scalars(select(KnowledgePublication.version_id).distinct())).all())
    rows = (
        await session.execute(
            select(
                KnowledgeVersion.id,
                KnowledgeVersion.created_at,
                KnowledgeVersion.created_by,
                KnowledgeVersion.source,
                KnowledgeVersion.note,
                KnowledgeVersion.base_id,
                KnowledgeVersion.preview,
            )
            .order_by(KnowledgeVersion.id.desc())
            .limit(limit)
        )
    ).all()
    return [
        VersionRow(
            r.id,
            r.created_at,
            r.created_by,
            r.source,
            r.note,
            r.base_id,
            r.id == current,
            r.id in ever,
            r.preview,
        )
        for r in rows
    ]


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(KnowledgeVersion)) or 0)

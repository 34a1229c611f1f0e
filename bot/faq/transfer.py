"""Between the database and a folder: `btp-bot kb export DIR` and `btp-bot kb import DIR`.

Export writes the published version's files byte for byte, so the export of an import is the
imported folder again and a version can be reviewed, diffed and committed like the files.
Import checks a folder by the rules of `btp-bot kb check` and publishes it as a new version;
the running servers hear of it on the event bus (or, on SQLite, at their next look).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.faq import store
from bot.faq.files import digest, read_folder, write_folder
from bot.faq.knowledge import KnowledgeError, load_knowledge_files, load_valid_knowledge_files
from bot.storage.events import EventBus, KnowledgePublished


@dataclass(frozen=True, slots=True)
class Imported:
    version_id: int
    new: bool  # False: the folder is the published version already


async def export_published(
    sessions: async_sessionmaker[AsyncSession], knowledge_dir: Path, target: Path
) -> tuple[int, list[Path]]:
    """Write the published version into `target` (on a database with none yet, the first
    start's import of `knowledge_dir` happens here, as it would at the bot's start)."""
    version_id = await store.ensure_first(
        sessions, read_folder(knowledge_dir), load_valid_knowledge_files
    )
    async with sessions() as session:
        files = await store.files_of(session, version_id)
    assert files is not None
    return version_id, write_folder(target, files)


async def import_folder(
    sessions: async_sessionmaker[AsyncSession],
    bus: EventBus,
    folder: Path,
    *,
    by: str,
    knowledge_dir: Path,
) -> Imported:
    """Publish `folder` as a new version (KnowledgeError, naming every problem, when it
    fails the check); the folder that is the published version already changes nothing. On a
    database with no version yet, `knowledge_dir` is version 1 first, as at the bot's start,
    so the history begins where every installation begins."""
    files = read_folder(folder)
    problems = load_knowledge_files(files).problems
    if problems:
        raise KnowledgeError(problems)
    await store.ensure_first(sessions, read_folder(knowledge_dir), load_valid_knowledge_files)
    async with sessions() as session, session.begin():
        current = await store.published_id(session)
        if current is not None:
            row = await store.version(session, current)
            if row is not None and row.digest == digest(files):
                return Imported(current, new=False)
        version_id = await store.create(
            session, files, by=by, source="import", note=f"{folder.name}/", base_id=current
        )
        await store.publish(session, version_id, by=by)
        await bus.emit(session, KnowledgePublished(version_id))
    return Imported(version_id, new=True)

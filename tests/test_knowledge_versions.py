"""The knowledge as versions in the database: the first start's import, export byte for byte,
console edits as a few new lines, the same rules as `kb check`, and a publish that a running
engine answers from at its next turn, rolled back the same way."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import open_bot
from bot.cli import main
from bot.faq import store
from bot.faq.edits import EditError, add_phrasings
from bot.faq.files import KNOWLEDGE_FILES, read_folder, write_folder
from bot.faq.knowledge import load_knowledge_files, load_valid_knowledge_files
from bot.faq.transfer import export_published
from bot.settings import PROJECT_ROOT, Settings
from bot.storage.db import session_factory
from bot.storage.events import KnowledgePublished
from bot.storage.models import AuditEntry, KnowledgeVersion
from bot.types import Label, Language
from tests.support.common import Chat
from tests.support.knowledge import NEW_QUESTION, NEW_QUESTION_EN, TARGET, in_use

FOLDER = PROJECT_ROOT / "knowledge"


async def test_the_export_of_the_first_import_is_the_files_byte_for_byte(
    db: AsyncEngine, tmp_path: Path
) -> None:
    sessions = session_factory(db)
    first, again = await asyncio.gather(
        store.ensure_first(sessions, read_folder(FOLDER), load_valid_knowledge_files),
        store.ensure_first(sessions, read_folder(FOLDER), load_valid_knowledge_files),
    )
    assert first == again == 1
    version_id, written = await export_published(sessions, FOLDER, tmp_path / "out")
    assert version_id == 1 and len(written) == len(KNOWLEDGE_FILES)
    for name in KNOWLEDGE_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (FOLDER / name).read_bytes(), name
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(KnowledgeVersion)) == 1


def test_an_edit_adds_its_lines_and_changes_nothing_else() -> None:
    files = read_folder(FOLDER)
    edit = add_phrasings(
        files, TARGET, {Language.ZH: [NEW_QUESTION], Language.EN: [NEW_QUESTION_EN]}
    )
    diff = [
        line
        for line in difflib.unified_diff(
            files["faq.yaml"].splitlines(), edit.files["faq.yaml"].splitlines(), lineterm="", n=0
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(diff) == sorted([f"+        - {NEW_QUESTION}", f"+        - {NEW_QUESTION_EN}"])
    assert {k: v for k, v in edit.files.items() if k != "faq.yaml"} == {
        k: v for k, v in files.items() if k != "faq.yaml"
    }
    knowledge = load_valid_knowledge_files(edit.files)
    assert NEW_QUESTION in knowledge.entries[TARGET].questions[Language.ZH]
    assert NEW_QUESTION_EN in knowledge.entries[TARGET].questions[Language.EN]
    # What is there already is not added twice.
    with pytest.raises(EditError):
        add_phrasings(edit.files, TARGET, {Language.ZH: [NEW_QUESTION + "！"]})


@pytest.mark.parametrize(
    "text",
    [
        "'4321'",
        "4321",
        "yes",
        "null",
        "- [a]: b # c",
        "{{ 7*7 }}",
        "{% raw %}x",
        "<script>alert(1)</script>",
        '他说"你好" \\ 然后呢',
        "&anchor *alias !tag",
    ],
)
def test_a_text_that_looks_like_yaml_or_a_template_stays_the_text(text: str) -> None:
    edit = add_phrasings(read_folder(FOLDER), Label.OUT_OF_SCOPE, {Language.ZH: [text]})
    knowledge = load_knowledge_files(edit.files)
    assert knowledge.problems == []
    assert knowledge.examples[Label.OUT_OF_SCOPE][Language.ZH][-1] == text


def test_a_phrasing_under_another_label_fails_the_check_with_its_place() -> None:
    files = read_folder(FOLDER)
    taken = load_valid_knowledge_files(files).entries[Label.FEES_RATES].questions[Language.ZH][0]
    edit = add_phrasings(files, Label.ABOUT_OVERVIEW, {Language.ZH: [taken]})
    problems = load_knowledge_files(edit.files).problems
    assert [p.file for p in problems] == ["faq.yaml"]
    assert "fees.rates" in problems[0].message and problems[0].line > 0


def _cli_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("KNOWLEDGE_DIR", str(FOLDER))
    return url


def test_kb_check_dir_import_and_export_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli_settings(monkeypatch, tmp_path)
    changed = add_phrasings(read_folder(FOLDER), TARGET, {Language.ZH: [NEW_QUESTION]}).files
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_folder(good, changed)
    write_folder(bad, {**changed, "intents.yaml": changed["intents.yaml"] + "  - label: nope\n"})

    assert main(["kb", "check", "--dir", str(bad)]) == 1
    assert f"{bad / 'intents.yaml'}:" in capsys.readouterr().err
    assert main(["kb", "import", str(bad)]) == 1
    assert main(["kb", "check", "--dir", str(good)]) == 0
    assert main(["kb", "import", str(good), "--by", "release 2026.12"]) == 0
    assert "version 2 published" in capsys.readouterr().out
    assert main(["kb", "import", str(good)]) == 0
    assert "already" in capsys.readouterr().out
    assert main(["kb", "export", str(tmp_path / "out")]) == 0
    for name in KNOWLEDGE_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (good / name).read_bytes(), name


async def test_a_published_version_answers_the_next_message_and_rolls_back(
    db: AsyncEngine, settings: Settings, world: None
) -> None:
    url = db.url.render_as_string(hide_password=False)
    async with open_bot(settings.model_copy(update={"database_url": url})) as bot:
        assert bot.knowledge.current.version_id == 1
        chat = Chat(bot.engine)
        replies = await chat.say(NEW_QUESTION)
        assert [r.template for r in replies] != ["faq_answer"]

        async with bot.sessions() as session:
            files = await store.files_of(session, 1)
        assert files is not None
        edit = add_phrasings(files, TARGET, {Language.ZH: [NEW_QUESTION]})
        async with bot.sessions() as session, session.begin():
            version_id = await store.create(
                session, edit.files, by="老王", source="console", base_id=1
            )
            await store.publish(session, version_id, by="老王")
            await bot.bus.emit(session, KnowledgePublished(version_id))
        await in_use(bot.knowledge, version_id)

        replies = await chat.say(NEW_QUESTION)
        assert replies[0].template == "faq_answer"
        assert f"fb:{TARGET.value}:yes" in [b.action for b in replies[0].buttons]

        async with bot.sessions() as session, session.begin():
            await store.publish(session, 1, by="老王")
            await bot.bus.emit(session, KnowledgePublished(1))
        await in_use(bot.knowledge, 1)
        assert [r.template for r in await chat.say(NEW_QUESTION)] != ["faq_answer"]
        async with bot.sessions() as session:
            audit = (await session.scalars(select(AuditEntry.detail))).all()
            history = await store.history(session)
        assert [(d["version"], d["previous"]) for d in audit] == [(2, 1), (1, 2)]
        assert [(v.id, v.published, v.ever_published) for v in history] == [
            (2, False, True),
            (1, True, True),
        ]


async def test_changed_files_follow_at_a_start_until_a_person_publishes(db: AsyncEngine) -> None:
    """A release that ships changed knowledge files answers from them after its restart; once
    a person published a version (a console edit, an import, a rollback), a restart with
    other files keeps what the person published."""
    sessions = session_factory(db)
    check = load_valid_knowledge_files
    files = read_folder(FOLDER)
    assert await store.ensure_first(sessions, files, check) == 1
    assert await store.ensure_first(sessions, files, check) == 1  # same files: no new version
    released = add_phrasings(files, TARGET, {Language.ZH: [NEW_QUESTION]}).files
    assert await store.ensure_first(sessions, released, check) == 2
    assert await store.ensure_first(sessions, released, check) == 2
    async with sessions() as session, session.begin():
        assert await store.publish(session, 1, by="supervisor") is True  # a rollback
    assert await store.ensure_first(sessions, released, check) == 1
    async with sessions() as session:
        assert await store.published_id(session) == 1

"""A new FAQ entry drafted from a cluster in the console, over real HTTP on both database tiers:
the supervisor writes its id, titles, answers and phrasings, previews it, publishes it, and the
next web chat question in either language is answered by it, its vote buttons work, and the
exported files pass `kb check`. Refusals say why and keep what the supervisor wrote."""

from __future__ import annotations

import aiohttp
import pytest

from bot.faq import store
from bot.faq.edits import EditError, NewEntry, add_entry
from bot.faq.files import read_folder
from bot.faq.knowledge import load_knowledge_files
from bot.settings import PROJECT_ROOT
from bot.types import Label, Language
from tests.support import console, knowledge
from tests.support.console import Server, agent_session
from tests.support.knowledge import answered_by, asked_and_unanswered, in_use, unanswered
from tests.support.webchat import Visitor
from webhook_server import RUNTIME

kb_server, http = knowledge.kb_server, console.http

# Made-up words no version of the knowledge knows.
ZH_QUESTIONS = ["鲸鱼积分怎么兑换", "鲸鱼积分在哪里看"]
EN_QUESTION = "how do i redeem whale points"
ENTRY = {
    "kind": "new_entry",
    "topic": "tips",
    "name": "whale_points",
    "title_zh": "鲸鱼积分怎么用",
    "title_en": "Using whale points",
    "answer_zh": "鲸鱼积分在“我的-积分”里查看。\n满 100 分可以兑换一次。",
    "answer_en": "Whale points are under Me > Points.\nEvery 100 points can be redeemed once.",
    "texts": "\n".join([*ZH_QUESTIONS, EN_QUESTION, "where do i see my whale points"]),
    "related_1": Label.TIPS_REPORTS.value,
}


def _text(replies: list[dict[str, object]]) -> str:
    return "\n".join(str(reply.get("text", "")) for reply in replies)


async def test_a_cluster_becomes_a_new_entry_answered_in_both_languages(
    kb_server: Server, http: aiohttp.ClientSession
) -> None:
    server = kb_server
    zh = await asked_and_unanswered(server, http, ZH_QUESTIONS[0], *ZH_QUESTIONS)
    live = server.app[RUNTIME].bot.knowledge

    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        status, page = await boss.page("/agent/knowledge")
        assert status == 200 and 'class="kb-new-entry__form"' in page
        status, body = await boss.post("/agent/api/knowledge/drafts", **ENTRY)
        assert status == 200, body
        draft = body["draft"]
        assert live.current.version_id == 1
        status, page = await boss.page(f"/agent/knowledge/versions/{draft}")
        assert status == 200 and 'id="preview"' in page and "+tips.whale_points" in page
        status, body = await boss.post(f"/agent/api/knowledge/versions/{draft}/publish")
        assert status == 200, body
        await in_use(live, draft)
        # The new entry is offered for the next cluster like the others.
        await unanswered(server, "鲸鱼积分过期吗")
        status, page = await boss.page("/agent/knowledge")
        assert '<option value="tips.whale_points">' in page

    replies = await zh.say("鲸鱼积分怎么兑换呀")
    assert answered_by(replies) == "tips.whale_points"
    assert "满 100 分可以兑换一次" in _text(replies)
    actions = [b["action"] for r in replies for b in r.get("buttons", [])]
    assert f"faq:{Label.TIPS_REPORTS.value}" in actions
    thanks = await zh.press("fb:tips.whale_points:yes")
    assert "fallback" not in str(thanks) and thanks
    en = await Visitor(http, server.base).open()
    replies = await en.say(EN_QUESTION)
    assert answered_by(replies) == "tips.whale_points"
    assert "Every 100 points can be redeemed once." in _text(replies)

    # The published version exported as files is a valid knowledge folder with the entry.
    async with server.sessions() as session:
        files = await store.files_of(session, draft)
    assert files is not None
    checked = load_knowledge_files(files)
    assert checked.problems == []
    entry = checked.entries[Label("tips.whale_points")]
    assert entry.questions[Language.EN] == [EN_QUESTION, "where do i see my whale points"]
    assert entry.related == [Label.TIPS_REPORTS]


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        ({"topic": "fees", "name": "rates"}, "entry_exists", 400),
        ({"name": "Whale Points"}, "entry_id", 400),
        ({"topic": "diagnose"}, "entry_id", 400),
        ({"answer_en": "  "}, "entry_text", 400),
        ({"title_zh": "鲸" * 41}, "entry_text", 400),
        ({"texts": "\n".join(ZH_QUESTIONS)}, "kb_check", 422),  # no English phrasing
        ({"related_1": "tips.no_such_entry"}, "kb_check", 422),
    ],
)
async def test_a_new_entry_that_cannot_be_made_is_refused_with_the_reason(
    kb_server: Server, change: dict[str, str], code: str, status: int
) -> None:
    server = kb_server
    await server.add_agent("老王", supervisor=True)
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        answer, body = await boss.post("/agent/api/knowledge/drafts", **{**ENTRY, **change})
        assert (answer, body["error"]["code"]) == (status, code), body
    async with server.sessions() as session:
        assert await store.count(session) == 1


async def test_a_refused_form_shows_the_reason_and_keeps_what_was_written(
    kb_server: Server,
) -> None:
    server = kb_server
    await server.add_agent("老王", supervisor=True)
    await unanswered(server, *ZH_QUESTIONS)
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        form = {**ENTRY, "csrf": boss.csrf, "cluster": "1", "title_en": ""}
        async with boss.http.post(
            f"{server.base}/agent/api/knowledge/drafts", data=form, allow_redirects=False
        ) as response:
            assert response.status == 400
            page = await response.text()
    assert 'data-code="entry_text"' in page
    assert "满 100 分可以兑换一次" in page and 'value="whale_points"' in page
    assert '<details class="kb-new-entry" open>' in page


async def test_the_rules_it_breaks_are_said_in_the_pages_language(kb_server: Server) -> None:
    server = kb_server
    await server.add_agent("老王", supervisor=True)
    await unanswered(server, *ZH_QUESTIONS)
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        pages = {}
        for language in ("zh", "en"):
            form = {**ENTRY, "csrf": boss.csrf, "cluster": "1", "texts": ZH_QUESTIONS[0]}
            async with boss.http.post(
                f"{server.base}/agent/api/knowledge/drafts?lang={language}",
                data=form,
                allow_redirects=False,
            ) as response:
                assert response.status == 422
                pages[language] = await response.text()
    assert '<li data-code="no_language">' in pages["zh"]
    assert "tips.whale_points：问法缺少英文内容" in pages["zh"]
    assert "tips.whale_points: no English questions" in pages["en"]


def test_the_entry_is_written_in_the_files_layout_and_reads_back_as_written() -> None:
    files = read_folder(PROJECT_ROOT / "knowledge")
    hostile = '{{ 7*7 }} <b>"quoted": yes</b>'
    entry = NewEntry(
        Label("collect.whale_points"),
        {Language.ZH: "鲸鱼积分", Language.EN: "- whale: points"},
        {Language.ZH: "第一行\n\n第三行", Language.EN: f"  {hostile}\n\tindented"},
        {Language.ZH: ["鲸鱼积分呢", "鲸鱼积分呢 "], Language.EN: [hostile]},
    )
    edit = add_entry(files, entry)
    added = edit.files["faq.yaml"][len(files["faq.yaml"]) :]
    assert added.startswith("  - id: collect.whale_points\n    title:\n")
    assert edit.files["faq.yaml"].startswith(files["faq.yaml"])
    loaded = load_knowledge_files(edit.files)
    assert loaded.problems == []
    written = loaded.entries[Label("collect.whale_points")]
    assert written.title[Language.EN] == "- whale: points"
    assert written.answer[Language.ZH] == "第一行\n\n第三行"
    assert written.answer[Language.EN] == f"{hostile}\n\tindented"
    assert written.questions == {Language.ZH: ["鲸鱼积分呢"], Language.EN: [hostile]}
    with pytest.raises(EditError):
        add_entry(edit.files, entry)


def test_an_entry_id_is_a_label_only_under_an_faq_topic() -> None:
    assert Label("tips.whale_points").is_faq
    assert Label("tips.whale_points") is Label("tips.whale_points")
    assert Label("tips.whale_points") not in set(Label)  # the fixed labels stay fixed
    for value in ("diagnose.whale", "handoff.x", "tips.", "tips.A", "tips", "tips.x"):
        with pytest.raises(ValueError):
            Label(value)

"""The knowledge loop in the console over real HTTP, on both database tiers: a supervisor
turns a cluster of unanswered questions into phrasings of an entry, previews the draft on the
NLU sets, publishes it and the next web chat message is answered by the entry; rollback is
one click; out-of-scope examples; the `kb check` rules, the test-set confirmation, the
supervisor role, CSRF, and the texts kept as data on every page."""

from __future__ import annotations

import re

import aiohttp
from sqlalchemy import select

from bot.faq import store
from bot.faq.files import read_folder
from bot.faq.knowledge import load_valid_knowledge_files
from bot.settings import PROJECT_ROOT
from bot.storage.models import AuditEntry
from bot.types import Label, Language
from tests.support import console, knowledge
from tests.support.console import Server, agent_session
from tests.support.knowledge import (
    NEW_QUESTION,
    TARGET,
    answered_by,
    asked_and_unanswered,
    in_use,
    unanswered,
    write_sets,
)
from webhook_server import RUNTIME

# The fixtures, used by name: the console on either tier, a client session.
kb_server, http = knowledge.kb_server, console.http


async def test_a_cluster_becomes_phrasings_answered_at_the_next_message_then_rolled_back(
    kb_server: Server, http: aiohttp.ClientSession
) -> None:
    server = kb_server
    visitor = await asked_and_unanswered(
        server, http, NEW_QUESTION, "蓝鲸套餐怎么开通啊", "蓝鲸套餐如何开通"
    )
    live = server.app[RUNTIME].bot.knowledge

    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        status, page = await boss.page("/agent/knowledge")
        assert status == 200
        assert "蓝鲸套餐怎么开通" in page and 'id="version-list"' in page
        status, english = await boss.page("/agent/knowledge?lang=en")
        assert status == 200 and '<html lang="en">' in english
        texts = "\n".join([NEW_QUESTION, "蓝鲸套餐如何开通"])
        status, body = await boss.post(
            "/agent/api/knowledge/drafts", kind="phrasings", label=TARGET.value, texts=texts
        )
        assert status == 200, body
        draft = body["draft"]
        assert live.current.version_id == 1  # a draft changes nothing yet

        status, english = await boss.page(f"/agent/knowledge/versions/{draft}?lang=en")
        assert status == 200 and 'id="preview"' in english
        status, page = await boss.page(f"/agent/knowledge/versions/{draft}?lang=zh")
        assert status == 200
        dev = re.search(r'<tr data-set="nlu_dev" data-dropped="(\w+)"', page)
        assert dev and dev.group(1) == "false"
        assert 'id="test-drop"' not in page
        async with server.sessions() as session:
            row = await store.version(session, draft)
            assert row is not None and row.preview is not None
        sets = {s["name"]: s for s in row.preview["sets"]}
        assert sets["nlu_dev"]["after"] > sets["nlu_dev"]["before"]
        assert [c["text"] for c in sets["nlu_dev"]["changes"]] == [NEW_QUESTION]

        status, body = await boss.post(f"/agent/api/knowledge/versions/{draft}/publish")
        assert status == 200, body
        await in_use(live, draft)
        assert answered_by(await visitor.say(NEW_QUESTION)) == TARGET.value

        # One click on version 1 in the list publishes it again.
        status, page = await boss.page("/agent/knowledge")
        assert 'action="/agent/api/knowledge/versions/1/publish"' in page
        status, body = await boss.post("/agent/api/knowledge/versions/1/publish")
        assert status == 200, body
        await in_use(live, 1)
        assert answered_by(await visitor.say(NEW_QUESTION)) is None

    async with server.sessions() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.like("kb_%"))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert actions == ["kb_drafted", "kb_published", "kb_published"]


async def test_out_of_scope_examples_and_texts_kept_as_data(
    kb_server: Server, http: aiohttp.ClientSession
) -> None:
    server = kb_server
    await server.add_agent("老王", supervisor=True)
    hostile = "<script>alert(1)</script>{{ 7*7 }} 能开发票吗"
    await unanswered(server, hostile)
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        status, page = await boss.page("/agent/knowledge")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}" in page
        assert "<script>alert(1)" not in page and "49 能开发票吗" not in page
        status, body = await boss.post(
            "/agent/api/knowledge/drafts", kind="out_of_scope", texts=hostile
        )
        assert status == 200, body
        status, page = await boss.page(f"/agent/knowledge/versions/{body['draft']}")
        assert status == 200 and "<script>alert(1)" not in page
        status, _ = await boss.post(f"/agent/api/knowledge/versions/{body['draft']}/publish")
        assert status == 200
        live = server.app[RUNTIME].bot.knowledge
        await in_use(live, body["draft"])
        assert hostile in live.knowledge.examples[Label.OUT_OF_SCOPE][Language.ZH]
        # Published, the question is no longer a cluster to act on.
        status, page = await boss.page("/agent/knowledge")
        assert 'id="no-clusters"' in page


async def test_a_draft_that_breaks_the_rules_is_refused_with_the_reasons(
    kb_server: Server,
) -> None:
    server = kb_server
    await server.add_agent("老王", supervisor=True)
    taken = load_valid_knowledge_files(read_folder(PROJECT_ROOT / "knowledge"))
    phrasing = taken.entries[Label.FEES_RATES].questions[Language.ZH][0]
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        status, body = await boss.post(
            "/agent/api/knowledge/drafts",
            kind="phrasings",
            label=Label.ABOUT_OVERVIEW.value,
            texts=phrasing,
        )
        assert status == 422 and body["error"]["code"] == "kb_check"
        assert "faq.yaml" in body["error"]["message"]
        # The plain form shows the page again with the problem and where it is.
        async with boss.http.post(
            f"{server.base}/agent/api/knowledge/drafts",
            data={
                "csrf": boss.csrf,
                "kind": "phrasings",
                "label": "about.overview",
                "texts": phrasing,
            },
            allow_redirects=False,
        ) as response:
            assert response.status == 422
            page = await response.text()
        assert 'data-code="kb_check"' in page and "<code>faq.yaml:" in page
        # The reason in the page's language, the phrasing in it as data.
        assert '<li data-code="phrasing_twice">' in page
        assert "一个问法只能属于一个条目" in page and phrasing in page
    async with server.sessions() as session:
        assert await store.count(session) == 1


async def test_a_drop_on_the_test_set_needs_a_second_confirmation(kb_server: Server) -> None:
    server = kb_server
    await server.add_agent("老王", supervisor=True)
    files = read_folder(PROJECT_ROOT / "knowledge")
    rates = load_valid_knowledge_files(files).entries[Label.FEES_RATES].questions[Language.ZH][0]
    near = rates + "呀"  # a fees.rates question today; an exact about.overview phrasing after
    bot = server.app[RUNTIME].bot
    assert bot.knowledge.matcher.parse(near).label == Label.FEES_RATES
    assert bot.settings.kb_eval_dir is not None  # the sets the preview reads, first at the draft
    write_sets(bot.settings.kb_eval_dir, {"test": [(near, Label.FEES_RATES)]})
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        status, body = await boss.post(
            "/agent/api/knowledge/drafts", kind="phrasings", label="about.overview", texts=near
        )
        assert status == 200, body
        draft = body["draft"]
        status, page = await boss.page(f"/agent/knowledge/versions/{draft}")
        assert 'id="test-drop"' in page and 'class="kb-drop"' in page
        status, body = await boss.post(f"/agent/api/knowledge/versions/{draft}/publish")
        assert status == 409 and body["error"]["code"] == "confirm_drop"
        assert bot.knowledge.current.version_id == 1
        status, body = await boss.post(
            f"/agent/api/knowledge/versions/{draft}/publish", confirm_drop="1"
        )
        assert status == 200, body
        await in_use(bot.knowledge, draft)


async def test_only_a_supervisor_with_a_csrf_token_changes_the_knowledge(
    kb_server: Server,
) -> None:
    server = kb_server
    await server.add_agent("小张")
    await server.add_agent("老王", supervisor=True)
    await unanswered(server, NEW_QUESTION)
    async with agent_session(server.base) as agent, agent_session(server.base) as boss:
        assert await agent.login("小张") == 303
        assert await boss.login("老王") == 303
        status, page = await agent.page("/agent/knowledge")
        assert status == 403 and NEW_QUESTION not in page
        assert 'id="nav-knowledge"' not in page
        status, body = await agent.post(
            "/agent/api/knowledge/drafts", kind="out_of_scope", texts=NEW_QUESTION
        )
        assert status == 403, body
        status, body = await agent.post("/agent/api/knowledge/versions/1/publish")
        assert status == 403, body
        status, body = await boss.post(
            "/agent/api/knowledge/drafts", csrf="", kind="out_of_scope", texts=NEW_QUESTION
        )
        assert status == 403 and body["error"]["code"] == "csrf"
        async with (
            aiohttp.ClientSession() as stranger,
            stranger.get(f"{server.base}/agent/knowledge", allow_redirects=False) as response,
        ):
            assert response.status == 303
    async with server.sessions() as session:
        assert await store.count(session) == 1


async def test_a_draft_made_before_another_publish_is_refused(kb_server: Server) -> None:
    server = kb_server
    await server.add_agent("老王", supervisor=True)
    async with agent_session(server.base) as boss:
        assert await boss.login("老王") == 303
        drafts = []
        for text in (NEW_QUESTION, "蓝鲸套餐在哪里开通"):
            status, body = await boss.post(
                "/agent/api/knowledge/drafts", kind="phrasings", label=TARGET.value, texts=text
            )
            assert status == 200, body
            drafts.append(body["draft"])
        status, body = await boss.post(f"/agent/api/knowledge/versions/{drafts[0]}/publish")
        assert status == 200, body
        # Publishing the second would silently undo the first: it must be drafted again.
        status, body = await boss.post(f"/agent/api/knowledge/versions/{drafts[1]}/publish")
        assert status == 409 and body["error"]["code"] == "conflict"
        status, page = await boss.page(f"/agent/knowledge/versions/{drafts[1]}")
        assert 'id="stale"' in page and 'id="publish-form"' not in page
    async with server.sessions() as session:
        assert await store.published_id(session) == drafts[0]

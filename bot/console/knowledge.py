"""The console's knowledge pages: the unanswered clusters with what a supervisor can make of
them, a draft's preview, publishing and rolling back (`bot/escalation/knowledge_desk.py`).

Supervisors only; every POST needs the session's CSRF token like the console's other actions.
A plain form post that is refused renders the page again with the reasons (the draft's `kb
check` problems, the second confirmation a drop on the test set needs); a JSON call gets the
console's JSON error.
"""

from __future__ import annotations

from aiohttp import web

from bot.console.base import ConsoleBase
from bot.console.http import STATUS, done, path_id, wants_json
from bot.escalation.agent_sessions import Viewer
from bot.escalation.core import HandoffError
from bot.escalation.knowledge_desk import KnowledgeRefused
from bot.types import FAQ_TOPICS, Label, Language

# The questions a supervisor may send in one draft (one per line of the form).
MAX_TEXTS = 50


class KnowledgeViews(ConsoleBase):
    async def knowledge_page(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._page_viewer(request)
        if not viewer.is_supervisor:
            return self._forbidden(request, viewer)
        return await self._knowledge(request, viewer)

    async def _knowledge(
        self,
        request: web.Request,
        viewer: Viewer,
        *,
        error: HandoffError | None = None,
        form: dict[str, str] | None = None,
    ) -> web.Response:
        language = self._language(request)[0]
        knowledge = self._parts.knowledge
        entries = [
            (label.value, knowledge.entries[label].title[language])
            for label in sorted(knowledge.entries)
        ]
        intents = [label.value for label in Label if label in knowledge.examples]
        intents.remove(Label.OUT_OF_SCOPE.value)
        return self._render(
            request,
            "knowledge.html",
            page="knowledge",
            viewer=viewer,
            status=STATUS.get(error.code, 400) if error else 200,
            clusters=await self._desk.clusters(),
            versions=await self._desk.versions(),
            entries=entries,
            intents=intents,
            topics=sorted(FAQ_TOPICS),
            form=form or {},
            error=error,
            problems=error.problems if isinstance(error, KnowledgeRefused) else [],
            local=self._time,
        )

    async def draft_page(self, request: web.Request) -> web.StreamResponse:
        viewer = await self._page_viewer(request)
        if not viewer.is_supervisor:
            return self._forbidden(request, viewer)
        return await self._draft_page(request, viewer, path_id(request, "version_id"))

    async def _draft_page(
        self,
        request: web.Request,
        viewer: Viewer,
        version_id: int,
        *,
        error: HandoffError | None = None,
    ) -> web.Response:
        try:
            draft = await self._desk.draft(viewer, version_id)
        except HandoffError as exc:
            status = STATUS.get(exc.code, 400)
            return self._render(
                request, "error.html", page="error", viewer=viewer, status=status, code=exc.code
            )
        return self._render(
            request,
            "knowledge_draft.html",
            page="knowledge",
            viewer=viewer,
            status=STATUS.get(error.code, 400) if error else 200,
            draft=draft,
            error=error,
            problems=error.problems if isinstance(error, KnowledgeRefused) else [],
            local=self._time,
        )

    async def create_draft(self, request: web.Request) -> web.StreamResponse:
        """`kind=phrasings` with `label`, `kind=out_of_scope`, or `kind=new_entry` with
        `entry_id` (or `topic` and `name`), `title_zh`, `title_en`, `answer_zh`, `answer_en`
        and `related` (ids, comma-separated, or `related_1` … `related_3`); `texts` one per
        line."""
        viewer, values = await self._action(request)
        texts = [line for line in values.get("texts", "").splitlines() if line.strip()]
        try:
            if len(texts) > MAX_TEXTS:
                raise HandoffError("bad_request", f"at most {MAX_TEXTS} questions in one draft")
            if values.get("kind") == "out_of_scope":
                version_id = await self._desk.draft_out_of_scope(viewer, texts)
            elif values.get("kind") == "new_entry":
                version_id = await self._desk.draft_entry(
                    viewer,
                    _entry_id(values),
                    {lang: values.get(f"title_{lang.value}", "") for lang in Language},
                    {lang: values.get(f"answer_{lang.value}", "") for lang in Language},
                    texts,
                    _related(values),
                )
            elif values.get("kind") == "phrasings":
                version_id = await self._desk.draft_phrasings(
                    viewer, values.get("label", ""), texts
                )
            else:
                raise HandoffError("bad_request", "kind is phrasings, out_of_scope or new_entry")
        except HandoffError as exc:
            if wants_json(request) or not viewer.is_supervisor:
                raise
            return await self._knowledge(request, viewer, error=exc, form=values)
        if wants_json(request):
            return done(request, values, "/agent/knowledge", draft=version_id)
        raise web.HTTPSeeOther(f"/agent/knowledge/versions/{version_id}")

    async def publish_version(self, request: web.Request) -> web.StreamResponse:
        """Publish a draft, or an earlier version again (a rollback)."""
        viewer, values = await self._action(request)
        version_id = path_id(request, "version_id")
        confirm = values.get("confirm_drop", "") in ("1", "true", "on")
        try:
            await self._desk.publish(viewer, version_id, confirm_drop=confirm)
        except HandoffError as exc:
            if wants_json(request) or not viewer.is_supervisor:
                raise
            return await self._draft_page(request, viewer, version_id, error=exc)
        return done(request, values, "/agent/knowledge", version=version_id)

    def _forbidden(self, request: web.Request, viewer: Viewer) -> web.Response:
        return self._render(
            request, "error.html", page="error", viewer=viewer, status=403, code="forbidden"
        )


def _entry_id(values: dict[str, str]) -> str:
    given = values.get("entry_id", "").strip()
    if given:
        return given
    return f"{values.get('topic', '').strip()}.{values.get('name', '').strip().lower()}"


def _related(values: dict[str, str]) -> list[str]:
    listed = [r.strip() for r in values.get("related", "").split(",")]
    listed += [values.get(f"related_{n}", "").strip() for n in (1, 2, 3)]
    return [r for r in listed if r]

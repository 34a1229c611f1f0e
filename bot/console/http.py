"""The console's HTTP plumbing: security headers, cookies, form and JSON fields, answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.channels.body import read_json_object
from bot.channels.errors import json_error
from bot.cleantext import clean_text
from bot.pageheaders import PAGE_HEADERS

# The pages' shared headers; an agent's pages are never kept by a browser or a proxy.
HEADERS = {**PAGE_HEADERS, "Cache-Control": "no-store"}
# The handoff service's error codes as HTTP statuses.
STATUS = {
    "not_found": 404,
    "forbidden": 403,
    "conflict": 409,
    "bad_request": 400,
    "confirm_drop": 409,  # a draft that lowers test accuracy, published without confirming
    "kb_check": 422,  # a knowledge draft that breaks the rules of `btp-bot kb check`
}
_NEXT = re.compile(r"^/agent(?:/[A-Za-z0-9_-]+)*$")


def set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    always_secure: bool,
    path: str = "/agent",
    max_age: int | None = None,
) -> None:
    """An HttpOnly, SameSite=Strict cookie; Secure behind HTTPS (or always, by setting)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    response.set_cookie(
        name,
        value,
        path=path,
        max_age=max_age,
        httponly=True,
        samesite="Strict",
        secure=always_secure or request.secure or forwarded == "https",
    )


async def fields(request: web.Request) -> dict[str, str]:
    """A POST body, JSON object or form, as text fields."""
    if request.content_type == "application/json":
        body = await read_json_object(request)
        values = {}
        for key, value in body.items():
            if isinstance(value, bool):
                values[key] = "1" if value else "0"
            elif isinstance(value, str | int):
                values[key] = str(value)
            elif value is not None:
                raise json_error(400, "bad_request", f'"{key}" must be text or a number')
        return values
    form = await request.post()
    return {key: clean_text(value) for key, value in form.items() if isinstance(value, str)}


def flag(values: Mapping[str, str], name: str) -> bool:
    value = values.get(name, "").lower()
    if value in ("1", "true", "on"):
        return True
    if value in ("0", "false", "off"):
        return False
    raise json_error(400, "bad_request", f'"{name}" must be true or false')


def path_id(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


def wants_json(request: web.Request) -> bool:
    """The page's script (or an API client) asks, not a plain form post."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept or request.content_type == "application/json"


def done(
    request: web.Request, values: Mapping[str, str], default: str, **result: Any
) -> web.StreamResponse:
    """JSON for the page's script; a redirect for a plain form post (no script)."""
    if wants_json(request):
        return web.json_response({"ok": True, **result})
    target = values.get("next", "")
    raise web.HTTPSeeOther(target if _NEXT.fullmatch(target) else default)

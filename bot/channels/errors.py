"""One shape for HTTP errors on every route: `{"error": {"code": ..., "message": ...}}`."""

from __future__ import annotations

import json

from aiohttp import web

_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity,
    429: web.HTTPTooManyRequests,
    503: web.HTTPServiceUnavailable,
}


def json_error(status: int, code: str, message: str) -> web.HTTPException:
    """An aiohttp HTTP exception carrying the JSON error body; raise it from a handler."""
    body = json.dumps({"error": {"code": code, "message": message}})
    error: web.HTTPException = _ERRORS[status](text=body, content_type="application/json")
    return error

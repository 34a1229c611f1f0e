"""The one reader for JSON request bodies, used by every endpoint that takes JSON.

`read_model` reads a body as a pydantic model: what the endpoint accepts is declared once,
as a model, and what breaks it is a 400 naming the field (`bot.validation`).

What is refused, with a 4xx and never a 500: a body over the size limit (aiohttp's 413), bytes
that are not UTF-8, text that is not JSON, NaN and Infinity (not JSON, though Python's parser
takes them), nesting deeper than `MAX_DEPTH` (Python's parser recurses and would raise
RecursionError past about a thousand levels; code that walks the value later recurses too).
Escaped lone surrogates ("\\ud800") are replaced by U+FFFD in every string and key: a client
that cut an emoji in half still gets an answer, and nothing downstream meets a string that
cannot be encoded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.channels.errors import json_error
from bot.cleantext import replace_surrogates as _replace_surrogates
from bot.validation import first_problem

M = TypeVar("M", bound=BaseModel)
MAX_BODY = 64 * 1024
MAX_DEPTH = 32
# An escape that decodes to a surrogate; a well-formed pair decodes to one character, so only a
# lone half is left in the parsed value. (An escaped backslash before "ud800" matches too: that
# only costs a walk over the value.)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class BadBody(ValueError):
    """The body is not the JSON it should be; `code` and the message are safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _refuse_constant(token: str) -> NoReturn:
    raise BadBody("bad_json", f"{token} is not JSON")


def parse_json(
    raw: bytes,
    *,
    parse_float: Callable[[str], Any] | None = None,
    replace_surrogates: bool = True,
) -> Any:
    """The JSON value in `raw`, checked as the module says; raises BadBody. Without
    `replace_surrogates` lone surrogates stay, for a caller whose contract refuses them."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody("bad_json", "the body is not valid UTF-8") from exc
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=parse_float)
    except RecursionError as exc:
        raise BadBody("too_deep", f"the body nests deeper than {MAX_DEPTH} levels") from exc
    except BadBody:
        raise
    except ValueError as exc:  # JSONDecodeError, and integers over Python's 4,300 digits
        raise BadBody("bad_json", "the body is not valid JSON") from exc
    # Each level opens a bracket: with fewer brackets than the limit (the usual case, counted
    # in C) the value cannot be too deep, and without a surrogate escape there is nothing to fix.
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    fix = replace_surrogates and _SURROGATE_ESCAPE.search(text) is not None
    if deep or fix:
        value = _checked(value, 0, _replace_surrogates if fix else _same)
    return value


def _same(text: str) -> str:
    return text


def _checked(value: Any, depth: int, fix: Callable[[str], str]) -> Any:
    """`value` with its strings passed through `fix`; raises BadBody past MAX_DEPTH."""
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise BadBody("too_deep", f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            return [_checked(item, depth + 1, fix) for item in value]
        return {fix(key): _checked(item, depth + 1, fix) for key, item in value.items()}
    return value


def parse_json_object(
    raw: bytes, *, parse_float: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """`raw` as a JSON object; raises the HTTP 400 error to answer with."""
    try:
        value = parse_json(raw, parse_float=parse_float)
    except BadBody as exc:
        raise json_error(400, exc.code, exc.message) from exc
    if not isinstance(value, dict):
        raise json_error(400, "bad_request", "the body must be a JSON object")
    return value


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object (aiohttp answers 413 past `client_max_size`)."""
    return parse_json_object(await request.read())


def parse_model(
    raw: bytes, model: type[M], *, parse_float: Callable[[str], Any] | None = None
) -> M:
    """`raw` as `model`; raises the HTTP 400 error to answer with, naming the wrong field."""
    value = parse_json_object(raw, parse_float=parse_float)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise json_error(400, "bad_request", first_problem(exc).message) from exc


async def read_model(request: web.Request, model: type[M]) -> M:
    """The request's body as `model` (see `parse_model`)."""
    return parse_model(await request.read(), model)

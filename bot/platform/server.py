"""The platform's REST API (docs/platform-api.md) served over any `PlatformGateway`.

It lets a separate process, or B特派's own team, stand where the embedded platform stands: the
bot's `HttpPlatform` talks to it exactly as it would talk to the real platform. Handlers only
parse, call the gateway and encode; every failure leaves as a JSON error body, and input the
contract does not allow is a 4xx, never a 500.

Over 400 lines: one handler per endpoint of the platform API, each parse-call-encode.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from bot.channels.body import BadBody, parse_json
from bot.platform import codec
from bot.platform.gateway import (
    IDEMPOTENCY_HEADER,
    MAX_IDEMPOTENCY_KEY,
    MAX_RECENT_ATTEMPTS,
    AmountMismatch,
    BindCodesPaused,
    MerchantNotActive,
    PlatformGateway,
    PlatformRejected,
    PlatformUnavailable,
)
from bot.platform.models import ResetResult
from bot.platform.sql import SqlPlatform
from bot.settings import Settings
from bot.storage.db import create_engine, session_factory, upgrade

log = logging.getLogger(__name__)
W = TypeVar("W", bound=BaseModel)

MAX_BODY = 16 * 1024
MAX_LIMIT = 200
MAX_DESCRIPTION = 200
# The longest identifier any record can have; a longer one is simply not found.
MAX_KEY = 64

GATEWAY: web.AppKey[PlatformGateway] = web.AppKey("platform_gateway")
API_KEY: web.AppKey[str | None] = web.AppKey("platform_api_key")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    # The router's 404 (no such route) differs from a missing record's "not_found", so a client
    # pointed at the wrong base URL sees a broken platform, not an order that does not exist.
    404: "no_route",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class BadInput(Exception):
    """The request breaks the contract; answered with 400 and this code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(Exception):
    """The record the path names does not exist; answered with 404."""


def _json(payload: codec.JsonObject, status: int = 200) -> web.Response:
    """UTF-8 JSON with Chinese text as itself, readable in the platform team's logs."""
    return web.json_response(payload, status=status, dumps=_dumps)


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(codec.encode_error(code, message), status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as `{"error": {"code", "message"}}`; only a real fault is a 5xx."""
    try:
        return await handler(request)
    except BadInput as exc:
        return _error(400, exc.code, exc.message)
    except codec.CodecError as exc:
        return _error(400, exc.code, str(exc))
    except NotFound as exc:
        return _error(404, "not_found", str(exc))
    except BindCodesPaused:
        body = codec.encode_error("bind_codes_paused", "too many wrong bind codes; try later")
        return _json(body, 429)
    except AmountMismatch as exc:
        return _error(409, "amount_mismatch", str(exc))
    except MerchantNotActive as exc:
        return _json(codec.encode_merchant_not_active(exc.status), 422)
    except PlatformRejected as exc:
        return _error(400, "rejected", str(exc) or "the platform refused the request")
    except PlatformUnavailable:
        log.warning(
            "platform back end unavailable for %s %s", request.method, request.path, exc_info=True
        )
        return _error(503, "unavailable", "the platform cannot answer now")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(
            exc.status, _STATUS_CODES.get(exc.status, "http_error"), exc.reason or "error"
        )
        for name in ("Allow", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except ConnectionResetError:
        raise  # the client went away mid-request; nothing to answer and no fault of ours
    except Exception:
        log.exception("platform API failed on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bearer key on every route but the health check; the key itself is never logged."""
    expected = request.app[API_KEY]
    if expected is None or request.path == "/v1/health":
        return await handler(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    valid = scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), expected.encode("utf-8")
    )
    if not valid:
        raise web.HTTPUnauthorized(
            reason="a valid API key is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return await handler(request)


# Reading requests

# Not for a payer's eyes: control characters but the line break, zero-width and bidirectional
# formatting, line and paragraph separators, the byte order mark; and lone surrogates, which
# are not text at all. The pattern of `description` in docs/platform-openapi.yaml, inverted.
_HIDDEN = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]"
)


def _key(value: str, max_length: int = MAX_KEY) -> str | None:
    """The identifier, or None when no record could have it (too long, control characters)."""
    if not value or len(value) > max_length or not value.isprintable():
        return None
    return value


def _path_key(request: web.Request, name: str) -> str | None:
    return _key(request.match_info[name])


def _filter_key(request: web.Request, name: str) -> str | None:
    """The id a list is filtered by. One longer than any identifier breaks the contract and
    is refused (a lookup by it just finds nothing); otherwise as `_key`."""
    value = request.match_info[name]
    if len(value) > MAX_KEY:
        raise BadInput("invalid_field", f"{name}: at most {MAX_KEY} characters")
    return _key(value)


def _limit(request: web.Request, default: int) -> int:
    text = request.query.get("limit")
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise BadInput("invalid_limit", f"limit: an integer from 1 to {MAX_LIMIT}")
    return int(text)


def _since(request: web.Request) -> datetime | None:
    text = request.query.get("since")
    return None if text is None else codec.decode_datetime(text, "since")


async def _request(request: web.Request, model: type[W]) -> W:
    """The request's JSON body as `model`; numbers parse as Decimal so no amount passes
    through a float. Lone surrogates stay: the contract refuses them, rather than guess."""
    try:
        value: Any = parse_json(await request.read(), parse_float=Decimal, replace_surrogates=False)
    except BadBody as exc:
        raise BadInput("invalid_json", f"the body is not valid JSON: {exc.message}") from exc
    return codec.decode(model, value)


def _description(text: str | None) -> str | None:
    """Free text for the payer, without characters that would hide or reorder what they read."""
    if text is None:
        return None
    if len(text) > MAX_DESCRIPTION or _HIDDEN.search(text):
        raise BadInput(
            "invalid_field", f"description: at most {MAX_DESCRIPTION} printable characters"
        )
    return text


# Handlers


async def health(_request: web.Request) -> web.Response:
    """The process is up; open without a key so load balancers can probe it."""
    return _json({"status": "ok"})


def _lookup(
    name: str,
    what: str,
    fetch: Callable[[PlatformGateway, str], Awaitable[object | None]],
    wire: type[codec._Wire],
) -> Handler:
    """A GET of the one record the path's `name` identifies; 404 "no such `what`" without it."""

    async def handler(request: web.Request) -> web.Response:
        key = _path_key(request, name)
        record = await fetch(request.app[GATEWAY], key) if key else None
        if record is None:
            raise NotFound(f"no such {what}")
        return _json(codec.encode(wire.from_domain(record)))

    return handler


get_merchant = _lookup(
    "merchant_id", "merchant", lambda gateway, key: gateway.get_merchant(key), codec.MerchantWire
)


async def list_orders(request: web.Request) -> web.Response:
    key, since, limit = _filter_key(request, "merchant_id"), _since(request), _limit(request, 50)
    orders = await request.app[GATEWAY].list_orders(key, since=since, limit=limit) if key else []
    return _json(codec.encode(codec.OrderList.from_domain({"items": orders})))


async def list_accounts(request: web.Request) -> web.Response:
    key = _filter_key(request, "merchant_id")
    accounts = await request.app[GATEWAY].list_accounts(key) if key else []
    return _json(codec.encode(codec.AccountList.from_domain({"items": accounts})))


async def list_withdrawals(request: web.Request) -> web.Response:
    key, limit = _filter_key(request, "merchant_id"), _limit(request, 10)
    withdrawals = await request.app[GATEWAY].list_withdrawals(key, limit=limit) if key else []
    return _json(codec.encode(codec.WithdrawalList.from_domain({"items": withdrawals})))


async def recent_payment_attempts(request: web.Request) -> web.Response:
    since = _since(request)
    if since is None:
        raise BadInput("invalid_field", "since: required")
    text = request.query.get("limit")
    limit = MAX_RECENT_ATTEMPTS
    if text is not None:
        if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= MAX_RECENT_ATTEMPTS:
            raise BadInput("invalid_limit", f"limit: an integer from 1 to {MAX_RECENT_ATTEMPTS}")
        limit = int(text)
    attempts = await request.app[GATEWAY].recent_payment_attempts(since, limit=limit)
    return _json(codec.encode(codec.AttemptSeenList.from_domain({"items": attempts})))


get_order = _lookup(
    "order_no", "order", lambda gateway, key: gateway.get_order(key), codec.OrderWire
)


async def resync_order(request: web.Request) -> web.Response:
    key = _path_key(request, "order_no")
    if key is None:
        raise NotFound("no such order")
    try:
        result = await request.app[GATEWAY].resync_order(key)
    except LookupError as exc:
        raise NotFound("no such order") from exc
    return _json(codec.encode(codec.ResyncResultWire.from_domain(result)))


async def record_payment_status(request: web.Request) -> web.Response:
    """A signed payment event, held against the order: forward only, the amount must match."""
    body = await _request(request, codec.PaymentStatusRequest)
    key = _path_key(request, "order_no")
    gateway = request.app[GATEWAY]
    result = await gateway.record_payment_status(key, body.status, body.amount) if key else None
    if result is None:
        raise NotFound("no such order")
    return _json(codec.encode(codec.PaymentStatusResultWire.from_domain(result)))


get_account = _lookup(
    "login", "account", lambda gateway, key: gateway.get_account(key), codec.AccountWire
)


get_withdrawal = _lookup(
    "withdrawal_id",
    "withdrawal",
    lambda gateway, key: gateway.get_withdrawal(key),
    codec.WithdrawalWire,
)


get_payment_link = _lookup(
    "link_id",
    "payment link",
    lambda gateway, key: gateway.get_payment_link(key),
    codec.PaymentLinkWire,
)


async def create_payment_link(request: web.Request) -> web.Response:
    body = await _request(request, codec.PaymentLinkRequest)
    merchant_id, description = _key(body.merchant_id), _description(body.description)
    gateway = request.app[GATEWAY]
    if merchant_id is None or await gateway.get_merchant(merchant_id) is None:
        raise NotFound("no such merchant")
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and _key(key, MAX_IDEMPOTENCY_KEY) is None:
        raise BadInput("invalid_idempotency_key", "the Idempotency-Key header is not a key")
    link = await gateway.create_payment_link(
        merchant_id, body.amount, description, idempotency_key=key
    )
    return _json(codec.encode(codec.PaymentLinkWire.from_domain(link)), status=201)


async def start_password_reset(request: web.Request) -> web.Response:
    """Always 202 with the same shape, so the answer cannot be used to probe for logins."""
    login = _key((await _request(request, codec.PasswordResetRequest)).login)
    gateway = request.app[GATEWAY]
    result = await gateway.start_password_reset(login) if login else None
    reset = codec.ResetResultWire.from_domain(result or ResetResult(sent=False))
    return _json(codec.encode(reset), status=202)


async def redeem_bind_code(request: web.Request) -> web.Response:
    code = _key((await _request(request, codec.BindCodeRequest)).code)
    merchant_id = await request.app[GATEWAY].redeem_bind_code(code) if code else None
    return _json(codec.encode(codec.BindResultWire(merchant_id=merchant_id)))


def create_platform_app(gateway: PlatformGateway, api_key: str | None) -> web.Application:
    """The API over `gateway`; with `api_key` every route but /v1/health needs the bearer key."""
    if api_key is not None and not api_key.strip():
        raise ValueError("the platform API key is empty; pass None to serve without a key")
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors, _auth])
    app[GATEWAY] = gateway
    app[API_KEY] = api_key
    app.router.add_routes(
        [
            web.get("/v1/health", health),
            web.get("/v1/merchants/{merchant_id}", get_merchant),
            web.get("/v1/merchants/{merchant_id}/orders", list_orders),
            web.get("/v1/merchants/{merchant_id}/accounts", list_accounts),
            web.get("/v1/merchants/{merchant_id}/withdrawals", list_withdrawals),
            web.get("/v1/payment-attempts", recent_payment_attempts),
            web.get("/v1/orders/{order_no}", get_order),
            web.post("/v1/orders/{order_no}/resync", resync_order),
            web.post("/v1/orders/{order_no}/payment-status", record_payment_status),
            web.get("/v1/accounts/{login}", get_account),
            web.get("/v1/withdrawals/{withdrawal_id}", get_withdrawal),
            web.post("/v1/payment-links", create_payment_link),
            web.get("/v1/payment-links/{link_id}", get_payment_link),
            web.post("/v1/password-resets", start_password_reset),
            web.post("/v1/bind-codes/redeem", redeem_bind_code),
        ]
    )
    return app


async def run_platform_server(settings: Settings, host: str, port: int) -> None:
    """Serve the embedded platform on `settings.database_url` over HTTP until cancelled."""
    db = create_engine(settings.database_url, settings)
    try:
        await upgrade(db)
        gateway = SqlPlatform(
            session_factory(db),
            shares_bot_database=False,
            public_url=settings.platform_public_url,
            bind_code_secret=settings.bind_code_key,
            bind_limit=settings.bind_limit,
        )
        secret = settings.platform_api_key
        runner = web.AppRunner(
            create_platform_app(gateway, secret.get_secret_value() if secret else None)
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            bound_host, bound_port = runner.addresses[0][:2]
            auth = "with an API key" if secret else "WITHOUT an API key"
            print(f"platform API on http://{bound_host}:{bound_port}/v1 ({auth})", flush=True)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
    finally:
        await db.dispose()

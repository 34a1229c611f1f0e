"""`HttpPlatform`: the gateway over B特派's platform REST API (docs/platform-api.md).

A slow or broken platform must cost a chat message a few seconds at most, so every attempt has
a total timeout, only idempotent calls are retried (a payment link is never created twice), and
a circuit breaker makes calls fail at once while the platform keeps failing. Every failure
surfaces as `PlatformUnavailable` (the user is offered a person) or `PlatformRejected` (the
platform refused the input). Logs carry the operation name, never the key, URL or body.

Over 400 lines: one method per operation of the `PlatformGateway` contract over HTTP, with the
retry, timeout and circuit-breaker rules they share.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel
from yarl import URL

from bot.platform import codec
from bot.platform.breaker import BreakerState, CircuitBreaker
from bot.platform.gateway import (
    IDEMPOTENCY_HEADER,
    MAX_RECENT_ATTEMPTS,
    AmountMismatch,
    BindCodesPaused,
    MerchantNotActive,
    PlatformRejected,
    PlatformUnavailable,
)
from bot.platform.models import (
    Account,
    AttemptSeen,
    Merchant,
    Order,
    OrderStatus,
    PaymentLink,
    PaymentStatusResult,
    ResetResult,
    ResyncResult,
    Withdrawal,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class RecordNotFound(PlatformRejected, LookupError):
    """The order to act on does not exist; a `LookupError` like `SqlPlatform` raises."""


class _Transient(Exception):
    """One attempt failed in a way another attempt might not (timeout, refused, 5xx, garbage)."""


class HttpPlatform:
    """The platform API client; share one per process and close it on shutdown."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout: float = 3.0,
        retries: int = 2,
        breaker: CircuitBreaker | None = None,
        session: aiohttp.ClientSession | None = None,
        backoff: float = 0.1,
    ) -> None:
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be positive, retries and backoff not negative")
        self._base = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        self._breaker = breaker or CircuitBreaker()
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"HttpPlatform({self._base!r})"

    async def __aenter__(self) -> HttpPlatform:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this client opened; an injected session belongs to its owner."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def available(self, timeout: float) -> bool:
        """Whether the platform answers now, for a readiness probe: False at once while the
        breaker is open (the chats' own calls found it down), else one `GET /v1/health` within
        `timeout` seconds, without retries and without counting for the breaker."""
        if self._breaker.state is BreakerState.OPEN:
            return False
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(
                URL(self._base + "/v1/health", encoded=True),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    # The gateway

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        return await self._get("get_merchant", _merchant, "merchants", merchant_id)

    async def get_order(self, order_no: str) -> Order | None:
        return await self._get("get_order", _order, "orders", order_no)

    async def list_orders(
        self, merchant_id: str, *, since: datetime | None = None, limit: int = 50
    ) -> list[Order]:
        params = {"limit": str(limit)}
        if since is not None:
            params["since"] = codec.encode_datetime(since)
        return await self._list(
            "list_orders", _orders, ("merchants", merchant_id, "orders"), params
        )

    async def get_account(self, login: str) -> Account | None:
        return await self._get("get_account", _account, "accounts", login)

    async def list_accounts(self, merchant_id: str) -> list[Account]:
        return await self._list(
            "list_accounts", _accounts, ("merchants", merchant_id, "accounts"), {}
        )

    async def get_withdrawal(self, withdrawal_id: str) -> Withdrawal | None:
        return await self._get("get_withdrawal", _withdrawal, "withdrawals", withdrawal_id)

    async def list_withdrawals(self, merchant_id: str, *, limit: int = 10) -> list[Withdrawal]:
        return await self._list(
            "list_withdrawals",
            _withdrawals,
            ("merchants", merchant_id, "withdrawals"),
            {"limit": str(limit)},
        )

    async def get_payment_link(self, link_id: str) -> PaymentLink | None:
        return await self._get("get_payment_link", _payment_link, "payment-links", link_id)

    async def recent_payment_attempts(
        self, since: datetime, *, limit: int = MAX_RECENT_ATTEMPTS
    ) -> list[AttemptSeen]:
        params = {"since": codec.encode_datetime(since), "limit": str(limit)}
        return await self._list("recent_payment_attempts", _attempts, ("payment-attempts",), params)

    async def create_payment_link(
        self,
        merchant_id: str,
        amount: Decimal,
        description: str | None,
        *,
        idempotency_key: str | None = None,
    ) -> PaymentLink:
        body = codec.PaymentLinkRequest.model_construct(
            merchant_id=merchant_id, amount=amount, description=description
        )  # not validated here: refusing an amount is the platform's answer to give
        # With a key the platform answers a repeat with the first link, so retrying is safe.
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else None
        link = await self._call(
            "create_payment_link",
            "POST",
            _path("payment-links"),
            _payment_link,
            body=body,
            idempotent=idempotency_key is not None,
            headers=headers,
        )
        if link is None:
            raise PlatformRejected("the platform knows no such merchant")
        return link

    async def start_password_reset(self, login: str) -> ResetResult:
        result = await self._call(
            "start_password_reset",
            "POST",
            _path("password-resets"),
            _reset_result,
            body=codec.PasswordResetRequest.model_construct(login=login),
            idempotent=False,
        )
        return result or ResetResult(sent=False)

    async def resync_order(self, order_no: str) -> ResyncResult:
        result = await self._call(
            "resync_order",
            "POST",
            _path("orders", order_no, "resync"),
            _resync_result,
            idempotent=True,
        )
        if result is None:
            raise RecordNotFound(order_no)
        return result

    async def record_payment_status(
        self, order_no: str, status: OrderStatus, amount: Decimal
    ) -> PaymentStatusResult | None:
        """Idempotent: the platform moves an order forward only, so a retry changes nothing."""
        return await self._call(
            "record_payment_status",
            "POST",
            _path("orders", order_no, "payment-status"),
            _payment_status_result,
            body=codec.PaymentStatusRequest.model_construct(status=status, amount=amount),
            idempotent=True,
        )

    async def redeem_bind_code(self, code: str) -> str | None:
        return await self._call(
            "redeem_bind_code",
            "POST",
            _path("bind-codes", "redeem"),
            _bind_result,
            body=codec.BindCodeRequest.model_construct(code=code),
            idempotent=False,
        )

    # The exchange

    async def _get(
        self, operation: str, decode: Callable[[Any], T], collection: str, key: str
    ) -> T | None:
        path = _path(collection, key)
        return await self._call(operation, "GET", path, decode, idempotent=True)

    async def _list(
        self,
        operation: str,
        decode: Callable[[Any], list[T]],
        segments: tuple[str, ...],
        params: dict[str, str],
    ) -> list[T]:
        path = _path(*segments)
        items = await self._call(operation, "GET", path, decode, params, idempotent=True)
        return items or []

    async def _call(
        self,
        operation: str,
        method: str,
        path: str | None,
        decode: Callable[[Any], T],
        params: dict[str, str] | None = None,
        *,
        body: BaseModel | None = None,
        idempotent: bool,
        headers: dict[str, str] | None = None,
    ) -> T | None:
        """The decoded answer, or None when the record does not exist (404 "not_found")."""
        if path is None:
            return None
        with self._breaker.guard():
            attempts = 1 + (self._retries if idempotent else 0)
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(self._delay(attempt))
                try:
                    return await self._attempt(
                        operation, method, path, decode, params, body, headers
                    )
                except _Transient as exc:
                    failure = exc
                    log.debug("platform %s attempt %d failed: %s", operation, attempt + 1, exc)
            log.info("platform %s failed after %d attempt(s): %s", operation, attempts, failure)
            raise PlatformUnavailable(f"platform {operation}: {failure}") from (
                failure.__cause__ or failure
            )

    async def _attempt(
        self,
        operation: str,
        method: str,
        path: str,
        decode: Callable[[Any], T],
        params: dict[str, str] | None,
        body: BaseModel | None,
        headers: dict[str, str] | None = None,
    ) -> T | None:
        status, payload = await self._exchange(method, path, params, body, headers)
        if 200 <= status < 300:
            try:
                return decode(payload)
            except codec.CodecError as exc:
                raise _Transient(f"malformed response ({exc})") from exc
        error = codec.decode_error(payload)
        code = error.code if error is not None else None
        if status == 404 and code == "not_found":
            return None
        if status == 429 and code == "bind_codes_paused":
            raise BindCodesPaused("the platform paused binding")  # an answer, not a failure
        if status == 409 and code == "amount_mismatch":
            raise AmountMismatch(error.message if error else "the amount does not match")
        refusal = error.merchant_status if error and code == "merchant_not_active" else None
        if status == 422 and refusal is not None:
            raise MerchantNotActive(refusal)  # without a status: refused all the same, below
        if status in (400, 422):
            message = error.message if error is not None else f"HTTP {status}"
            log.debug("platform %s rejected: %s", operation, message)
            raise PlatformRejected(message)
        if status >= 500 or status == 429:
            raise _Transient(f"HTTP {status}")
        # 401/403, an unknown route, anything else: retrying cannot help, a person must look.
        log.info("platform %s refused with HTTP %d", operation, status)
        raise PlatformUnavailable(f"platform {operation}: HTTP {status}")

    async def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: BaseModel | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One round trip: the status and the parsed JSON body (None when it is not JSON)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = URL(self._base + path, encoded=True)
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=codec.encode(body) if body is not None else None,
                headers={**self._headers, **headers} if headers else self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError as exc:
            raise _Transient("timed out") from exc
        except aiohttp.ClientError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from exc
        try:
            return status, json.loads(raw, parse_float=Decimal) if raw else None
        except (ValueError, RecursionError):
            return status, None

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so retrying clients do not arrive in step."""
        ceiling = self._backoff * (1 << (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _path(*segments: str) -> str | None:
    """The versioned path with each segment escaped; None if a key is empty (no such record)."""
    if not all(segments):
        return None
    return "/v1/" + "/".join(_escape(s) for s in segments)


def _escape(segment: str) -> str:
    escaped = quote(segment, safe="")
    return escaped.replace(".", "%2E") if escaped in {".", ".."} else escaped


# Reading answers: the wire model, then the gateway's dataclass.


def _merchant(payload: Any) -> Merchant:
    return codec.decode(codec.MerchantWire, payload).domain()


def _order(payload: Any) -> Order:
    return codec.decode(codec.OrderWire, payload).domain()


def _orders(payload: Any) -> list[Order]:
    return [item.domain() for item in codec.decode(codec.OrderList, payload).items]


def _account(payload: Any) -> Account:
    return codec.decode(codec.AccountWire, payload).domain()


def _accounts(payload: Any) -> list[Account]:
    return [item.domain() for item in codec.decode(codec.AccountList, payload).items]


def _withdrawal(payload: Any) -> Withdrawal:
    return codec.decode(codec.WithdrawalWire, payload).domain()


def _withdrawals(payload: Any) -> list[Withdrawal]:
    return [item.domain() for item in codec.decode(codec.WithdrawalList, payload).items]


def _attempts(payload: Any) -> list[AttemptSeen]:
    return [item.domain() for item in codec.decode(codec.AttemptSeenList, payload).items]


def _payment_link(payload: Any) -> PaymentLink:
    return codec.decode(codec.PaymentLinkWire, payload).domain()


def _reset_result(payload: Any) -> ResetResult:
    return codec.decode(codec.ResetResultWire, payload).domain()


def _resync_result(payload: Any) -> ResyncResult:
    return codec.decode(codec.ResyncResultWire, payload).domain()


def _payment_status_result(payload: Any) -> PaymentStatusResult:
    return codec.decode(codec.PaymentStatusResultWire, payload).domain()


def _bind_result(payload: Any) -> str | None:
    return codec.decode(codec.BindResultWire, payload).merchant_id

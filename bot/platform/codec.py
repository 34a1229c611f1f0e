"""The platform models as JSON, one wire format for the HTTP client and the server.

Amounts travel as decimal strings ("88.50") so no float ever rounds a price; moments as ISO 8601
with their offset; enums as their values. Decoders check every field they read and raise
`CodecError` (a `ValueError`): the server answers it with 400, the client treats it as a broken
platform. Unknown fields are ignored, so the platform may add fields without breaking the bot.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from bot.platform.models import (
    Account,
    AccountStatus,
    AttemptStatus,
    ChannelRecord,
    FailureCode,
    Merchant,
    MerchantStatus,
    Method,
    Order,
    OrderStatus,
    PaymentAttempt,
    PaymentLink,
    PaymentStatusResult,
    ResetResult,
    ResyncResult,
    StatusChange,
    Withdrawal,
    WithdrawalStatus,
)

JsonObject = dict[str, Any]
E = TypeVar("E", bound=StrEnum)


class CodecError(ValueError):
    """A JSON value does not have the shape the contract promises; the message names the field."""


# Scalars


def encode_decimal(amount: Decimal) -> str:
    """Fixed-point text, never an exponent: Decimal("88.50") -> "88.50"."""
    return format(amount, "f")


def decode_decimal(value: Any, name: str = "amount") -> Decimal:
    """A finite decimal from a string or a JSON integer; floats are refused as inexact."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise CodecError(f'{name}: expected a decimal string like "88.50"')
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation as exc:
        raise CodecError(f"{name}: not a decimal number") from exc
    if not amount.is_finite():
        raise CodecError(f"{name}: not a finite number")
    return amount


def encode_datetime(moment: datetime) -> str:
    """ISO 8601 with an offset; a naive moment is UTC, as everything the platform stores."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def decode_datetime(value: Any, name: str) -> datetime:
    """An ISO 8601 moment that states its offset; a bare local time would be ambiguous."""
    if not isinstance(value, str):
        raise CodecError(f"{name}: expected an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise CodecError(f"{name}: not an ISO 8601 date-time") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CodecError(f"{name}: the date-time needs an offset such as +08:00 or Z")
    return moment


class Fields:
    """Typed reads from one JSON object, each naming the field when the value is wrong."""

    def __init__(self, value: Any, name: str = "body") -> None:
        if not isinstance(value, Mapping):
            raise CodecError(f"{name}: expected a JSON object")
        self._data: Mapping[str, Any] = value
        self._name = name

    def _path(self, key: str) -> str:
        return key if self._name == "body" else f"{self._name}.{key}"

    def _required(self, key: str) -> Any:
        if key not in self._data or self._data[key] is None:
            raise CodecError(f"{self._path(key)}: required")
        return self._data[key]

    def raw(self, key: str) -> Any:
        """The value as parsed, for checks the typed reads below do not cover."""
        return self._required(key)

    def text(self, key: str) -> str:
        value = self._required(key)
        if not isinstance(value, str):
            raise CodecError(f"{self._path(key)}: expected a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self._data.get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        value = self._required(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CodecError(f"{self._path(key)}: expected an integer")
        return value

    def flag(self, key: str) -> bool:
        value = self._required(key)
        if not isinstance(value, bool):
            raise CodecError(f"{self._path(key)}: expected true or false")
        return value

    def decimal(self, key: str) -> Decimal:
        return decode_decimal(self._required(key), self._path(key))

    def moment(self, key: str) -> datetime:
        return decode_datetime(self._required(key), self._path(key))

    def opt_moment(self, key: str) -> datetime | None:
        return None if self._data.get(key) is None else self.moment(key)

    def enum(self, key: str, kind: type[E]) -> E:
        value = self.text(key)
        try:
            return kind(value)
        except ValueError as exc:
            raise CodecError(f"{self._path(key)}: unknown value {value!r}") from exc

    def opt_enum(self, key: str, kind: type[E]) -> E | None:
        return None if self._data.get(key) is None else self.enum(key, kind)

    def child(self, key: str) -> Fields:
        return Fields(self._required(key), self._path(key))

    def opt_child(self, key: str) -> Fields | None:
        return None if self._data.get(key) is None else self.child(key)

    def children(self, key: str) -> list[Fields]:
        value = self._required(key)
        if not isinstance(value, list):
            raise CodecError(f"{self._path(key)}: expected a list")
        return [Fields(item, f"{self._path(key)}[{i}]") for i, item in enumerate(value)]


def _opt_datetime(moment: datetime | None) -> str | None:
    return encode_datetime(moment) if moment is not None else None


# Models


def encode_merchant(merchant: Merchant) -> JsonObject:
    return {
        "id": merchant.id,
        "name": merchant.name,
        "status": merchant.status.value,
        "email": merchant.email,
        "phone": merchant.phone,
    }


def decode_merchant(value: Any) -> Merchant:
    f = Fields(value)
    return Merchant(
        f.text("id"),
        f.text("name"),
        f.enum("status", MerchantStatus),
        f.opt_text("email"),
        f.opt_text("phone"),
    )


def encode_account(account: Account) -> JsonObject:
    return {
        "login": account.login,
        "merchant_id": account.merchant_id,
        "status": account.status.value,
        "failed_attempts": account.failed_attempts,
        "locked_until": _opt_datetime(account.locked_until),
    }


def decode_account(value: Any) -> Account:
    f = Fields(value)
    return Account(
        f.text("login"),
        f.text("merchant_id"),
        f.enum("status", AccountStatus),
        f.integer("failed_attempts"),
        f.opt_moment("locked_until"),
    )


def _encode_attempt(attempt: PaymentAttempt) -> JsonObject:
    return {
        "status": attempt.status.value,
        "at": encode_datetime(attempt.at),
        "failure_code": attempt.failure_code.value if attempt.failure_code else None,
    }


def _decode_attempt(f: Fields) -> PaymentAttempt:
    return PaymentAttempt(
        f.enum("status", AttemptStatus), f.moment("at"), f.opt_enum("failure_code", FailureCode)
    )


def encode_order(order: Order) -> JsonObject:
    channel = order.channel
    return {
        "order_no": order.order_no,
        "merchant_id": order.merchant_id,
        "amount": encode_decimal(order.amount),
        "currency": order.currency,
        "method": order.method.value,
        "status": order.status.value,
        "created_at": encode_datetime(order.created_at),
        "updated_at": _opt_datetime(order.updated_at),
        "payer_phone": order.payer_phone,
        "description": order.description,
        "attempts": [_encode_attempt(a) for a in order.attempts],
        "channel": {"status": channel.status.value, "synced_at": _opt_datetime(channel.synced_at)}
        if channel
        else None,
    }


def decode_order(value: Any) -> Order:
    f = Fields(value)
    channel = f.opt_child("channel")
    return Order(
        order_no=f.text("order_no"),
        merchant_id=f.text("merchant_id"),
        amount=f.decimal("amount"),
        method=f.enum("method", Method),
        status=f.enum("status", OrderStatus),
        created_at=f.moment("created_at"),
        currency=f.text("currency"),
        payer_phone=f.opt_text("payer_phone"),
        description=f.opt_text("description"),
        updated_at=f.opt_moment("updated_at"),
        attempts=tuple(_decode_attempt(a) for a in f.children("attempts")),
        channel=ChannelRecord(channel.enum("status", OrderStatus), channel.opt_moment("synced_at"))
        if channel
        else None,
    )


def encode_withdrawal(withdrawal: Withdrawal) -> JsonObject:
    return {
        "id": withdrawal.id,
        "merchant_id": withdrawal.merchant_id,
        "amount": encode_decimal(withdrawal.amount),
        "status": withdrawal.status.value,
        "requested_at": encode_datetime(withdrawal.requested_at),
        "paid_at": _opt_datetime(withdrawal.paid_at),
        "failure_reason": withdrawal.failure_reason,
    }


def decode_withdrawal(value: Any) -> Withdrawal:
    f = Fields(value)
    return Withdrawal(
        f.text("id"),
        f.text("merchant_id"),
        f.decimal("amount"),
        f.enum("status", WithdrawalStatus),
        f.moment("requested_at"),
        f.opt_moment("paid_at"),
        f.opt_text("failure_reason"),
    )


def encode_payment_link(link: PaymentLink) -> JsonObject:
    return {
        "id": link.id,
        "merchant_id": link.merchant_id,
        "amount": encode_decimal(link.amount),
        "description": link.description,
        "url": link.url,
        "created_at": encode_datetime(link.created_at),
    }


def decode_payment_link(value: Any) -> PaymentLink:
    f = Fields(value)
    return PaymentLink(
        f.text("id"),
        f.text("merchant_id"),
        f.decimal("amount"),
        f.text("url"),
        f.moment("created_at"),
        f.opt_text("description"),
    )


def encode_reset_result(result: ResetResult) -> JsonObject:
    return {"sent": result.sent, "throttled": result.throttled}


def decode_reset_result(value: Any) -> ResetResult:
    f = Fields(value)
    return ResetResult(f.flag("sent"), f.flag("throttled"))


def encode_resync_result(result: ResyncResult) -> JsonObject:
    return {
        "order_no": result.order_no,
        "before": result.before.value,
        "after": result.after.value,
        "channel_status": result.channel_status.value if result.channel_status else None,
        "changed": result.changed,
    }


def decode_resync_result(value: Any) -> ResyncResult:
    f = Fields(value)
    return ResyncResult(
        f.text("order_no"),
        f.enum("before", OrderStatus),
        f.enum("after", OrderStatus),
        f.opt_enum("channel_status", OrderStatus),
        f.flag("changed"),
    )


def encode_payment_status(status: OrderStatus, amount: Decimal) -> JsonObject:
    return {"status": status.value, "amount": encode_decimal(amount)}


def encode_payment_status_result(result: PaymentStatusResult) -> JsonObject:
    return {"order": encode_order(result.order), "change": result.change.value}


def decode_payment_status_result(value: Any) -> PaymentStatusResult:
    f = Fields(value)
    return PaymentStatusResult(decode_order(f.raw("order")), f.enum("change", StatusChange))


def encode_items(items: list[JsonObject]) -> JsonObject:
    """Lists travel wrapped, so paging fields can join them later without breaking clients."""
    return {"items": items}


def decode_items(value: Any) -> list[Any]:
    """The raw items of a list response, for the caller's model decoder."""
    items = Fields(value).raw("items")
    if not isinstance(items, list):
        raise CodecError("items: expected a list")
    return items


def encode_bind_result(merchant_id: str | None) -> JsonObject:
    return {"merchant_id": merchant_id}


def decode_bind_result(value: Any) -> str | None:
    return Fields(value).opt_text("merchant_id")


def encode_error(code: str, message: str) -> JsonObject:
    return {"error": {"code": code, "message": message}}


def encode_merchant_not_active(status: MerchantStatus) -> JsonObject:
    body = encode_error("merchant_not_active", f"the merchant is {status.value}: it cannot collect")
    body["error"]["merchant_status"] = status.value
    return body


def decode_merchant_not_active(value: Any) -> MerchantStatus:
    return Fields(value).child("error").enum("merchant_status", MerchantStatus)


def decode_error_code(value: Any) -> str | None:
    """The `error.code` of an error body, or None when the body is not one of ours."""
    try:
        return Fields(value).child("error").text("code")
    except CodecError:
        return None

"""The platform's wire format as pydantic models: one for the HTTP client and the server.

Each response the platform sends is a model here (`MerchantWire`, `OrderWire`, ...) made from
the gateway's dataclass (`from_domain`) and turned back into it (`domain()`); each request body
is a model too (`PaymentLinkRequest`, ...). Amounts travel as decimal strings ("88.50") so no
float ever rounds a price; moments as ISO 8601 with their offset; enums as their values; fields
are strict (no "5" for an integer, no "yes" for a boolean). Unknown fields are ignored, so the
platform may add fields without breaking the bot. A value that breaks the contract raises
`CodecError` (a `ValueError`) naming the field: the server answers it with 400, the client
treats it as a broken platform. docs/platform-openapi.yaml is checked against these models
(tests/test_openapi_models.py).

Over 400 lines: one pydantic model per wire type of the platform API, in one place so the
client, the server and the OpenAPI check read the same definitions.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from bot.platform.models import (
    Account,
    AccountStatus,
    AttemptSeen,
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
from bot.validation import first_problem

JsonObject = dict[str, Any]
W = TypeVar("W", bound=BaseModel)

# The largest amount the platform takes, and the unit of amounts.
MAX_AMOUNT = Decimal("9999999999.99")
CENT = Decimal("0.01")
# An amount in a request, as text: 0.01 to 9999999999.99, no sign, exponent, leading zero or
# third decimal (docs/platform-openapi.yaml, PaymentLinkRequest.amount).
_AMOUNT_TEXT = re.compile(r"[1-9][0-9]{0,9}(?:\.[0-9]{1,2})?|0\.(?:0[1-9]|[1-9][0-9]?)")


class CodecError(ValueError):
    """A JSON value does not have the shape the contract promises; the message names the field.

    `code`: the error code the server answers with (`invalid_field`, `invalid_amount`);
    `field`: the path of the wrong field ("amount", "attempts.0.at"), "" for the body."""

    def __init__(self, message: str, code: str = "invalid_field", field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field


# Scalars


def encode_decimal(amount: Decimal) -> str:
    """Fixed-point text, never an exponent: Decimal("88.50") -> "88.50"."""
    return format(amount, "f")


def _decimal(value: Any) -> Decimal:
    """A finite decimal from a string or a JSON integer; floats are refused as inexact (the
    readers parse JSON numbers as Decimal, so a number that arrives here is exact)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError('expected a decimal string like "88.50"')
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation as exc:
        raise ValueError("not a decimal number") from exc
    if not amount.is_finite():
        raise ValueError("not a finite number")
    return amount


def decode_decimal(value: Any, name: str = "amount") -> Decimal:
    try:
        return _decimal(value)
    except ValueError as exc:
        raise CodecError(f"{name}: {exc}") from exc


def amount_in_request(value: Any) -> Decimal:
    """An amount a client asks for: more than 0, at most MAX_AMOUNT, whole cents; as text
    written plainly ("88.50", "12") or a JSON number read exactly. Not a number at all is a
    wrong field (`invalid_field`); a number outside these rules is `invalid_amount`, never
    rounded (a third decimal means a bug or a forgery)."""
    amount = _decimal(value)
    refused = PydanticCustomError(
        "invalid_amount", f"more than 0, at most {MAX_AMOUNT}, two decimals at most"
    )
    if isinstance(value, str) and not _AMOUNT_TEXT.fullmatch(value):
        raise refused
    # The range first: the remainder of an amount like 1E+400 cannot be computed.
    if not (Decimal(0) < amount <= MAX_AMOUNT and amount % CENT == 0):
        raise refused
    return amount


def encode_datetime(moment: datetime) -> str:
    """ISO 8601 with an offset; a naive moment is UTC, as everything the platform stores."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _datetime(value: Any) -> datetime:
    """An ISO 8601 moment that states its offset; a bare local time would be ambiguous. (A
    datetime comes only from the gateway's own dataclasses, never from JSON: naive is UTC.)"""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError("not an ISO 8601 date-time") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the date-time needs an offset such as +08:00 or Z")
    return moment


def decode_datetime(value: Any, name: str) -> datetime:
    try:
        return _datetime(value)
    except ValueError as exc:
        raise CodecError(f"{name}: {exc}") from exc


Amount = Annotated[
    Decimal,
    PlainValidator(_decimal),
    PlainSerializer(encode_decimal, return_type=str),
    WithJsonSchema({"type": "string", "x-wire": "amount"}),  # the document's Amount
]
RequestAmount = Annotated[
    Decimal,
    PlainValidator(amount_in_request),
    PlainSerializer(encode_decimal, return_type=str),
    WithJsonSchema({"oneOf": [{"type": "string"}, {"type": "number"}]}),  # text or exact
]
Moment = Annotated[
    datetime,
    PlainValidator(_datetime),
    PlainSerializer(encode_datetime, return_type=str),
    WithJsonSchema({"type": "string", "x-wire": "moment"}),  # the document's Moment
]


def decode(model: type[W], value: Any) -> W:
    """`value` (parsed JSON) as `model`; raises CodecError naming the first wrong field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _codec_error(exc) from exc


def _codec_error(exc: ValidationError) -> CodecError:
    problem = first_problem(exc)
    code = "invalid_amount" if problem.kind == "invalid_amount" else "invalid_field"
    return CodecError(problem.message, code, problem.field)


def encode(model: BaseModel) -> JsonObject:
    """The model as the JSON object it travels as (amounts and moments as strings)."""
    return model.model_dump(mode="json")


class _Wire(BaseModel):
    """Strict on what it reads, silent about fields it does not know. What it writes has every
    field, an optional one as null, so its schema requires them all (serialization mode)."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        from_attributes=True,
        json_schema_serialization_defaults_required=True,
    )

    @classmethod
    def from_domain(cls, value: object) -> Self:
        return cls.model_validate(value, from_attributes=True)

    def fields(self) -> dict[str, Any]:
        """The fields by name, as read (nested models stay models): a dataclass's arguments."""
        return dict(self)


# Responses


class MerchantWire(_Wire):
    id: StrictStr
    name: StrictStr
    status: MerchantStatus
    email: StrictStr | None = None
    phone: StrictStr | None = None

    def domain(self) -> Merchant:
        return Merchant(**self.fields())


class AccountWire(_Wire):
    login: StrictStr
    merchant_id: StrictStr
    status: AccountStatus
    failed_attempts: StrictInt
    locked_until: Moment | None = None
    last_login_at: Moment | None = None

    def domain(self) -> Account:
        return Account(**self.fields())


class PaymentAttemptWire(_Wire):
    status: AttemptStatus
    at: Moment
    failure_code: FailureCode | None = None

    def domain(self) -> PaymentAttempt:
        return PaymentAttempt(**self.fields())


class AttemptSeenWire(_Wire):
    merchant_id: StrictStr
    channel: Method
    status: AttemptStatus
    at: Moment
    failure_code: FailureCode | None = None
    attempt_id: StrictStr | None = None
    order_no: StrictStr | None = None

    def domain(self) -> AttemptSeen:
        return AttemptSeen(**self.fields())


class ChannelRecordWire(_Wire):
    status: OrderStatus
    synced_at: Moment | None = None

    def domain(self) -> ChannelRecord:
        return ChannelRecord(**self.fields())


class OrderWire(_Wire):
    order_no: StrictStr
    merchant_id: StrictStr
    amount: Amount
    currency: StrictStr
    method: Method
    status: OrderStatus
    created_at: Moment
    updated_at: Moment | None = None
    payer_phone: StrictStr | None = None
    description: StrictStr | None = None
    attempts: list[PaymentAttemptWire]
    channel: ChannelRecordWire | None = None

    def domain(self) -> Order:
        attempts = tuple(a.domain() for a in self.attempts)
        channel = self.channel.domain() if self.channel else None
        return Order(**{**self.fields(), "attempts": attempts, "channel": channel})


class WithdrawalWire(_Wire):
    id: StrictStr
    merchant_id: StrictStr
    amount: Amount
    status: WithdrawalStatus
    requested_at: Moment
    paid_at: Moment | None = None
    failure_reason: StrictStr | None = None

    def domain(self) -> Withdrawal:
        return Withdrawal(**self.fields())


class PaymentLinkWire(_Wire):
    id: StrictStr
    merchant_id: StrictStr
    amount: Amount
    description: StrictStr | None = None
    url: StrictStr
    created_at: Moment
    paid_at: Moment | None = None

    def domain(self) -> PaymentLink:
        return PaymentLink(**self.fields())


class ResetResultWire(_Wire):
    sent: StrictBool
    throttled: StrictBool

    def domain(self) -> ResetResult:
        return ResetResult(**self.fields())


class ResyncResultWire(_Wire):
    order_no: StrictStr
    before: OrderStatus
    after: OrderStatus
    channel_status: OrderStatus | None = None
    changed: StrictBool

    def domain(self) -> ResyncResult:
        return ResyncResult(**self.fields())


class PaymentStatusResultWire(_Wire):
    order: OrderWire
    change: StatusChange

    def domain(self) -> PaymentStatusResult:
        return PaymentStatusResult(self.order.domain(), self.change)


class BindResultWire(_Wire):
    merchant_id: StrictStr | None = None


class OrderList(_Wire):
    items: list[OrderWire]


class AccountList(_Wire):
    items: list[AccountWire]


class WithdrawalList(_Wire):
    items: list[WithdrawalWire]


class AttemptSeenList(_Wire):
    items: list[AttemptSeenWire]


class ErrorDetail(_Wire):
    code: StrictStr
    message: StrictStr
    merchant_status: MerchantStatus | None = None


class ErrorBody(_Wire):
    error: ErrorDetail


# Requests


class PaymentLinkRequest(_Wire):
    merchant_id: StrictStr
    amount: RequestAmount
    description: StrictStr | None = None


class PasswordResetRequest(_Wire):
    login: StrictStr


class BindCodeRequest(_Wire):
    code: StrictStr


class PaymentStatusRequest(_Wire):
    status: OrderStatus
    amount: RequestAmount


# Errors


def encode_error(code: str, message: str) -> JsonObject:
    """`{"error": {"code", "message"}}`: the one body of every non-2xx answer."""
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return body.model_dump(mode="json", exclude_none=True)


def encode_merchant_not_active(status: MerchantStatus) -> JsonObject:
    message = f"the merchant is {status.value}: it cannot collect"
    detail = ErrorDetail(code="merchant_not_active", message=message, merchant_status=status)
    return ErrorBody(error=detail).model_dump(mode="json", exclude_none=True)


def decode_error(value: Any) -> ErrorDetail | None:
    """The `error` of an error body, or None when the body is not one of ours."""
    try:
        return decode(ErrorBody, value).error
    except CodecError:
        return None

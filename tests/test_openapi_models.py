"""The OpenAPI documents say what the pydantic models read and write.

For every object schema of docs/platform-openapi.yaml that a model in `bot.platform.codec`
stands for, the JSON schema pydantic derives from the model must agree with the document:
the same properties, the same required ones (a response carries every field, a request
requires those without a default), and for each property the same kind of value (string,
integer, boolean, amount, moment, a list of what, an enum with which values, nullable or
not). The web chat's message body (docs/webchat-openapi.yaml) is checked against its model
the same way, and the payment event against the platform's amount rule.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from bot.channels.webchat import ChatMessage
from bot.notifications import PaymentEvent
from bot.platform import codec
from bot.settings import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
PLATFORM = yaml.safe_load((DOCS / "platform-openapi.yaml").read_text("utf-8"))
WEBCHAT = yaml.safe_load((DOCS / "webchat-openapi.yaml").read_text("utf-8"))
# The document's own scalar schemas, which the models mark with "x-wire" (`WithJsonSchema`).
TERMINAL = {"#/components/schemas/Amount": "amount", "#/components/schemas/Moment": "moment"}

RESPONSES: dict[str, type[BaseModel]] = {
    "Merchant": codec.MerchantWire,
    "Account": codec.AccountWire,
    "PaymentAttempt": codec.PaymentAttemptWire,
    "ChannelRecord": codec.ChannelRecordWire,
    "Order": codec.OrderWire,
    "Withdrawal": codec.WithdrawalWire,
    "PaymentLink": codec.PaymentLinkWire,
    "ResetResult": codec.ResetResultWire,
    "ResyncResult": codec.ResyncResultWire,
    "PaymentStatusResult": codec.PaymentStatusResultWire,
    "BindResult": codec.BindResultWire,
    "OrderList": codec.OrderList,
    "AccountList": codec.AccountList,
    "WithdrawalList": codec.WithdrawalList,
    "AttemptSeen": codec.AttemptSeenWire,
    "AttemptSeenList": codec.AttemptSeenList,
}
REQUESTS: dict[str, type[BaseModel]] = {
    "PaymentLinkRequest": codec.PaymentLinkRequest,
    "PasswordResetRequest": codec.PasswordResetRequest,
    "BindCodeRequest": codec.BindCodeRequest,
    "PaymentStatusRequest": codec.PaymentStatusRequest,
}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None or ref in TERMINAL:
        return schema
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(target, root)


def kind(schema: dict[str, Any], root: dict[str, Any]) -> tuple[Any, ...]:
    """What a property holds, in terms both documents and pydantic can be brought to."""
    if schema.get("$ref") in TERMINAL:
        return (TERMINAL[schema["$ref"]],)
    if "x-wire" in schema:
        return (schema["x-wire"],)
    schema = _resolve(schema, root)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [kind(option, root) for option in schema[key]]
            nullable = ("null",) in options
            rest = sorted({o for o in options if o != ("null",)})
            if len(rest) == 1:
                return (*rest[0], "nullable") if nullable else rest[0]
            return ("one of", *rest, *(["nullable"] if nullable else []))
    types = schema.get("type")
    if isinstance(types, list):
        others = [t for t in types if t != "null"]
        inner = kind({**schema, "type": others[0]}, root)
        return (*inner, "nullable") if "null" in types else inner
    if "enum" in schema:
        return ("enum", *sorted(schema["enum"]))
    if "const" in schema:
        return ("const", schema["const"])
    if types == "array":
        return ("array", kind(schema["items"], root))
    if types == "object":
        return ("object", tuple(sorted(schema.get("properties", {}))))
    return (types,)


def described(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve(schema, root)
    properties = schema.get("properties", {})
    return {
        "required": sorted(schema.get("required", [])),
        "properties": {name: kind(value, root) for name, value in properties.items()},
    }


def derived(model: type[BaseModel], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    root = {"$defs": schema.get("$defs", {}), **PLATFORM}
    return described(schema, root)


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_each_response_model_writes_what_the_document_says(name: str) -> None:
    documented = described(PLATFORM["components"]["schemas"][name], PLATFORM)
    assert derived(RESPONSES[name], "serialization") == documented


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_each_request_model_reads_what_the_document_says(name: str) -> None:
    documented = described(PLATFORM["components"]["schemas"][name], PLATFORM)
    model = derived(REQUESTS[name], "validation")
    assert model == documented


def test_every_object_schema_of_the_platform_document_has_a_model() -> None:
    objects = {
        name
        for name, schema in PLATFORM["components"]["schemas"].items()
        if schema.get("type") == "object"
    }
    assert objects - {"Error", "Health"} == set(RESPONSES) | set(REQUESTS)


def test_the_error_body_is_the_documented_one() -> None:
    documented = described(PLATFORM["components"]["schemas"]["Error"], PLATFORM)
    assert derived(codec.ErrorBody, "validation")["properties"].keys() == (
        documented["properties"].keys()
    )
    body = codec.encode_error("not_found", "no such order")
    assert set(body["error"]) == {"code", "message"}


def test_the_notification_event_reads_the_platform_amounts() -> None:
    """The event's amount is the request amount of the platform API, one rule for both."""
    event = derived(PaymentEvent, "validation")
    request = derived(codec.PaymentStatusRequest, "validation")
    assert event["properties"]["amount"] == request["properties"]["amount"]
    assert event["properties"]["status"] == request["properties"]["status"]
    assert event["required"] == ["amount", "id", "order_no", "status"]


def test_the_web_chat_message_model_reads_what_the_document_says() -> None:
    body = WEBCHAT["paths"]["/api/chat/messages"]["post"]["requestBody"]
    documented = described(body["content"]["application/json"]["schema"], WEBCHAT)
    model = derived(ChatMessage, "validation")
    # "exactly one of text or action" is the document's oneOf and the model's validator.
    assert model["properties"] == documented["properties"]
    assert model["required"] == documented["required"] == []
    schema = body["content"]["application/json"]["schema"]
    assert [option["required"] for option in schema["oneOf"]] == [["text"], ["action"]]
    limits = ChatMessage.model_json_schema()["properties"]
    for name in ("action", "client_message_id"):
        documented_limits = schema["properties"][name]
        assert limits[name]["maxLength"] == documented_limits["maxLength"], name
        assert limits[name]["minLength"] == documented_limits["minLength"], name

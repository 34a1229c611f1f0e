"""What a pydantic validation error says, in the one form every endpoint answers with.

The request readers (`bot.channels.body.read_model`, the platform's `bot.platform.codec`) turn
the first error into "<field>: <what is wrong>", safe to show a client: it names the field and
the rule, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class Problem:
    field: str  # "amount", "attempts.0.at"; "" for the body itself
    message: str  # "amount: required", "text: Input should be a valid string"
    kind: str  # pydantic's error type: "missing", "string_type", or a custom one


def first_problem(exc: ValidationError) -> Problem:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return Problem(field, f"{field}: required", "missing")
    detail = str(first["msg"]).removeprefix("Value error, ")
    return Problem(field, f"{field or 'body'}: {detail}", first["type"])

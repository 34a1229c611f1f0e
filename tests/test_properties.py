"""Property-based tests: whatever people type, nothing crashes and nothing leaks.

Any unicode, very long texts, control characters, emoji, mixed scripts, injection strings and
numbers that look like cards, ID numbers or phones go through the NLU, entity extraction,
masking and the whole engine.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.nlu.entities import extract_entities
from bot.nlu.matcher import Matcher
from bot.nlu.normalize import fold
from bot.privacy import mask_pii
from bot.types import Label
from tests.support.common import examples

INJECTIONS = [
    "'; DROP TABLE messages; --",
    "{{ 7*7 }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "\x00\x1b[31m",
    "../../etc/passwd",
]
texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(INJECTIONS),
    st.lists(
        st.sampled_from(
            [
                "提现",
                "手续费",
                "BT2026112600000001",
                "88.5元",
                "🙂",
                "abc",
                " ",
                "\n",
                "６２２２",
                "十五块",
                "1380013800",
            ]
        ),
        max_size=20,
    ).map("".join),
)
digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


def luhn_like(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=length, max_size=length)


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=texts)
def test_parse_never_crashes_and_always_gives_a_label(matcher: Matcher, text: str) -> None:
    parse = matcher.parse(text)
    assert isinstance(parse.label, Label)
    assert 0.0 <= parse.coverage <= 1.0
    assert all(0 <= e.start <= e.end for e in parse.entities)


@settings(max_examples=examples(300), deadline=None)
@given(text=texts)
def test_entities_are_well_formed(text: str) -> None:
    folded = fold(text)
    for entity in extract_entities(folded):
        assert folded[entity.start : entity.end]
        if entity.kind == "order_no":
            assert re.fullmatch(r"BT\d{16}", entity.value)
        if entity.kind == "phone":
            assert re.fullmatch(r"1[3-9]\d{9}", entity.value)
        if entity.kind == "amount":
            assert float(entity.value) > 0


@settings(max_examples=examples(300), deadline=None)
@given(prefix=st.text(max_size=20), card=luhn_like(16), suffix=st.text(max_size=20))
def test_card_numbers_keep_only_the_last_four(prefix: str, card: str, suffix: str) -> None:
    text = f"{prefix}卡号{card}结束{suffix}"
    masked = mask_pii(text)
    assert card not in masked
    assert card[-4:] in masked


@settings(max_examples=examples(200), deadline=None)
@given(body=luhn_like(17), check=st.sampled_from("0123456789X"), prefix=st.text(max_size=10))
def test_id_numbers_are_masked(body: str, check: str, prefix: str) -> None:
    number = body + check
    assert number not in mask_pii(f"{prefix} 身份证 {number}")


@settings(max_examples=examples(200), deadline=None)
@given(second=st.sampled_from("3456789"), rest=luhn_like(9), prefix=st.text(max_size=10))
def test_phone_numbers_are_masked(second: str, rest: str, prefix: str) -> None:
    phone = f"1{second}{rest}"
    masked = mask_pii(f"{prefix} 电话 {phone} ")
    assert phone not in masked


@settings(max_examples=examples(200), deadline=None)
@given(digits16=luhn_like(16), prefix=st.text(max_size=10))
def test_order_numbers_are_not_taken_for_cards(digits16: str, prefix: str) -> None:
    order = f"BT{digits16}"
    assert order in mask_pii(f"{prefix} 订单 {order} 付款了吗")


@settings(max_examples=examples(100), deadline=None)
@given(text=texts)
def test_masking_is_idempotent(text: str) -> None:
    once = mask_pii(text)
    assert mask_pii(once) == once

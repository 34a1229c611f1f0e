"""Slot values read out of what people type: amounts, order numbers, choices, yes and no."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.faq.knowledge import Knowledge
from bot.nlu.values import (
    Option,
    names_said,
    read_amount,
    read_choice,
    read_order_no,
    read_withdrawal_id,
    read_yes_no,
)


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("二百六", "260.00"),
        ("两百五", "250.00"),
        ("三百八", "380.00"),
        ("1.2k", "1200.00"),
        ("1万", "10000.00"),
        ("1.5w", "15000.00"),
        ("45块5", "45.50"),
        ("¥45.5", "45.50"),
        ("45.5", "45.50"),
        ("不对，是260", "260.00"),
        ("actually make it 45", "45.00"),
        ("改成三百", "300.00"),
        ("payment link for 40 please", "40.00"),
        ("订单BT2026112600000001 88.5", "88.50"),
        ("a link for eighty eight please", "88.00"),
        ("make it two hundred and fifty", "250.00"),
        ("forty-five point five", "45.50"),
        ("a hundred bucks", "100.00"),
    ],
)
def test_amounts_in_the_forms_people_type(text: str, amount: str) -> None:
    assert read_amount(text) == Decimal(amount)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "12.345",
        "0",
        "-5",
        "88 or 99",
        "BT2026112600000001",
        "the one from yesterday",
        "someone paid twice",
        "fifty or sixty",
        "0005",  # the end of an order number or a code
        "是0012",
    ],
)
def test_what_is_not_one_amount(text: str) -> None:
    assert read_amount(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "BT2026112600000001",
        "bt2026112600000001",
        "bt 2026 1126 0000 0001",
        "BT-2026-1126-0000-0001",
        "订单BT2026112600000001怎么失败了",
        "2026112600000001",
    ],
)
def test_order_numbers_however_pasted(text: str) -> None:
    assert read_order_no(text) == "BT2026112600000001"


def test_withdrawal_ids() -> None:
    assert read_withdrawal_id("w0003到了没") == "W0003"
    assert read_withdrawal_id("W 0003 什么时候到") == "W0003"
    assert read_withdrawal_id("wang") is None


LOGINS = [
    Option("wang", "flow:account:wang", ("locked", "锁")),
    Option("wang_cashier", "flow:account:wang_cashier"),
]


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("2", 1),
        ("第二个", 1),
        ("the second one", 1),
        ("最后一个", 1),
        ("the locked one", 0),
        ("被锁的那个", 0),
        ("wang", 0),
        ("cashier", 1),
        # words around a name: the name said whole, longest, not a shorter name inside it
        ("wang_cashier pls", 1),
        ("wang please", 0),
        ("3", None),
        ("第五个", None),
        ("whatever", None),
    ],
)
def test_a_choice_by_number_ordinal_name_or_description(text: str, index: int | None) -> None:
    assert read_choice(text, LOGINS) == index


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("行，发吧", True),
        ("可以的", True),
        ("go ahead", True),
        ("sure thing", True),
        ("ok发吧", True),
        ("嗯嗯 好的", True),
        ("先不用", False),
        ("no thanks", False),
        ("nah", False),
        ("不好", None),
        ("不对，是260", None),
        ("手续费多少", None),
    ],
)
def test_yes_and_no_as_people_type_them(
    knowledge: Knowledge, text: str, meaning: bool | None
) -> None:
    assert read_yes_no(text, knowledge.words) is meaning


def test_markers_are_found_inside_a_message(knowledge: Knowledge) -> None:
    assert knowledge.words.contains("correction", "不对，是260")
    assert knowledge.words.contains("correction", "actually make it 45")
    assert knowledge.words.contains("upset", "烦死了，到底什么时候到账")
    assert not knowledge.words.contains("upset", "手续费多少")


def test_an_amount_typed_as_people_do_is_one_amount_proof() -> None:
    from bot.diagnostics.access import Proof, ProofKind, read_proofs

    assert read_proofs("我付的53") == [Proof(ProofKind.AMOUNT, "53.00")]
    assert read_proofs("付了五十三块") == [Proof(ProofKind.AMOUNT, "53.00")]
    assert read_proofs("尾号0005") == [Proof(ProofKind.PHONE, "0005")]  # 4 digits: the phone
    assert read_proofs("第2个") == []  # a position, not an amount


def test_hundreds_after_digits_and_positions_in_the_list() -> None:
    from bot.nlu.values import Option, read_choice

    assert read_amount("不对不对，1百") == Decimal("100.00")
    options = [Option("W0004", "a"), Option("W0001", "b"), Option("W0003", "c")]
    assert read_choice("最上面那个", options) == 0
    assert read_choice("最下面那个", options) == 2


def test_a_name_said_not_to_is_not_picked() -> None:
    options = [Option("li", "flow:account:li"), Option("li_risk", "flow:account:li_risk")]
    assert read_choice("li 这个，不是li_risk", options) == 0
    assert read_choice("not li, li_risk", options) == 1
    assert read_choice("nothing like li_risk", options) == 1


def test_names_said_are_whole_names_longest_last() -> None:
    logins = ["li", "li_risk", "wang"]
    assert names_said("那li这个号呢", logins) == ["li"]
    assert names_said("li_risk 也看下", logins) == ["li_risk"]
    assert names_said("li and li_risk", logins) == ["li", "li_risk"]
    assert names_said("the cashier one", logins) == []

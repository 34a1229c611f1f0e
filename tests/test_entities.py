from decimal import Decimal

import pytest

from bot.nlu.entities import extract_entities
from bot.nlu.normalize import fold
from bot.nlu.numerals import parse_chinese_number


def entities(text: str) -> list[tuple[str, str]]:
    return [(e.kind, e.value) for e in extract_entities(fold(text))]


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("88.5元", "88.50"),
        ("¥88.50", "88.50"),
        ("￥８８.５０", "88.50"),
        ("RMB 100", "100.00"),
        ("rmb100", "100.00"),
        ("八十八块五", "88.50"),
        ("三块五毛", "3.50"),
        ("88块5", "88.50"),
        ("两千五百元", "2500.00"),
        ("1.5万元", "15000.00"),
        ("1,280元", "1280.00"),
        ("给我生成一个两百块的链接", "200.00"),
        ("pay 120 yuan", "120.00"),
    ],
)
def test_amounts(text: str, amount: str) -> None:
    assert ("amount", amount) in entities(text)


def test_order_number_phone_and_email_in_one_message() -> None:
    found = entities("订单BT2026112600000001付款失败，手机13912345678，邮箱wang@example.com")
    assert found == [
        ("order_no", "BT2026112600000001"),
        ("phone", "13912345678"),
        ("email", "wang@example.com"),
    ]


def test_order_number_digits_are_not_a_phone_or_amount() -> None:
    assert entities("bt2026112613912345678") == []  # 19 digits: not an order number
    assert entities("查一下BT2026112613912345") == [("order_no", "BT2026112613912345")]


def test_full_width_order_number() -> None:
    assert entities("ＢＴ２０２６１１２６０００００００１") == [("order_no", "BT2026112600000001")]


def test_phone_with_country_code_and_separators() -> None:
    assert entities("+86 139-1234-5678") == [("phone", "13912345678")]


def test_plain_numbers_are_not_amounts() -> None:
    assert entities("我有3个问题") == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("八十八", 88),
        ("十五", 15),
        ("一百零五", 105),
        ("两千五", 2500),
        ("一万二", 12000),
        ("三万五千", 35000),
        ("一千二百三十四", 1234),
        ("三点五", Decimal("3.5")),
        ("一八八", 188),
    ],
)
def test_chinese_numerals(text: str, value: int | Decimal) -> None:
    assert parse_chinese_number(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "百百", "八八十", "abc", "十十"])
def test_not_chinese_numerals(text: str) -> None:
    assert parse_chinese_number(text) is None

from bot.privacy import mask_pii


def test_card_keeps_last_four() -> None:
    assert mask_pii("卡号6222021234567890123") == "卡号***************0123"
    assert mask_pii("card 6222 0212 3456 7890") == "card ************7890"


def test_id_number_masked() -> None:
    masked = mask_pii("身份证11010519491231002X")
    assert "19491231" not in masked
    assert masked.endswith("002X")


def test_phone_masked_in_the_middle() -> None:
    assert mask_pii("电话13912345678") == "电话139****5678"
    assert mask_pii("call 139-1234-5678") == "call 139****5678"


def test_order_numbers_are_kept() -> None:
    assert mask_pii("订单BT2026112600000001") == "订单BT2026112600000001"


def test_full_width_digits_are_masked_too() -> None:
    assert "１２３４５６７８" not in mask_pii("电话１３９１２３４５６７８")

import pytest

from bot.nlu.language import detect_language
from bot.nlu.normalize import SynonymTable, fold, strip_punctuation
from bot.types import Language


def test_fold_full_width_traditional_and_case() -> None:
    assert fold("ＡＰＰ怎麼收款？") == "app怎么收款?"
    assert fold("提現到帳") == "提现到账"


def test_strip_punctuation() -> None:
    assert strip_punctuation("你好！！请问，手续费?") == "你好 请问 手续费"


def test_synonyms_longest_variant_first() -> None:
    table = SynonymTable({"提现": ["体现"], "手续费": ["收续费", "手许费"], "qr码": ["qr code"]})
    assert table.apply("体现要收续费吗") == "提现要手续费吗"
    assert table.apply("qr code") == "qr码"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("手续费怎么收", Language.ZH),
        ("how much are the fees", Language.EN),
        ("what is B特派", Language.EN),
        ("app怎么收款", Language.ZH),
        ("我想withdraw", Language.ZH),
        ("BT2026112600000001", None),
        ("ok", None),
        ("好", Language.ZH),
        # English around a pasted Chinese name is English; a few English words in Chinese not.
        ("Merchant: 小王水果店 -- copied that off my receipt, can someone tell me", Language.EN),
        ("我想问下 payment link 怎么弄", Language.ZH),
        ("my shop 小王水果店 cant login", Language.ZH),
    ],
)
def test_detect_language(text: str, language: Language | None) -> None:
    assert detect_language(fold(text)) == language


@pytest.mark.parametrize("text", ["wang", "shop_01", "Zhang.San", "ok"])
def test_a_lone_latin_token_does_not_switch_a_chinese_chat(text: str) -> None:
    assert detect_language(fold(text), current=Language.ZH) is None
    assert detect_language(fold("how long does a withdrawal take"), current=Language.ZH) == (
        Language.EN
    )

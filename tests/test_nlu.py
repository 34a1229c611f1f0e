"""The matcher on the real knowledge: labels, entities, honest out-of-scope, eval targets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bot.nlu.evaluate import evaluate, read_items
from bot.nlu.features import tokens
from bot.nlu.matcher import Matcher
from bot.nlu.normalize import fold
from bot.types import Label, Language
from tests.support.common import DATA


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("手续费怎么收", Label.FEES_RATES),
        ("體現多久到帳", Label.WITHDRAW_HOW),
        ("收续费可以让顾客出吗", Label.FEES_PASS_ON),
        ("顾客付款一直失败 订单BT2026112600000001", Label.DIAGNOSE_PAYMENT_FAILURE),
        ("掉单了，顾客付了钱后台还是未支付", Label.DIAGNOSE_DATA_SYNC),
        ("忘记密码了怎么办", Label.ACTION_PASSWORD_RESET),
        ("转人工", Label.HANDOFF_HUMAN),
        ("how do i withdraw money", Label.WITHDRAW_HOW),
        ("is my data safe with you", Label.SECURITY_ENCRYPTION),
        ("谢谢", Label.CHITCHAT_THANKS),
    ],
)
def test_labels(matcher: Matcher, text: str, label: Label) -> None:
    assert matcher.parse(text).label == label


@pytest.mark.parametrize(
    "text",
    [
        "你们能贷款吗",
        "支持比特币吗",
        "can I accept apple pay",
        "帮我交一下电费",
        "支付宝的手续费是多少",
        "今天天气怎么样",
        "讲个笑话",
    ],
)
def test_out_of_scope(matcher: Matcher, text: str) -> None:
    parse = matcher.parse(text)
    assert parse.label == Label.OUT_OF_SCOPE, parse


def test_parse_carries_language_and_entities(matcher: Matcher) -> None:
    parse = matcher.parse("帮我生成一个八十八块五的收款链接")
    assert parse.label == Label.ACTION_PAYMENT_LINK
    assert parse.language == Language.ZH
    assert parse.entity("amount") == "88.50"


def test_empty_and_symbol_only_texts_are_out_of_scope(matcher: Matcher) -> None:
    for text in ["", "   ", "？？？", "🙂"]:
        assert matcher.parse(text).label == Label.OUT_OF_SCOPE


def test_dev_set_meets_the_targets(matcher: Matcher) -> None:
    items = read_items(DATA / "nlu_dev.jsonl")
    assert len(items) >= 250
    assert sum(i.expected == Label.OUT_OF_SCOPE for i in items) >= 60
    report = evaluate(matcher, items)
    assert report["in_scope_accuracy"] >= 0.93, report["confusions"]
    assert report["out_of_scope_false_accept"] <= 0.10, report["confusions"]
    assert report["accuracy"] >= 0.92


def test_eval_command_json_lists_every_prediction() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "nlu", "eval", str(DATA / "nlu_dev.jsonl"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out)
    assert len(report["predictions"]) == report["items"]
    assert {
        "accuracy",
        "in_scope_accuracy",
        "out_of_scope_false_accept",
        "false_reject",
        "per_label",
        "confusions",
    } <= set(report)


def test_parse_command_prints_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "nlu", "parse", "提现多久到账"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["label"] == "withdraw.how"


def test_candidates_are_the_exact_nearest_phrasings(matcher: Matcher) -> None:
    """The numpy index finds what comparing the query with every phrasing finds: the same
    phrasings, in the same order, with the same cosines."""
    vectors = [matcher._vector(tokens(entry.body)) for entry in matcher._entries]
    for item in read_items(DATA / "nlu_dev.jsonl")[:80]:
        query = matcher._vector(tokens(matcher.body(fold(item.text))))
        cosines = [sum(w * vector.get(t, 0.0) for t, w in query.items()) for vector in vectors]
        ranked = sorted(
            (i for i, cosine in enumerate(cosines) if cosine > 0), key=lambda i: (-cosines[i], i)
        )
        expected = ranked[: matcher.config.candidates]
        found = matcher._candidates(query)
        assert [i for i, _ in found] == expected, item.text
        assert [c for _, c in found] == pytest.approx([cosines[i] for i in expected]), item.text

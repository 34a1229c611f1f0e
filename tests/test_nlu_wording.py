"""Wordings the matcher hears past (issue 17, third pass): pinyin typed in Latin letters, upset
and urgent words beside a real question, an out-of-scope example that shares everything but
what makes it out of scope, and a bare amount beside a request. Each is checked against the
matcher with that mechanism switched off."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.faq.knowledge import Knowledge
from bot.nlu.matcher import Matcher, MatcherConfig
from bot.nlu.sounds import PinyinWords
from bot.types import Label


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("zhuce要准备什么", Label.ONBOARDING_REGISTER),
        ("mima wangle 怎么办", Label.ACTION_PASSWORD_RESET),
        ("tixian yao duojiu", Label.WITHDRAW_HOW),
        ("wo yao zhuan rengong", Label.HANDOFF_HUMAN),
    ],
)
def test_pinyin_in_latin_letters_is_read_as_the_chinese_word(
    matcher: Matcher, text: str, label: Label
) -> None:
    assert matcher.configured(MatcherConfig()).parse(text).label == label
    deaf = matcher.configured(MatcherConfig())
    deaf._pinyin = PinyinWords([])
    assert deaf.parse(text).label != label


def test_pinyin_is_only_read_where_it_can_be_pinyin(matcher: Matcher) -> None:
    # English words the knowledge knows stay English, and an English message stays English.
    assert matcher.body("can you help me") == "can you help me"
    assert matcher.body("how do i withdraw money") == "how do i withdraw money"
    assert matcher.body("tixian 多久") == "提现 多久"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("烦死了 提现呢！！", Label.STATUS_WITHDRAWAL),
        ("气死了 怎么提现", Label.WITHDRAW_HOW),
        ("急急急 手续费多少", Label.FEES_RATES),
    ],
)
def test_upset_words_do_not_drown_the_question(matcher: Matcher, text: str, label: Label) -> None:
    assert matcher.configured(MatcherConfig()).parse(text).label == label
    moody = matcher.configured(MatcherConfig())
    moody._mood = None
    assert moody.parse(text).label != label


def test_a_complaint_keeps_its_words(matcher: Matcher) -> None:
    assert "投诉" in matcher.body("我要投诉")


def test_an_out_of_scope_example_refuses_only_for_what_makes_it_out_of_scope(
    matcher: Matcher,
) -> None:
    # "美团收款的费率是多少" is out of scope for 美团; without it the question is ours.
    text = "费率是多少"
    assert matcher.configured(MatcherConfig()).parse(text).label == Label.FEES_RATES
    literal = matcher.configured(MatcherConfig(ungrounded_coverage=2.0))
    assert literal.parse(text).label == Label.OUT_OF_SCOPE
    # ...and an example whose foreign word the message shares still refuses.
    assert matcher.configured(MatcherConfig()).parse("美团的费率是多少").label == Label.OUT_OF_SCOPE


def test_a_bare_amount_beside_a_link_asks_for_one(knowledge: Knowledge, matcher: Matcher) -> None:
    text = "链接收款 200"
    assert matcher.configured(MatcherConfig()).parse(text).label == Label.ACTION_PAYMENT_LINK
    markers = dict(knowledge.requests.markers)
    markers["request"] = tuple(m for m in markers["request"] if m != "{number}")
    requests = type(knowledge.requests).of(
        {k: list(v) for k, v in markers.items()},
        {k: list(v) for k, v in knowledge.requests.unless.items()},
        list(knowledge.requests.moves.values()),
    )
    without = Matcher(replace(knowledge, requests=requests))
    assert without.parse(text).label != Label.ACTION_PAYMENT_LINK


@pytest.mark.parametrize("text", ["链接24小时内有效吗", "link valid for 30 days?"])
def test_a_duration_is_not_an_amount(knowledge: Knowledge, text: str) -> None:
    assert not knowledge.requests.has("request", text.lower())

"""The mechanisms that make understanding generalise (issue 17), each checked against the
matcher with that mechanism switched off, so every test fails without it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bot.faq.knowledge import Knowledge, load_knowledge
from bot.nlu.clauses import ClauseWords
from bot.nlu.evaluate import evaluate, format_report, read_items, written_in
from bot.nlu.features import tokens
from bot.nlu.matcher import Matcher, MatcherConfig
from bot.nlu.normalize import SynonymTable
from bot.types import Label
from tests.support.common import Chat


def test_english_words_meet_in_their_stems() -> None:
    assert set(tokens("charges charged charging")) == {"w:charg"}
    assert tokens("notifications")["w:notif"] == 1


def test_an_english_synonym_matches_every_form_of_the_word_and_only_whole_words() -> None:
    table = SynonymTable({"fee": ["charge"], "login": ["sign in"], "提现": ["体现"]})
    assert table.apply("what are the charges") == "what are the fee"
    assert table.apply("i was charged twice") == "i was fee twice"
    assert table.apply("can't sign in") == "can't login"
    assert table.apply("design industry") == "design industry"
    assert table.apply("discharge") == "discharge"
    assert table.apply("体现多久") == "提现多久"


def test_english_synonym_groups_reach_the_faq(matcher: Matcher) -> None:
    assert matcher.parse("how much commission do you take per sale").label == Label.FEES_RATES
    assert matcher.parse("the shopper should pay the surcharge").label == Label.FEES_PASS_ON


def test_clauses_are_cut_at_punctuation_and_marker_words(knowledge: Knowledge) -> None:
    words = knowledge.clauses
    clauses = words.split("我是开奶茶店的，平时生意还行，我想知道手续费怎么收")
    assert [c.text for c in clauses] == ["我是开奶茶店的", "平时生意还行", "我想知道手续费怎么收"]
    assert words.question(clauses) == 2
    english = words.split("i run a shop but i want to know how fees work")
    assert [c.text for c in english] == ["i run a shop", "but i want to know how fees work"]
    assert [c.asks for c in english] == [False, True]
    assert words.split("亲，提现多久到账")[0].text == "亲 提现多久到账"


def test_clause_words_keep_english_words_whole() -> None:
    words = ClauseWords.of(["i want to know"], ["so"])
    assert [c.text for c in words.split("also the soup is good")] == ["also the soup is good"]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (
            "我家是开了二十多年的老字号糕点铺，街坊邻居都认识，逢年过节特别忙，我想知道提现多久到账",
            Label.WITHDRAW_HOW,
        ),
        ("我们是做社区团购的，群里几百个宝妈，每天接龙下单，请问手续费怎么收", Label.FEES_RATES),
        # Out-of-scope examples that lead the whole story by a hair do not drown a clause
        # that is clearly answered.
        (
            "my grandpa opened this dumpling stall in the eighties, his friends still come every "
            "morning for breakfast, so tell me how do I withdraw money",
            Label.WITHDRAW_HOW,
        ),
        # A clause that asks for something is heard wherever it stands, not only last.
        (
            "make me a link pls, a lady from the office upstairs wants to order a cake for her "
            "colleague",
            Label.ACTION_PAYMENT_LINK,
        ),
        ("wtf where is my money!!! been waiting forever", Label.STATUS_WITHDRAWAL),
    ],
)
def test_the_question_clause_is_heard_through_the_story(
    matcher: Matcher, text: str, label: Label
) -> None:
    assert matcher.parse(text).label == label
    whole_only = matcher.configured(MatcherConfig(clause_min_chars=10_000))
    assert whole_only.parse(text).label == Label.OUT_OF_SCOPE


def test_a_question_asked_first_is_not_drowned_by_the_story_after_it(matcher: Matcher) -> None:
    text = (
        "wait, is my data actually safe with you guys? a friend said his account got hacked "
        "on some other app"
    )
    assert matcher.parse(text).label == Label.SECURITY_ENCRYPTION
    whole_only = matcher.configured(MatcherConfig(clause_min_chars=10_000))
    assert whole_only.parse(text).reason == "out_of_scope_example"
    # A question that needs the story to say what it is about is not heard alone.
    closing = (
        "We're relocating overseas and closing the store for good, so I'd like to close my "
        "B特派 merchant account for good. What's the process?"
    )
    assert matcher.parse(closing).label == Label.OUT_OF_SCOPE


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (
            "Morning! Just unlocked the shop, rain all night, the street is empty.",
            Label.CHITCHAT_GREET,
        ),
        ("太感谢了，终于弄明白了，刚才急得团团转，现在可以安心去进货了", Label.CHITCHAT_THANKS),
    ],
)
def test_a_pleasantry_told_with_the_day_around_it(
    matcher: Matcher, text: str, label: Label
) -> None:
    assert matcher.parse(text).label == label


@pytest.mark.parametrize(
    "text",
    [
        "hi, what's the weather like in beijing today?",
        "rough day. tell me a joke, anything to cheer me up",
    ],
)
def test_a_pleasantry_beside_a_question_it_cannot_answer_is_still_refused(
    matcher: Matcher, text: str
) -> None:
    assert matcher.parse(text).label == Label.OUT_OF_SCOPE


def test_an_out_of_scope_question_inside_a_story_is_refused(matcher: Matcher) -> None:
    text = "我是开餐馆的，最近资金周转不过来，请问你们平台能不能给商户放点贷款"
    assert matcher.parse(text).label == Label.OUT_OF_SCOPE
    whole_only = matcher.configured(MatcherConfig(clause_min_chars=10_000))
    assert whole_only.parse(text).label != Label.OUT_OF_SCOPE


def test_one_foreign_word_does_not_refuse_a_real_question(matcher: Matcher) -> None:
    text = "can the fee go onto my wholesale prices"  # "wholesale": only out-of-scope examples
    assert matcher.parse(text).label == Label.FEES_PASS_ON
    any_foreign_word = matcher.configured(MatcherConfig(foreign_margin=10.0))
    assert any_foreign_word.parse(text).reason == "foreign_topic"


def test_an_out_of_scope_example_refuses_only_when_it_wins_by_the_margin(
    matcher: Matcher,
) -> None:
    text = "你们能贷款吗"
    assert matcher.configured(MatcherConfig()).parse(text).reason == "out_of_scope_example"
    generous = matcher.configured(MatcherConfig(oos_margin=1.0, foreign_margin=-1.0))
    assert generous.parse(text).reason != "out_of_scope_example"


def test_words_the_bot_knows_do_not_save_a_question_an_example_matches_far_better(
    matcher: Matcher,
) -> None:
    # Every word of it appears in some in-scope phrasing; it is still about running the shop.
    text = "how do i get more people to come to my shop"
    assert matcher.configured(MatcherConfig()).parse(text).reason == "out_of_scope_example"
    only_grounded = matcher.configured(MatcherConfig(ungrounded_margin=9.0))
    assert only_grounded.parse(text).label != Label.OUT_OF_SCOPE


@pytest.mark.parametrize(
    ("text", "label"),
    [("白白", Label.CHITCHAT_BYE), ("泥嚎", Label.CHITCHAT_GREET), ("蟹蟹", Label.CHITCHAT_THANKS)],
)
def test_short_pleasantries_typed_by_ear(matcher: Matcher, text: str, label: Label) -> None:
    assert matcher.parse(text).label == label


def test_sound_matching_is_what_accepts_them(matcher: Matcher) -> None:
    deaf = matcher.configured(MatcherConfig())
    deaf._sounds = {}
    assert deaf.parse("白白").label == Label.OUT_OF_SCOPE


@pytest.mark.parametrize("text", ["白菜", "拜佛", "泥土", "你号多少"])
def test_sound_matching_accepts_only_the_same_sound(matcher: Matcher, text: str) -> None:
    assert matcher.parse(text).label not in {
        Label.CHITCHAT_BYE,
        Label.CHITCHAT_GREET,
        Label.CHITCHAT_THANKS,
    }


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("扣几个点", Label.FEES_RATES),
        ("这个commission咋算", Label.FEES_RATES),
        ("开通账户要走哪些步骤", Label.ONBOARDING_REGISTER),
        ("资料都交了下一步是什么", Label.ONBOARDING_REVIEW),
        ("钱怎么还没到", Label.STATUS_WITHDRAWAL),
        ("hiii", Label.CHITCHAT_GREET),
    ],
)
def test_slang_mixed_wording_and_topic_boundaries(
    matcher: Matcher, text: str, label: Label
) -> None:
    assert matcher.parse(text).label == label


@pytest.mark.parametrize("text", ["how to learn guitar", "best recipe for banana bread"])
def test_a_short_english_message_needs_more_than_one_shared_word(
    knowledge: Knowledge, matcher: Matcher, text: str
) -> None:
    assert matcher.parse(text).label == Label.OUT_OF_SCOPE
    # The cut-offs alone, without the out-of-scope examples that also refuse such questions.
    in_scope = replace(
        knowledge, phrasings=[p for p in knowledge.phrasings if p.label != Label.OUT_OF_SCOPE]
    )
    strict = Matcher(in_scope)
    assert strict.parse(text).label == Label.OUT_OF_SCOPE
    lenient = strict.configured(MatcherConfig(min_score_latin=0.1, min_coverage_latin=0.45))
    assert lenient.parse(text).label != Label.OUT_OF_SCOPE


def test_kb_check_guards_the_clause_words(tmp_path: Path) -> None:
    directory = tmp_path / "knowledge"
    shutil.copytree(Path(__file__).parent.parent / "knowledge", directory)
    (directory / "clauses.yaml").write_text(
        "clauses:\n  ask: {zh: [请问], en: [so]}\n  join: {zh: [但是], en: [so]}\n",
        encoding="utf-8",
    )
    problems = load_knowledge(directory).problems
    assert [p.file for p in problems] == ["clauses.yaml"]
    assert "'so' is in both ask and join" in problems[0].message


def test_eval_items_may_say_how_far_out_of_scope_they_are(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    lines = [
        {"text": "手续费怎么收", "expected": "fees.rates"},
        {"text": "how do i withdraw money", "expected": "withdraw.how"},
        {"text": "这个commission咋算", "expected": "fees.rates"},
        {"text": "支付宝的手续费是多少", "expected": "out_of_scope", "oos": "near"},
        {"text": "今天天气怎么样", "expected": "out_of_scope", "oos": "far"},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    items = read_items(path)
    assert [i.oos for i in items] == [None, None, None, "near", "far"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "expected": "out_of_scope", "oos": "close"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        read_items(bad)
    assert [written_in(i.text) for i in items] == ["zh", "en", "mixed", "zh", "zh"]
    assert written_in("B特派是什么") == "zh"


def test_eval_reports_per_language_length_and_kind_of_out_of_scope(
    matcher: Matcher, tmp_path: Path
) -> None:
    path = tmp_path / "set.jsonl"
    lines = [
        {"text": "手续费怎么收", "expected": "fees.rates"},
        {"text": "how do i withdraw money", "expected": "withdraw.how"},
        {
            "text": "my grandma started this noodle place decades ago and now I am taking over "
            "the till, so I want to know how do I withdraw money",
            "expected": "withdraw.how",
        },
        {"text": "今天天气怎么样", "expected": "out_of_scope", "oos": "far"},
        {"text": "支付宝的手续费是多少", "expected": "out_of_scope", "oos": "near"},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    report = evaluate(matcher, read_items(path))
    assert report["per_language"]["en"]["in_scope"] == 2
    assert report["per_language"]["zh"]["count"] == 3
    assert report["per_length"]["long"]["in_scope_accuracy"] == 1.0
    assert report["out_of_scope_kind"] == {
        "near": {"items": 1, "false_accept": 0.0},
        "far": {"items": 1, "false_accept": 0.0},
    }
    text = format_report(report)
    assert "oos near" in text and "long" in text


async def test_a_far_question_is_refused_plainly_without_unrelated_suggestions(
    chat: Chat,
) -> None:
    await chat.say("今天天气怎么样")
    assert "不在我能帮忙的范围内" in chat.text
    assert [b.action for b in chat.buttons] == ["human"]


async def test_a_far_question_in_english_says_what_the_bot_can_do(chat: Chat) -> None:
    await chat.say("can you recommend a good pizza place")
    assert "outside what I can help with" in chat.text
    assert "fees" in chat.text
    assert [b.action for b in chat.buttons] == ["human"]


async def test_a_near_miss_still_gets_did_you_mean(chat: Chat) -> None:
    await chat.say("提现相关的那个")
    actions = [b.action for b in chat.buttons]
    assert "faq:withdraw.how" in actions
    assert actions[-1] == "human"
    assert "不在我能帮忙的范围内" not in chat.text


def test_eval_help_says_how_each_set_was_made_and_which_is_the_test_set() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "nlu", "eval", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in (
        "nlu_dev.jsonl",
        "nlu_tune.jsonl",
        "nlu_tune2.jsonl",
        "nlu_tune3.jsonl",
        "nlu_tune4.jsonl",
        "nlu_tune5.jsonl",
        "nlu_tune6.jsonl",
        "nlu_holdout.jsonl",
        "nlu_test.jsonl",
    ):
        assert name in out
    assert "THE TEST SET" in out and "LABELS.md" in out


def test_words_say_what_follows_the_last_correction(knowledge: Knowledge) -> None:
    words = knowledge.words
    assert words.after_last("correction", "12块，哦不对，15块5") == "15块5"
    assert words.after_last("correction", "50, no wait, actually 55") == "55"
    assert words.after_last("correction", "帮我生成收款链接") is None

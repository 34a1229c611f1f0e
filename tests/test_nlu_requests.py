"""Request markers (`knowledge/requests.yaml`, `bot/nlu/requests.py`): a short request moves a topic
label to its flow at the boundary the label table draws, each checked against the matcher with
the markers switched off, so every test fails without them."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bot.faq.knowledge import Knowledge, load_knowledge
from bot.nlu.matcher import Matcher
from bot.nlu.requests import Move, RequestWords, marker_key
from bot.types import Label


@pytest.fixture(scope="module")
def unmarked(knowledge: Knowledge) -> Matcher:
    """The matcher without request markers: what the scores alone decide."""
    return Matcher(replace(knowledge, requests=RequestWords()))


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("a payment link please", Label.ACTION_PAYMENT_LINK),
        ("payment link pls", Label.ACTION_PAYMENT_LINK),
        ("send my client a link", Label.ACTION_PAYMENT_LINK),
        ("where's my money", Label.STATUS_WITHDRAWAL),
        ("a payment didn't go through", Label.DIAGNOSE_PAYMENT_FAILURE),
        ("提现失败是什么原因", Label.STATUS_WITHDRAWAL),
    ],
)
def test_a_marker_moves_the_topic_to_its_flow(
    matcher: Matcher, unmarked: Matcher, text: str, label: Label
) -> None:
    assert matcher.parse(text).label == label
    assert unmarked.parse(text).label != label


def test_the_topic_stays_on_the_alternatives_of_a_moved_message(matcher: Matcher) -> None:
    parse = matcher.parse("a payment link please")
    assert parse.reason is None
    assert parse.alternatives[0].label == Label.METHODS_LINK


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("can you explain how payment links work", Label.METHODS_LINK),
        ("i want to use payment links for my online shop", Label.METHODS_LINK),
        ("怎么用链接收款", Label.METHODS_LINK),
        ("how long does a withdrawal take", Label.WITHDRAW_HOW),
        ("提现一般多久到账", Label.WITHDRAW_HOW),
        ("customer service phone number please", Label.SUPPORT_CONTACT),
        ("did the payment go through", Label.STATUS_PAYMENT),
    ],
)
def test_a_question_about_the_topic_stays_the_topic(
    matcher: Matcher, text: str, label: Label
) -> None:
    assert matcher.parse(text).label == label


def test_the_blocking_words_are_what_keep_a_how_question_on_the_topic(
    knowledge: Knowledge,
) -> None:
    words = knowledge.requests
    unblocked = RequestWords.of(
        {kind: list(markers) for kind, markers in words.markers.items()},
        {},
        list(words.moves.values()),
    )
    text = "i want to use payment links for my online shop"
    assert Matcher(replace(knowledge, requests=unblocked)).parse(text).label == (
        Label.ACTION_PAYMENT_LINK
    )


@pytest.mark.parametrize("text", ["i need a loan please", "please tell me a joke", "帮我订个外卖"])
def test_refusals_stand(matcher: Matcher, text: str) -> None:
    assert matcher.parse(text).label == Label.OUT_OF_SCOPE


def test_english_markers_are_whole_words_and_placeholders_stand_for_entities() -> None:
    words = RequestWords.of(
        {"request": ["pls", "{amount}", "帮我"]},
        {"request": ["how"]},
        [Move(Label.METHODS_LINK, Label.ACTION_PAYMENT_LINK, "request")],
    )
    assert words.has("request", marker_key("link pls"))
    assert not words.has("request", marker_key("link plsx"))
    assert words.has("request", marker_key("link  amt "))
    assert words.has("request", marker_key("帮我弄个链接"))
    assert not words.has("request", marker_key("how do links work pls"))
    assert words.target(Label.METHODS_LINK, "link pls") == Label.ACTION_PAYMENT_LINK
    assert words.target(Label.WITHDRAW_HOW, "link pls") is None


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("cannot log into the dashboard", Label.DIAGNOSE_LOGIN),
        ("is my payment done?", Label.STATUS_PAYMENT),
        ("unable to log in to my acct", Label.DIAGNOSE_LOGIN),
    ],
)
def test_abbreviations_and_variants_reach_the_flow(
    matcher: Matcher, text: str, label: Label
) -> None:
    assert matcher.parse(text).label == label


@pytest.mark.parametrize(
    ("moves", "message"),
    [
        ("[{from: methods.link, to: action.nope, when: request}]", "unknown label id"),
        ("[{from: methods.link, to: action.payment_link, when: asking}]", "no markers"),
        ("[{from: methods.link, to: methods.link, when: request}]", "not a boundary"),
    ],
)
def test_kb_check_guards_the_request_words(tmp_path: Path, moves: str, message: str) -> None:
    directory = tmp_path / "knowledge"
    shutil.copytree(Path(__file__).parent.parent / "knowledge", directory)
    (directory / "requests.yaml").write_text(
        f"requests:\n  markers:\n    request: {{zh: [帮我], en: [please]}}\n  moves: {moves}\n",
        encoding="utf-8",
    )
    problems = load_knowledge(directory).problems
    assert [p.file for p in problems] == ["requests.yaml"]
    assert message in problems[0].message


@pytest.mark.parametrize(
    ("text", "moved"),
    [
        ("开个250的收款码", True),
        ("qr code for 88 pls", True),
        # An amount in a story about paying by QR code is not a request for one.
        ("she paid with the qr code this morning, the amount was 59.90, can you check", False),
    ],
)
def test_a_qr_code_for_an_amount_is_a_link(matcher: Matcher, text: str, moved: bool) -> None:
    assert (matcher.parse(text).label == Label.ACTION_PAYMENT_LINK) is moved

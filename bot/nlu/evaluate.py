"""Measuring the matcher on a labelled set: accuracy, out-of-scope behaviour, per-label figures,
and the same figures per language (zh / en / mixed), per length and for near vs far out-of-scope.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.nlu.matcher import Matcher
from bot.nlu.normalize import cjk_runs, fold
from bot.types import Label

# A message of at most this many characters counts as short.
SHORT_CHARS = 40
OOS_KINDS = ("near", "far")
# Names and ids written in Latin letters whatever the language (B特派, BT + 16 digits, app, QR).
_NEUTRAL = re.compile(r"b\s*特派|btp|bt\d{16}|\bapp\b|\bqr\b|\bok\b")
_LATIN_WORD = re.compile(r"[a-z]{2,}")

Written = Literal["zh", "en", "mixed"]


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    expected: Label
    line: int
    # For an out-of-scope item: "near" the domain (loans, other platforms' fees) or "far"
    # (weather, recipes); None when the set does not say.
    oos: str | None = None


def read_items(path: Path) -> list[Item]:
    """JSON lines of {"text": ..., "expected": <label>, "oos": "near"|"far" (optional)}; a bad
    line raises ValueError naming it."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            oos = raw.get("oos")
            if oos is not None and oos not in OOS_KINDS:
                raise ValueError(f"oos must be one of {OOS_KINDS}, not {oos!r}")
            items.append(Item(str(raw["text"]), Label(raw["expected"]), number, oos))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return items


def written_in(text: str) -> Written:
    """zh, en or mixed: Chinese characters, Latin words (names like B特派 aside), or both."""
    folded = _NEUTRAL.sub(" ", fold(text))
    cjk = sum(len(run) for run in cjk_runs(folded))
    words = _LATIN_WORD.findall(folded)
    if cjk and words:
        return "mixed"
    return "zh" if cjk or not words else "en"


def evaluate(matcher: Matcher, items: list[Item]) -> dict[str, Any]:
    predictions: list[dict[str, Any]] = []
    confusions: Counter[tuple[str, str]] = Counter()
    true_pos: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    for item in items:
        parse = matcher.parse(item.text)
        got, want = parse.label.value, item.expected.value
        predictions.append(
            {
                "text": item.text,
                "expected": want,
                "predicted": got,
                "score": round(parse.score, 4),
                "coverage": round(parse.coverage, 4),
                "reason": parse.reason,
                "correct": got == want,
                "language": written_in(item.text),
                "length": "short" if len(item.text) <= SHORT_CHARS else "long",
                "oos": item.oos,
            }
        )
        predicted[got] += 1
        actual[want] += 1
        if got == want:
            true_pos[got] += 1
        else:
            confusions[(want, got)] += 1
    per_label = {
        label: {
            "precision": round(true_pos[label] / predicted[label], 4) if predicted[label] else None,
            "recall": round(true_pos[label] / actual[label], 4) if actual[label] else None,
            "support": actual[label],
        }
        for label in sorted(set(actual) | set(predicted))
    }
    oos = Label.OUT_OF_SCOPE.value
    out_scope = [p for p in predictions if p["expected"] == oos]
    return {
        "items": len(predictions),
        **_figures(predictions),
        "per_language": {
            language: _figures([p for p in predictions if p["language"] == language])
            for language in ("zh", "en", "mixed")
        },
        "per_length": {
            length: _figures([p for p in predictions if p["length"] == length])
            for length in ("short", "long")
        },
        "out_of_scope_kind": {
            kind: {
                "items": len(group),
                "false_accept": _ratio(sum(p["predicted"] != oos for p in group), len(group)),
            }
            for kind in OOS_KINDS
            for group in [[p for p in out_scope if p["oos"] == kind]]
        },
        "per_label": per_label,
        "confusions": [
            {"expected": want, "predicted": got, "count": n}
            for (want, got), n in confusions.most_common()
        ],
        "predictions": predictions,
    }


def _figures(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    oos = Label.OUT_OF_SCOPE.value
    in_scope = [p for p in predictions if p["expected"] != oos]
    out_scope = [p for p in predictions if p["expected"] == oos]
    return {
        "count": len(predictions),
        "in_scope": len(in_scope),
        "out_of_scope": len(out_scope),
        "accuracy": _ratio(sum(p["correct"] for p in predictions), len(predictions)),
        "in_scope_accuracy": _ratio(sum(p["correct"] for p in in_scope), len(in_scope)),
        "out_of_scope_false_accept": _ratio(
            sum(p["predicted"] != oos for p in out_scope), len(out_scope)
        ),
        "false_reject": _ratio(sum(p["predicted"] == oos for p in in_scope), len(in_scope)),
    }


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"items                      {report['items']}",
        f"accuracy                   {report['accuracy']:.1%}",
        f"in-scope accuracy          {report['in_scope_accuracy']:.1%}",
        f"out-of-scope false accept  {report['out_of_scope_false_accept']:.1%}",
        f"false reject               {report['false_reject']:.1%}",
        "",
        f"{'group':10} {'items':>5} {'in scope':>9} {'top-1':>7} {'oos':>5} {'false acc.':>10}",
    ]
    groups = [*report["per_language"].items(), *report["per_length"].items()]
    for name, figures in groups:
        if not figures["count"]:
            continue
        lines.append(
            f"{name:10} {figures['count']:>5} {figures['in_scope']:>9} "
            f"{figures['in_scope_accuracy']:>7.1%} {figures['out_of_scope']:>5} "
            f"{figures['out_of_scope_false_accept']:>10.1%}"
        )
    for kind, figures in report["out_of_scope_kind"].items():
        if figures["items"]:
            lines.append(
                f"{'oos ' + kind:10} {figures['items']:>5} {'':>9} {'':>7} "
                f"{figures['items']:>5} {figures['false_accept']:>10.1%}"
            )
    lines += ["", f"{'label':28} {'precision':>9} {'recall':>7} {'n':>4}"]
    for label, figures in report["per_label"].items():
        precision = "-" if figures["precision"] is None else f"{figures['precision']:.0%}"
        recall = "-" if figures["recall"] is None else f"{figures['recall']:.0%}"
        lines.append(f"{label:28} {precision:>9} {recall:>7} {figures['support']:>4}")
    if report["confusions"]:
        lines += ["", "confusions (expected -> predicted: count)"]
        lines += [
            f"  {c['expected']} -> {c['predicted']}: {c['count']}" for c in report["confusions"]
        ]
    return "\n".join(lines)

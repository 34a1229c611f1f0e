"""Measuring the matcher on a labelled set: accuracy, out-of-scope behaviour, per-label figures."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.nlu.matcher import Matcher
from bot.types import Label


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    expected: Label
    line: int


def read_items(path: Path) -> list[Item]:
    """JSON lines of {"text": ..., "expected": <label>}; a bad line raises ValueError naming it."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(Item(str(raw["text"]), Label(raw["expected"]), number))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return items


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
            }
        )
        predicted[got] += 1
        actual[want] += 1
        if got == want:
            true_pos[got] += 1
        else:
            confusions[(want, got)] += 1
    oos = Label.OUT_OF_SCOPE.value
    in_scope = [p for p in predictions if p["expected"] != oos]
    out_scope = [p for p in predictions if p["expected"] == oos]
    per_label = {
        label: {
            "precision": round(true_pos[label] / predicted[label], 4) if predicted[label] else None,
            "recall": round(true_pos[label] / actual[label], 4) if actual[label] else None,
            "support": actual[label],
        }
        for label in sorted(set(actual) | set(predicted))
    }
    return {
        "items": len(predictions),
        "accuracy": _ratio(sum(p["correct"] for p in predictions), len(predictions)),
        "in_scope_accuracy": _ratio(sum(p["correct"] for p in in_scope), len(in_scope)),
        "out_of_scope_false_accept": _ratio(
            sum(p["predicted"] != oos for p in out_scope), len(out_scope)
        ),
        "false_reject": _ratio(sum(p["predicted"] == oos for p in in_scope), len(in_scope)),
        "per_label": per_label,
        "confusions": [
            {"expected": want, "predicted": got, "count": n}
            for (want, got), n in confusions.most_common()
        ],
        "predictions": predictions,
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
        f"{'label':28} {'precision':>9} {'recall':>7} {'n':>4}",
    ]
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

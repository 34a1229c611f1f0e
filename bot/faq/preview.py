"""What a draft would do: the project's NLU sets run with the published matcher and with the
draft's, accuracy per set before and after, and every item whose label changes.

The sets are the JSON-lines files `nlu_*.jsonl` of a configured folder (`KB_EVAL_DIR`,
`tests/data` of the project by default; decision record 0022 says why a folder and not a
copy). `nlu_test` is the test set: a drop there is what the console shows in red and asks a
second confirmation for. The published matcher's labels are computed once per version and
kept, so a preview parses each item once, with the draft.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.nlu.evaluate import Item, read_items
from bot.nlu.matcher import Matcher

TEST_SET = "nlu_test"
# Changed items the preview keeps per set (the page lists them; more say the draft is wrong).
MAX_CHANGES = 200


@dataclass(frozen=True, slots=True)
class EvalSet:
    name: str
    items: list[Item]


@dataclass(frozen=True, slots=True)
class Change:
    text: str
    expected: str
    before: str
    after: str


@dataclass(slots=True)
class SetPreview:
    name: str
    size: int
    before: float
    after: float
    changes: list[Change] = field(default_factory=list)
    changed: int = 0

    @property
    def dropped(self) -> bool:
        return self.after < self.before


@dataclass(slots=True)
class Preview:
    sets: list[SetPreview]
    seconds: float = 0.0

    @property
    def test_dropped(self) -> bool:
        """Accuracy on the test set went down: red on the page, a second confirmation."""
        return any(s.name == TEST_SET and s.dropped for s in self.sets)

    def as_json(self) -> dict[str, Any]:
        return {
            "sets": [{**asdict(s), "dropped": s.dropped} for s in self.sets],
            "test_dropped": self.test_dropped,
            "seconds": round(self.seconds, 3),
        }


def read_sets(folder: Path | None) -> list[EvalSet]:
    """The `nlu_*.jsonl` sets in `folder`, by name; none when there is no such folder."""
    if folder is None or not folder.is_dir():
        return []
    return [EvalSet(path.stem, read_items(path)) for path in sorted(folder.glob("nlu_*.jsonl"))]


def labels(matcher: Matcher, evalset: EvalSet) -> list[str]:
    return [matcher.parse(item.text).label.value for item in evalset.items]


def compare(sets: list[EvalSet], before: dict[str, list[str]], matcher: Matcher) -> Preview:
    """The draft's `matcher` on every set, against the published labels `before`."""
    out = []
    for evalset in sets:
        old, new = before[evalset.name], labels(matcher, evalset)
        size = len(evalset.items) or 1
        result = SetPreview(
            evalset.name,
            len(evalset.items),
            sum(o == i.expected.value for o, i in zip(old, evalset.items, strict=True)) / size,
            sum(n == i.expected.value for n, i in zip(new, evalset.items, strict=True)) / size,
        )
        for item, o, n in zip(evalset.items, old, new, strict=True):
            if o != n:
                result.changed += 1
                if len(result.changes) < MAX_CHANGES:
                    result.changes.append(Change(item.text, item.expected.value, o, n))
        out.append(result)
    return Preview(out)

"""Loading and checking the knowledge files a support lead edits (`knowledge/*.yaml`).

Every value keeps the line it came from, so `btp-bot kb check` can point at the exact place.

Over 400 lines: one `_load_*` function per knowledge file over a shared line-keeping YAML
loader and problem list; the files are checked against each other (links, coverage,
duplicates), so their loaders stay together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bot.faq.files import Files, read_folder
from bot.nlu.clauses import ClauseWords
from bot.nlu.normalize import fold, strip_punctuation
from bot.nlu.requests import Move, RequestWords
from bot.nlu.words import ANSWERS, KINDS, LATER_KINDS, Words, phrase_key
from bot.platform.models import FailureCode
from bot.settings import PROJECT_ROOT
from bot.types import FAQ_LABELS, Label, Language

FAQ_FILE = "faq.yaml"
INTENTS_FILE = "intents.yaml"
SYNONYMS_FILE = "synonyms.yaml"
FAILURE_CODES_FILE = "failure_codes.yaml"
DIALOGUE_FILE = "dialogue.yaml"
CLAUSES_FILE = "clauses.yaml"
REQUESTS_FILE = "requests.yaml"


class _Str(str):
    """A string that remembers its line in the YAML file."""

    line: int = 0


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser where PyYAML has it (4 times faster: every start reads the knowledge)."""


def _construct_str(loader: _LineLoader, node: yaml.ScalarNode) -> _Str:
    value = _Str(loader.construct_scalar(node))
    value.line = node.start_mark.line + 1
    return value


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


@dataclass(frozen=True, slots=True)
class Problem:
    """A broken rule, where it is and why (in English, as `kb check` prints it). The problems a
    console edit can cause also carry a `code` and its `args`, so the console says them in the
    supervisor's language (`kbp_<code>` in the console's words)."""

    file: str
    line: int
    message: str
    code: str = ""
    args: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class KnowledgeError(Exception):
    """The knowledge files cannot be used; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Phrasing:
    label: Label
    language: Language
    text: str
    file: str
    line: int


@dataclass(slots=True)
class FaqEntry:
    id: Label
    title: dict[Language, str]
    answer: dict[Language, str]
    questions: dict[Language, list[str]]
    related: list[Label]
    line: int = 0


@dataclass(frozen=True, slots=True)
class FailureAdvice:
    """Why something failed and what to do, in the merchant's words and, where they differ, the
    paying customer's ("your bank" rather than "the customer's bank")."""

    cause: dict[Language, str]
    advice: dict[Language, str]
    needs_person: bool = False
    customer_cause: dict[Language, str] = field(default_factory=dict)
    customer_advice: dict[Language, str] = field(default_factory=dict)

    def cause_for(self, language: Language, *, merchant: bool) -> str:
        words = self.cause if merchant or not self.customer_cause else self.customer_cause
        return words[language]

    def advice_for(self, language: Language, *, merchant: bool) -> str:
        words = self.advice if merchant or not self.customer_advice else self.customer_advice
        return words[language]


@dataclass(slots=True)
class Knowledge:
    """Everything the NLU and the FAQ answers need, as plain data."""

    entries: dict[Label, FaqEntry] = field(default_factory=dict)
    examples: dict[Label, dict[Language, list[str]]] = field(default_factory=dict)
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    failure_codes: dict[FailureCode, FailureAdvice] = field(default_factory=dict)
    # Withdrawal failure reasons are free text from the platform, so keyed by the raw reason.
    withdrawal_failures: dict[str, FailureAdvice] = field(default_factory=dict)
    words: Words = field(default_factory=Words)
    clauses: ClauseWords = field(default_factory=ClauseWords)
    requests: RequestWords = field(default_factory=RequestWords)
    phrasings: list[Phrasing] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def withdrawal_failure(self, reason: str | None) -> FailureAdvice | None:
        """The words for a withdrawal's failure reason; None when the reason is not known."""
        return self.withdrawal_failures.get((reason or "").strip().lower())


def _line(value: object, default: int) -> int:
    if isinstance(value, _Str):
        return value.line
    if isinstance(value, dict):
        return int(value.get("__line__", default))
    return default


def parse_with_lines(text: str) -> Any:
    """The YAML text parsed as the loaders see it: each string and mapping knows its line
    (`line_of`), which is how a console edit finds where to write (`bot/faq/edits.py`)."""
    return yaml.load(text, Loader=_LineLoader)


def line_of(value: object) -> int:
    """The line a parsed string or mapping came from; 0 when not known."""
    return _line(value, 0)


def _read(files: Files, name: str, problems: list[Problem]) -> Any:
    text = files.get(name)
    if text is None:
        problems.append(Problem(name, 0, "file is missing"))
        return None
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(name, mark.line + 1 if mark else 0, f"not valid YAML: {exc}"))
        return None


def _what(what: str) -> tuple[tuple[str, str], ...]:
    """ "fees.rates questions" as the problem's arguments: the id and the part of it."""
    subject, _, part = what.rpartition(" ")
    return (("id", subject or what), ("part", part if subject else ""))


def _label(value: object, file: str, line: int, problems: list[Problem]) -> Label | None:
    try:
        return Label(str(value))
    except ValueError:
        problems.append(
            Problem(
                file, line, f"unknown label id {value!r}", "unknown_label", (("id", str(value)),)
            )
        )
        return None


def _bilingual_text(
    value: object, what: str, file: str, line: int, problems: list[Problem]
) -> dict[Language, str]:
    out: dict[Language, str] = {}
    if not isinstance(value, dict):
        problems.append(
            Problem(file, line, f"{what} must map zh and en to text", "not_bilingual", _what(what))
        )
        return out
    for language in Language:
        text = value.get(language.value)
        if not isinstance(text, str) or not text.strip():
            problems.append(
                Problem(
                    file,
                    _line(value, line),
                    f"{what} has no {language.value} text",
                    "no_language",
                    (*_what(what), ("language", language.value)),
                )
            )
        else:
            out[language] = text.strip()
    return out


def _bilingual_list(
    value: object, what: str, file: str, line: int, problems: list[Problem]
) -> dict[Language, list[str]]:
    out: dict[Language, list[str]] = {}
    if not isinstance(value, dict):
        problems.append(
            Problem(file, line, f"{what} must map zh and en to lists", "not_bilingual", _what(what))
        )
        return out
    for language in Language:
        items = value.get(language.value)
        if not isinstance(items, list) or not items:
            problems.append(
                Problem(
                    file,
                    _line(value, line),
                    f"{what} has no {language.value} list",
                    "no_language",
                    (*_what(what), ("language", language.value)),
                )
            )
            continue
        clean = []
        for item in items:
            if not isinstance(item, str) or not item.strip():
                problems.append(
                    Problem(
                        file, _line(value, line), f"{what}: empty phrasing", "empty", _what(what)
                    )
                )
            else:
                clean.append(item)
        out[language] = clean
    return out


def _load_faq(data: Any, knowledge: Knowledge) -> dict[Label, tuple[list[object], int]]:
    problems, file = knowledge.problems, FAQ_FILE
    related_raw: dict[Label, tuple[list[object], int]] = {}
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        problems.append(Problem(file, 1, "expected a top-level 'entries' list"))
        return related_raw
    for raw in entries:
        line = _line(raw, 0)
        if not isinstance(raw, dict):
            problems.append(Problem(file, line, "each entry must be a mapping"))
            continue
        label = _label(raw.get("id"), file, line, problems)
        if label is None:
            continue
        if not label.is_faq:
            problems.append(
                Problem(file, line, f"{label} is not an FAQ id; put it in {INTENTS_FILE}")
            )
            continue
        if label in knowledge.entries:
            problems.append(
                Problem(file, line, f"id {label} appears twice", "twice", (("id", label.value),))
            )
            continue
        questions = _bilingual_list(
            raw.get("questions"), f"{label} questions", file, line, problems
        )
        knowledge.entries[label] = FaqEntry(
            id=label,
            title=_bilingual_text(raw.get("title"), f"{label} title", file, line, problems),
            answer=_bilingual_text(raw.get("answer"), f"{label} answer", file, line, problems),
            questions=questions,
            related=[],
            line=line,
        )
        related = raw.get("related", [])
        related_raw[label] = (related if isinstance(related, list) else [related], line)
        for language, items in questions.items():
            for text in items:
                knowledge.phrasings.append(Phrasing(label, language, text, file, _line(text, line)))
    return related_raw


def _load_intents(data: Any, knowledge: Knowledge) -> None:
    problems, file = knowledge.problems, INTENTS_FILE
    intents = data.get("intents") if isinstance(data, dict) else None
    if not isinstance(intents, list):
        problems.append(Problem(file, 1, "expected a top-level 'intents' list"))
        return
    for raw in intents:
        line = _line(raw, 0)
        if not isinstance(raw, dict):
            problems.append(Problem(file, line, "each intent must be a mapping"))
            continue
        label = _label(raw.get("label"), file, line, problems)
        if label is None:
            continue
        if label.is_faq:
            problems.append(Problem(file, line, f"{label} is an FAQ id; put it in {FAQ_FILE}"))
            continue
        if label in knowledge.examples:
            problems.append(Problem(file, line, f"label {label} appears twice"))
            continue
        examples = _bilingual_list(raw.get("examples"), f"{label} examples", file, line, problems)
        knowledge.examples[label] = examples
        for language, items in examples.items():
            for text in items:
                knowledge.phrasings.append(Phrasing(label, language, text, file, _line(text, line)))


def _load_synonyms(data: Any, knowledge: Knowledge) -> None:
    groups = data.get("synonyms") if isinstance(data, dict) else None
    if not isinstance(groups, dict):
        knowledge.problems.append(Problem(SYNONYMS_FILE, 1, "expected a top-level 'synonyms' map"))
        return
    for canonical, variants in groups.items():
        if canonical == "__line__":
            continue
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            knowledge.problems.append(
                Problem(
                    SYNONYMS_FILE, _line(canonical, 0), f"{canonical}: expected a list of variants"
                )
            )
            continue
        knowledge.synonyms[str(canonical)] = [str(v) for v in variants]


def _top_map(
    data: Any, key: str, file: str, problems: list[Problem]
) -> list[tuple[object, object, int]] | None:
    """The entries of the top-level map `key` (its key, its value, its line), or None with a
    problem when there is no such map."""
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        problems.append(Problem(file, 1, f"expected a top-level '{key}' map"))
        return None
    return [
        (name, value, _line(value, _line(name, 0)))
        for name, value in entries.items()
        if name != "__line__"
    ]


def _load_failure_codes(data: Any, knowledge: Knowledge) -> None:
    problems, file = knowledge.problems, FAILURE_CODES_FILE
    codes = _top_map(data, "failure_codes", file, problems)
    if codes is None:
        return
    for key, raw, line in codes:
        try:
            code = FailureCode(str(key))
        except ValueError:
            problems.append(Problem(file, _line(key, line), f"unknown failure code {key!r}"))
            continue
        if not isinstance(raw, dict):
            problems.append(Problem(file, line, f"{code}: expected cause and advice"))
            continue
        customer = raw.get("customer")
        if not isinstance(customer, dict):
            problems.append(
                Problem(file, line, f"{code}: expected the customer's cause and advice")
            )
            customer = {}
        knowledge.failure_codes[code] = FailureAdvice(
            cause=_bilingual_text(raw.get("cause"), f"{code} cause", file, line, problems),
            advice=_bilingual_text(raw.get("advice"), f"{code} advice", file, line, problems),
            needs_person=bool(raw.get("needs_person", False)),
            customer_cause=_bilingual_text(
                customer.get("cause"), f"{code} customer cause", file, line, problems
            ),
            customer_advice=_bilingual_text(
                customer.get("advice"), f"{code} customer advice", file, line, problems
            ),
        )
    for code in FailureCode:
        if code not in knowledge.failure_codes:
            problems.append(Problem(file, 0, f"no entry for failure code {code}"))
    _load_withdrawal_failures(data, knowledge)


def _load_withdrawal_failures(data: Any, knowledge: Knowledge) -> None:
    problems, file = knowledge.problems, FAILURE_CODES_FILE
    reasons = _top_map(data, "withdrawal_failures", file, problems)
    if reasons is None:
        return
    for key, raw, line in reasons:
        reason = str(key)
        if reason != reason.strip().lower() or not reason:
            problems.append(
                Problem(file, _line(key, line), f"{key!r}: write the reason in lower case")
            )
            continue
        if not isinstance(raw, dict):
            problems.append(Problem(file, line, f"{reason}: expected cause and advice"))
            continue
        knowledge.withdrawal_failures[reason] = FailureAdvice(
            cause=_bilingual_text(raw.get("cause"), f"{reason} cause", file, line, problems),
            advice=_bilingual_text(raw.get("advice"), f"{reason} advice", file, line, problems),
        )


def _check_links(knowledge: Knowledge, related_raw: dict[Label, tuple[list[object], int]]) -> None:
    problems = knowledge.problems
    for label, (related, line) in related_raw.items():
        for value in related:
            target = _label(value, FAQ_FILE, _line(value, line), problems)
            if target is None:
                continue
            if target not in knowledge.entries or target == label:
                problems.append(
                    Problem(
                        FAQ_FILE,
                        _line(value, line),
                        f"{label}: related id {target} is not another entry",
                        "related",
                        (("id", label.value), ("target", target.value)),
                    )
                )
            else:
                knowledge.entries[label].related.append(target)


def _check_coverage_and_duplicates(knowledge: Knowledge) -> None:
    problems = knowledge.problems
    for label in Label:
        if label in FAQ_LABELS and label not in knowledge.entries:
            problems.append(Problem(FAQ_FILE, 0, f"no entry for FAQ id {label}"))
        if label not in FAQ_LABELS and label not in knowledge.examples:
            problems.append(Problem(INTENTS_FILE, 0, f"no examples for label {label}"))
    seen: dict[str, Phrasing] = {}
    for phrasing in knowledge.phrasings:
        key = strip_punctuation(fold(phrasing.text)).replace(" ", "")
        first = seen.get(key)
        if first is None:
            seen[key] = phrasing
        elif first.label != phrasing.label:
            problems.append(
                Problem(
                    phrasing.file,
                    phrasing.line,
                    f"phrasing {phrasing.text!r} is under {phrasing.label} and also under "
                    f"{first.label} ({first.file}:{first.line})",
                    "phrasing_twice",
                    (
                        ("text", phrasing.text),
                        ("id", phrasing.label.value),
                        ("other", first.label.value),
                        ("where", f"{first.file}:{first.line}"),
                    ),
                )
            )


def _load_dialogue(data: Any, knowledge: Knowledge) -> None:
    file, problems = DIALOGUE_FILE, knowledge.problems
    phrases: dict[str, frozenset[str]] = {}
    owner: dict[str, str] = {}
    kinds = _top_map(data, "words", file, problems)
    if kinds is None:
        return
    for kind, value, line in kinds:
        if kind not in (*KINDS, "fillers"):
            problems.append(
                Problem(file, line, f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
            )
            continue
        lists = _bilingual_list(value, str(kind), file, line, problems)
        keys = frozenset(phrase_key(p) for items in lists.values() for p in items if phrase_key(p))
        if kind in ANSWERS:
            for key in keys:
                if key in owner and owner[key] != kind:
                    problems.append(
                        Problem(file, line, f"{key!r} is in both {owner[key]} and {kind}")
                    )
                owner[key] = str(kind)
        phrases[str(kind)] = keys
    for kind in KINDS:
        if kind not in phrases and kind not in LATER_KINDS:
            problems.append(Problem(file, 1, f"no {kind} phrases"))
    # A version published before a kind existed ("language_en") takes the shipped file's
    # phrases for it: an upgrade does not lose what its new code reads there.
    missing = [kind for kind in LATER_KINDS if kind not in phrases]
    shipped = _shipped_words() if missing else {}
    phrases.update({kind: shipped[kind] for kind in missing if kind in shipped})
    knowledge.words = Words(phrases, phrases.pop("fillers", frozenset()))


@lru_cache(maxsize=1)
def _shipped_words() -> dict[str, frozenset[str]]:
    """The phrases of `knowledge/dialogue.yaml` as shipped with this code, by kind."""
    folder = PROJECT_ROOT / "knowledge"
    shipped = Knowledge()
    data = _read(read_folder(folder), DIALOGUE_FILE, shipped.problems) if folder.is_dir() else None
    if data is not None:
        _load_dialogue(data, shipped)
    return dict(shipped.words.phrases)


def _load_clauses(data: Any, knowledge: Knowledge) -> None:
    """`clauses: {ask: {zh: [...], en: [...]}, join: {...}}`: the words that start a clause."""
    file, problems = CLAUSES_FILE, knowledge.problems
    kinds = _top_map(data, "clauses", file, problems)
    if kinds is None:
        return
    lists: dict[str, list[str]] = {"ask": [], "join": []}
    for kind, value, line in kinds:
        if kind not in lists:
            problems.append(Problem(file, line, f"unknown kind {kind!r}: expected ask or join"))
            continue
        by_language = value if isinstance(value, dict) else None
        if by_language is None or not all(
            isinstance(words, list) and all(isinstance(w, str) for w in words)
            for language, words in by_language.items()
            if language != "__line__"
        ):
            problems.append(Problem(file, line, f"{kind}: expected zh and en lists of words"))
            continue
        lists[str(kind)] = [
            str(w)
            for language, words in by_language.items()
            if language != "__line__"
            for w in words
        ]
    for word in set(lists["ask"]) & set(lists["join"]):
        problems.append(Problem(file, 1, f"{word!r} is in both ask and join"))
    knowledge.clauses = ClauseWords.of(lists["ask"], lists["join"])


def _words_by_kind(
    value: object, what: str, line: int, problems: list[Problem]
) -> dict[str, list[str]] | None:
    """`{kind: {zh: [...], en: [...]}}` as each kind's words, both languages together."""
    if not isinstance(value, dict):
        problems.append(Problem(REQUESTS_FILE, line, f"{what}: expected a map of kinds"))
        return None
    out: dict[str, list[str]] = {}
    for kind, by_language in value.items():
        if kind == "__line__":
            continue
        if not isinstance(by_language, dict) or not all(
            isinstance(words, list) and all(isinstance(w, str) for w in words)
            for language, words in by_language.items()
            if language != "__line__"
        ):
            message = f"{what} {kind}: expected zh and en lists"
            problems.append(Problem(REQUESTS_FILE, _line(kind, line), message))
            continue
        out[str(kind)] = [
            str(w)
            for language, words in by_language.items()
            if language != "__line__"
            for w in words
        ]
    return out


def _load_requests(data: Any, knowledge: Knowledge) -> None:
    """`requests: {markers: {kind: {zh, en}}, unless: {kind: {zh, en}}, moves: [{from, to,
    when}]}`: the markers that move a topic label to its flow (see `bot/nlu/requests.py`)."""
    file, problems = REQUESTS_FILE, knowledge.problems
    top = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(top, dict):
        problems.append(Problem(file, 1, "expected a top-level 'requests' map"))
        return
    line = _line(top, 1)
    markers = _words_by_kind(top.get("markers"), "markers", line, problems)
    unless = _words_by_kind(top.get("unless", {}), "unless", line, problems)
    if markers is None or unless is None:
        return
    for kind in set(unless) - set(markers):
        problems.append(Problem(file, line, f"unless {kind}: no markers of that kind"))
    raw_moves = top.get("moves")
    if not isinstance(raw_moves, list):
        problems.append(Problem(file, line, "moves: expected a list of {from, to, when}"))
        return
    moves: list[Move] = []
    sources: set[Label] = set()
    for raw in raw_moves:
        at = _line(raw, line)
        if not isinstance(raw, dict):
            problems.append(Problem(file, at, "a move: expected {from, to, when}"))
            continue
        source = _label(raw.get("from"), file, at, problems)
        target = _label(raw.get("to"), file, at, problems)
        kind = str(raw.get("when", ""))
        if kind not in markers:
            problems.append(Problem(file, at, f"move when {kind!r}: no markers of that kind"))
            continue
        if source is None or target is None:
            continue
        if source == target or Label.OUT_OF_SCOPE in (source, target):
            problems.append(Problem(file, at, f"move {source} -> {target}: not a boundary"))
            continue
        if source in sources:
            problems.append(Problem(file, at, f"move from {source}: listed twice"))
            continue
        sources.add(source)
        moves.append(Move(source, target, kind))
    knowledge.requests = RequestWords.of(markers, unless, moves)


def load_knowledge(directory: Path) -> Knowledge:
    """Read the knowledge folder; problems are collected in `Knowledge.problems`, not raised."""
    return load_knowledge_files(read_folder(directory))


def load_knowledge_files(files: Files) -> Knowledge:
    """The knowledge from the files' texts (a folder's, or a version's from the database),
    checked by the same rules; problems are collected in `Knowledge.problems`, not raised."""
    knowledge = Knowledge()
    faq = _read(files, FAQ_FILE, knowledge.problems)
    related_raw = _load_faq(faq, knowledge) if faq is not None else {}
    intents = _read(files, INTENTS_FILE, knowledge.problems)
    if intents is not None:
        _load_intents(intents, knowledge)
    synonyms = _read(files, SYNONYMS_FILE, knowledge.problems)
    if synonyms is not None:
        _load_synonyms(synonyms, knowledge)
    failure_codes = _read(files, FAILURE_CODES_FILE, knowledge.problems)
    if failure_codes is not None:
        _load_failure_codes(failure_codes, knowledge)
    dialogue = _read(files, DIALOGUE_FILE, knowledge.problems)
    if dialogue is not None:
        _load_dialogue(dialogue, knowledge)
    clauses = _read(files, CLAUSES_FILE, knowledge.problems)
    if clauses is not None:
        _load_clauses(clauses, knowledge)
    requests = _read(files, REQUESTS_FILE, knowledge.problems)
    if requests is not None:
        _load_requests(requests, knowledge)
    _check_links(knowledge, related_raw)
    _check_coverage_and_duplicates(knowledge)
    return knowledge


def load_valid_knowledge(directory: Path) -> Knowledge:
    """The knowledge, or KnowledgeError naming every problem: the bot never starts on bad data."""
    return load_valid_knowledge_files(read_folder(directory))


def load_valid_knowledge_files(files: Files) -> Knowledge:
    """As `load_valid_knowledge`, from the files' texts."""
    knowledge = load_knowledge_files(files)
    if knowledge.problems:
        raise KnowledgeError(knowledge.problems)
    return knowledge

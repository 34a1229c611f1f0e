"""Console edits as changes to the knowledge files' text, so a draft is a version like any other.

A supervisor's edit (these questions are phrasings of that entry; these are out of scope)
becomes new lines in `faq.yaml` or `intents.yaml`, inserted after the last item of the list it
extends, with that item's indentation: every comment, order and layout of the file stays, and
the exported version differs from the files by exactly those lines. A text is written as a
plain YAML scalar when it reads back as itself, otherwise double-quoted; it is data either
way, and the draft then goes through the same check as the files (`load_knowledge_files`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from bot.faq.files import Files
from bot.faq.knowledge import FAQ_FILE, INTENTS_FILE, line_of, parse_with_lines
from bot.nlu.normalize import fold, strip_punctuation
from bot.types import Label, Language

# A phrasing is one line of chat; longer is no question a support lead would keep.
MAX_PHRASING = 200
MAX_PHRASINGS = 50


class EditError(ValueError):
    """The edit cannot be made (no such list in the files, nothing to add); `code` names the
    reason for the console's words: `bad_request`, `entry_exists`, `entry_text`."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Edit:
    """The draft's files and what the edit did: the phrasings added, those already there."""

    files: dict[str, str]
    added: dict[Language, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def clean_phrasing(text: str) -> str:
    """One line, single spaces, at most MAX_PHRASING characters."""
    return " ".join(text.split())[:MAX_PHRASING]


def yaml_scalar(text: str) -> str:
    """`text` as a YAML scalar on one line: plain when it reads back as itself, else quoted."""
    try:
        plain_ok = yaml.safe_load(f"- {text}") == [text]
    except yaml.YAMLError:
        plain_ok = False
    return text if plain_ok and text == text.strip() else json.dumps(text, ensure_ascii=False)


def _key(text: str) -> str:
    return strip_punctuation(fold(text)).replace(" ", "")


def add_phrasings(files: Files, label: Label, phrasings: Mapping[Language, list[str]]) -> Edit:
    """The files with `phrasings` added to `label`'s questions (an FAQ entry) or examples (an
    intent, `out_of_scope` included); a phrasing the label has already is skipped."""
    name, top, key, part = (
        (FAQ_FILE, "entries", "id", "questions")
        if label.is_faq
        else (INTENTS_FILE, "intents", "label", "examples")
    )
    text = files.get(name)
    if text is None:
        raise EditError(f"{name} is missing")
    data = parse_with_lines(text)
    items = data.get(top) if isinstance(data, dict) else None
    found = next(
        (i for i in items or [] if isinstance(i, dict) and str(i.get(key)) == label.value), None
    )
    lists = found.get(part) if found is not None else None
    if not isinstance(lists, dict):
        raise EditError(f"no {part} of {label} in {name}")
    lines = text.splitlines(keepends=True)
    inserts: list[tuple[int, str]] = []
    edit = Edit(dict(files))
    for language, wanted in phrasings.items():
        current = lists.get(language.value)
        if not isinstance(current, list) or not current or not line_of(current[-1]):
            raise EditError(f"no {language.value} list under {label} in {name}")
        known = {_key(str(item)) for item in current}
        last = line_of(current[-1]) - 1
        indent = lines[last][: len(lines[last]) - len(lines[last].lstrip())]
        ending = "\r\n" if lines[last].endswith("\r\n") else "\n"
        new = []
        for raw in wanted:
            phrasing = clean_phrasing(raw)
            if not phrasing or _key(phrasing) in known:
                edit.skipped.append(raw)
                continue
            known.add(_key(phrasing))
            new.append(phrasing)
        if new:
            block = "".join(f"{indent}- {yaml_scalar(p)}{ending}" for p in new)
            inserts.append((last + 1, block))
            edit.added[language] = new
    if not inserts:
        raise EditError("nothing to add: every phrasing is there already")
    if sum(len(v) for v in edit.added.values()) > MAX_PHRASINGS:
        raise EditError(f"at most {MAX_PHRASINGS} phrasings at once")
    for at, block in sorted(inserts, reverse=True):
        if at == len(lines) and lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.insert(at, block)
    edit.files[name] = "".join(lines)
    return edit


# A new entry's title is a suggestion button's text; its answer a chat reply.
MAX_TITLE = 40
MAX_ANSWER = 2000
MAX_RELATED = 3


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An FAQ entry a supervisor writes: its id (`Label._missing_`'s form), its title and
    answer in both languages, its phrasings by language, and up to MAX_RELATED related ids."""

    label: Label
    title: Mapping[Language, str]
    answer: Mapping[Language, str]
    questions: Mapping[Language, list[str]]
    related: tuple[Label, ...] = ()


def _answer_block(text: str, indent: str, ending: str) -> str:
    """An answer as a literal block (`|`, line breaks kept as in the files) when it reads back
    as itself, otherwise one quoted scalar."""
    lines = text.split("\n")
    literal = not text.startswith((" ", "\t")) and all(
        line == line.rstrip() and "\t" not in line for line in lines
    )
    if literal:
        body = "".join(f"{indent}{line}{ending}" if line else ending for line in lines)
        block = f"|{ending}{body}"
        if yaml.safe_load(f"a: {block}") == {"a": text + "\n"}:
            return block
    return yaml_scalar(text) + ending


def add_entry(files: Files, entry: NewEntry) -> Edit:
    """The files with `entry` appended to the FAQ's entries, in the layout of the others."""
    text = files.get(FAQ_FILE)
    if text is None:
        raise EditError(f"{FAQ_FILE} is missing")
    if not entry.label.is_faq:
        raise EditError(f"{entry.label} is not an FAQ id")
    data = parse_with_lines(text)
    items = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or not line_of(items[-1]):
        raise EditError(f"no entries in {FAQ_FILE}")
    if any(isinstance(i, dict) and str(i.get("id")) == entry.label.value for i in items):
        raise EditError(f"{entry.label} is an entry already", "entry_exists")
    for language in Language:
        title = clean_phrasing(entry.title.get(language, ""))
        if not title or len(title) > MAX_TITLE:
            raise EditError(
                f"the {language.value} title needs 1-{MAX_TITLE} characters", "entry_text"
            )
        answer = entry.answer.get(language, "").strip()
        if not answer or len(answer) > MAX_ANSWER:
            raise EditError(
                f"the {language.value} answer needs 1-{MAX_ANSWER} characters", "entry_text"
            )
    if len(entry.related) > MAX_RELATED:
        raise EditError(f"at most {MAX_RELATED} related entries")
    questions: dict[Language, list[str]] = {}
    edit = Edit(dict(files))
    for language in Language:
        seen: set[str] = set()
        for raw in entry.questions.get(language, []):
            phrasing = clean_phrasing(raw)
            if not phrasing or _key(phrasing) in seen:
                edit.skipped.append(raw)
                continue
            seen.add(_key(phrasing))
            questions.setdefault(language, []).append(phrasing)
    if sum(len(v) for v in questions.values()) > MAX_PHRASINGS:
        raise EditError(f"at most {MAX_PHRASINGS} phrasings at once")
    lines = text.splitlines(keepends=True)
    first = line_of(items[0]) - 1
    dash = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    ending = "\r\n" if lines[first].endswith("\r\n") else "\n"
    # The last entry ends before the first line after it indented no deeper than its dash.
    at = line_of(items[-1])
    while at < len(lines) and (
        not lines[at].strip() or len(lines[at]) - len(lines[at].lstrip()) > len(dash)
    ):
        at += 1
    while at > line_of(items[-1]) and not lines[at - 1].strip():
        at -= 1
    pad, more = dash + "  ", dash + "      "
    block = [f"{dash}- id: {entry.label.value}{ending}", f"{pad}title:{ending}"]
    block += [
        f"{pad}  {lang.value}: {yaml_scalar(clean_phrasing(entry.title[lang]))}{ending}"
        for lang in Language
    ]
    block.append(f"{pad}questions:{ending}")
    for language in Language:
        block.append(f"{pad}  {language.value}:{ending}")
        block += [f"{more}- {yaml_scalar(p)}{ending}" for p in questions.get(language, [])]
    block.append(f"{pad}answer:{ending}")
    block += [
        f"{pad}  {lang.value}: {_answer_block(entry.answer[lang].strip(), more, ending)}"
        for lang in Language
    ]
    if entry.related:
        block.append(f"{pad}related: [{', '.join(r.value for r in entry.related)}]{ending}")
    if at == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += ending
    lines.insert(at, "".join(block))
    edit.files[FAQ_FILE] = "".join(lines)
    edit.added = questions
    return edit

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
from bot.types import FAQ_LABELS, Label, Language

# A phrasing is one line of chat; longer is no question a support lead would keep.
MAX_PHRASING = 200
MAX_PHRASINGS = 50


class EditError(ValueError):
    """The edit cannot be made (no such list in the files, nothing to add)."""


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
        if label in FAQ_LABELS
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

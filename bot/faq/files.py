"""The knowledge as files: which YAML files make one version, read and written byte for byte.

A version of the knowledge (`bot/faq/store.py`) is these files' texts, exactly as a support
lead wrote them, so that exporting a version gives back the very bytes that were imported
(comments, order and layout included) and a diff between two versions reads like a diff of
the files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

# The files one version holds. canned.yaml (the agents' canned replies) and LABELS.md (the
# label table) stay in the folder: no console edit touches them and the NLU does not read them.
KNOWLEDGE_FILES = (
    "faq.yaml",
    "intents.yaml",
    "synonyms.yaml",
    "failure_codes.yaml",
    "dialogue.yaml",
    "clauses.yaml",
    "requests.yaml",
)

Files = Mapping[str, str]


def read_folder(directory: Path) -> dict[str, str]:
    """The knowledge files found in `directory`, decoded as UTF-8 with their line ends kept
    (a missing file is left out: the check says so)."""
    files = {}
    for name in KNOWLEDGE_FILES:
        path = directory / name
        if path.is_file():
            files[name] = path.read_bytes().decode("utf-8")
    return files


def write_folder(directory: Path, files: Files) -> list[Path]:
    """Write the version's files into `directory` (created if need be), byte for byte."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in KNOWLEDGE_FILES:
        if name in files:
            path = directory / name
            path.write_bytes(files[name].encode("utf-8"))
            written.append(path)
    return written


def digest(files: Files) -> str:
    """One fingerprint of a version's files: equal texts, equal digest."""
    canonical = json.dumps({name: files[name] for name in sorted(files)}, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

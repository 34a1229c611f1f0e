"""`btp-bot chat --json` as scripts drive it: a message per line in, a JSON reply per line out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_chat(tmp_path: Path, lines: list[str]) -> list[dict[str, Any]]:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat", "--json"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_json_chat_answers_presses_buttons_and_takes_typed_answers(tmp_path: Path) -> None:
    replies = run_chat(
        tmp_path,
        [
            "你好",
            json.dumps({"action": "faq:fees.rates"}),
            "1",
            "how long does review take?",
        ],
    )
    assert len(replies) == 4
    assert "您好" in replies[0]["text"]
    assert replies[0]["buttons"]
    assert "官网" in replies[1]["text"]
    assert "谢谢" in replies[2]["text"]
    assert "1-3 working days" in replies[3]["text"]


def test_interactive_chat_shows_numbered_buttons(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat"],
        input="手续费怎么收\n2\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert "[1] 👍" in result.stdout
    assert "换个说法" in result.stdout

"""The terminal channel: a person typing, or a script sending JSON lines.

Buttons are shown as numbered choices; typing the number, the button's words, or yes/no presses
it (the engine resolves typed answers, so this works the same on every channel).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from bot.cleantext import clean_text
from bot.engine import Engine
from bot.types import IncomingMessage, Reply

CHANNEL = "terminal"
log = logging.getLogger(__name__)


async def _lines(stream: TextIO, prompt: str | None) -> AsyncIterator[str]:
    while True:
        if prompt is not None:
            print(prompt, end="", flush=True)
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        yield line.rstrip("\n")


def incoming_from_line(
    line: str, chat_id: str, message_id: str, *, json_mode: bool
) -> IncomingMessage:
    """A typed line, or in JSON mode `{"action": ...}` / `{"text": ...}` objects as well."""
    text, action = line, None
    if json_mode and line.lstrip().startswith("{"):
        try:
            raw = json.loads(line)
        except ValueError:
            raw = None
        if isinstance(raw, dict):
            action = str(raw["action"]) if raw.get("action") is not None else None
            text = str(raw.get("text") or "")
    return IncomingMessage(
        channel=CHANNEL,
        chat_id=chat_id,
        user_id=chat_id,
        message_id=message_id,
        text=clean_text(text),
        action=clean_text(action) if action is not None else None,
    )


def format_reply(reply: Reply, images: Path) -> str:
    lines = [reply.text]
    if reply.image is not None:
        images.mkdir(parents=True, exist_ok=True)
        path = images / f"{hashlib.sha256(reply.image).hexdigest()[:16]}.png"
        path.write_bytes(reply.image)
        lines.append(f"  [image: {path}]")
    lines += [f"  [{i}] {button.label}" for i, button in enumerate(reply.buttons, start=1)]
    return "\n".join(lines)


async def run_terminal(
    engine: Engine,
    *,
    json_mode: bool = False,
    chat_id: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> None:
    chat = chat_id or f"term-{uuid.uuid4().hex[:12]}"
    images = Path(tempfile.gettempdir()) / "btp-bot-images"
    run = uuid.uuid4().hex[:8]
    if not json_mode:
        print("B特派 support bot. Ctrl-D to quit. 输入您的问题：", file=stdout)
    number = 0
    async for line in _lines(stdin, None if json_mode else "> "):
        if not line.strip():
            continue
        number += 1
        message = incoming_from_line(line, chat, f"{run}:{number}", json_mode=json_mode)
        try:
            replies = await engine.handle(message)
        except Exception:
            # Nothing was stored (the transaction rolled back); the user hears so, the log says why.
            log.exception("message %s failed", message.message_id)
            replies = [Reply(engine.renderer.render(engine.settings.default_language, "error"))]
        for reply in replies:
            if json_mode:
                print(json.dumps(reply.to_json(), ensure_ascii=False), file=stdout, flush=True)
            else:
                print(format_reply(reply, images) + "\n", file=stdout, flush=True)

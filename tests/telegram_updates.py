"""Builders of Bot API updates exactly as Telegram sends them (to a webhook or from getUpdates).

Every builder returns a plain dict (JSON-ready) with the fields Telegram always sends: update_id,
message_id, from {id, is_bot, first_name, language_code}, chat {id, type, first_name or title},
date, and the content; bot commands in texts and captions come with their ``bot_command``
entities (offsets and lengths in UTF-16 code units, as Telegram counts them). Message ids not
given come from one module-level counter, shared with tests.botapi's bot messages, so ids never
repeat within a run.

    stub.push_update(text_message(1, 42, "你好"))
    await app.process_update(Update.de_json(command(2, 42, "/bind", "482913"), bot))
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

__all__ = [
    "BOT_FIRST_NAME",
    "BOT_ID",
    "BOT_USERNAME",
    "callback_query",
    "command",
    "edited_message",
    "group_message",
    "next_message_id",
    "photo",
    "seen_message_id",
    "sticker",
    "text_message",
]

JSONDict = dict[str, Any]

# The bot as tests.botapi.BotApiStub presents it with its default token "123456:TEST-token".
BOT_ID = 123456
BOT_USERNAME = "test_support_bot"
BOT_FIRST_NAME = "Test Support Bot"

DEFAULT_FIRST_NAME = "测试用户"
DEFAULT_GROUP_USER_ID = 10001

_callback_ids = itertools.count(1)

# A "/command" (optionally "@botname") standing alone, as Telegram's entity parser finds them.
_BOT_COMMAND = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>@])")


class _MessageIds:
    """One rising sequence of message ids for the whole run, shared with tests.botapi (which
    takes the bot's message ids from it), so a user's message and the bot's never share an id."""

    def __init__(self) -> None:
        self.last = 0

    def next(self, at_least: int = 1) -> int:
        self.last = max(self.last + 1, at_least)
        return self.last

    def seen(self, message_id: int) -> int:
        self.last = max(self.last, message_id)
        return message_id


_message_ids = _MessageIds()


def next_message_id(at_least: int = 1) -> int:
    """The next message id of the module-level counter (never below ``at_least``)."""
    return _message_ids.next(at_least)


def seen_message_id(message_id: int) -> int:
    """Note an id used elsewhere, so that the counter moves past it; returns it."""
    return _message_ids.seen(message_id)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _command_entities(text: str) -> list[JSONDict]:
    return [
        {
            "offset": _utf16_len(text[: match.start()]),
            "length": _utf16_len(match.group()),
            "type": "bot_command",
        }
        for match in _BOT_COMMAND.finditer(text)
    ]


def _user(user_id: int, first_name: str, language_code: str | None) -> JSONDict:
    user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
    if language_code:
        user["language_code"] = language_code
    return user


def _chat(chat_id: int, first_name: str, title: str | None, chat_type: str | None) -> JSONDict:
    if chat_id > 0:
        return {"id": chat_id, "first_name": first_name, "type": "private"}
    if chat_type is None:
        chat_type = "supergroup" if chat_id <= -1_000_000_000_000 else "group"
    return {"id": chat_id, "title": title or "测试群", "type": chat_type}


def _message(
    chat_id: int,
    *,
    user_id: int | None,
    first_name: str,
    language_code: str | None,
    message_id: int | None,
    date: int | None,
    title: str | None = None,
    chat_type: str | None = None,
) -> JSONDict:
    if user_id is None:
        user_id = chat_id if chat_id > 0 else DEFAULT_GROUP_USER_ID
    return {
        "message_id": next_message_id() if message_id is None else seen_message_id(message_id),
        "from": _user(user_id, first_name, language_code),
        "chat": _chat(chat_id, first_name, title, chat_type),
        "date": int(time.time()) if date is None else date,
    }


def _with_text(message: JSONDict, text: str) -> JSONDict:
    message["text"] = text
    entities = _command_entities(text)
    if entities:
        message["entities"] = entities
    return message


def text_message(
    update_id: int,
    chat_id: int,
    text: str,
    *,
    user_id: int | None = None,
    language_code: str = "zh-hans",
    message_id: int | None = None,
    first_name: str = DEFAULT_FIRST_NAME,
    date: int | None = None,
) -> JSONDict:
    """A text message from a user; a private chat for a positive chat_id (the user's own id
    unless ``user_id`` says otherwise), a group for a negative one."""
    message = _message(
        chat_id,
        user_id=user_id,
        first_name=first_name,
        language_code=language_code,
        message_id=message_id,
        date=date,
    )
    return {"update_id": update_id, "message": _with_text(message, text)}


def command(
    update_id: int,
    chat_id: int,
    name: str,
    args: str = "",
    *,
    user_id: int | None = None,
    language_code: str = "zh-hans",
    message_id: int | None = None,
    first_name: str = DEFAULT_FIRST_NAME,
    date: int | None = None,
) -> JSONDict:
    """A command such as ``command(1, 42, "/bind", "482913")`` (text "/bind 482913", with its
    bot_command entity); ``name`` may carry "@botname" and may leave out the slash."""
    name = name if name.startswith("/") else f"/{name}"
    text = f"{name} {args}" if args else name
    return text_message(
        update_id,
        chat_id,
        text,
        user_id=user_id,
        language_code=language_code,
        message_id=message_id,
        first_name=first_name,
        date=date,
    )


def edited_message(
    update_id: int,
    chat_id: int,
    text: str,
    *,
    message_id: int | None = None,
    user_id: int | None = None,
    language_code: str = "zh-hans",
    first_name: str = DEFAULT_FIRST_NAME,
    date: int | None = None,
    edit_date: int | None = None,
) -> JSONDict:
    """A user's edit of an earlier message (give the ``message_id`` it had)."""
    message = _message(
        chat_id,
        user_id=user_id,
        first_name=first_name,
        language_code=language_code,
        message_id=message_id,
        date=date,
    )
    if date is None:
        message["date"] -= 60
    message = _with_text(message, text)
    message["edit_date"] = int(time.time()) if edit_date is None else edit_date
    return {"update_id": update_id, "edited_message": message}


def callback_query(
    update_id: int,
    chat_id: int,
    data: str,
    *,
    message_id: int | None = None,
    user_id: int | None = None,
    language_code: str = "zh-hans",
    first_name: str = DEFAULT_FIRST_NAME,
    message_text: str = "请选择：",
    keyboard: list[list[JSONDict]] | None = None,
    query_id: str | None = None,
    bot_id: int = BOT_ID,
    bot_username: str = BOT_USERNAME,
    bot_first_name: str = BOT_FIRST_NAME,
) -> JSONDict:
    """A press of an inline button whose ``callback_data`` is ``data``, on the bot's keyboard
    message ``message_id`` (a keyboard with that one button unless ``keyboard`` is given)."""
    if user_id is None:
        user_id = chat_id if chat_id > 0 else DEFAULT_GROUP_USER_ID
    if keyboard is None:
        keyboard = [[{"text": data, "callback_data": data}]]
    message: JSONDict = {
        "message_id": next_message_id() if message_id is None else seen_message_id(message_id),
        "from": {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        },
        "chat": _chat(chat_id, first_name, None, None),
        "date": int(time.time()) - 30,
        "text": message_text,
        "reply_markup": {"inline_keyboard": keyboard},
    }
    number = next(_callback_ids)
    query: JSONDict = {
        "id": query_id or str(4_000_000_000_000_000_000 + user_id * 1_000 + number),
        "from": _user(user_id, first_name, language_code),
        "message": message,
        "chat_instance": str(-(6_000_000_000_000_000_000 + abs(chat_id))),
        "data": data,
    }
    return {"update_id": update_id, "callback_query": query}


def sticker(
    update_id: int,
    chat_id: int,
    *,
    emoji: str = "👍",
    set_name: str | None = "HotCherry",
    file_id: str | None = None,
    user_id: int | None = None,
    language_code: str = "zh-hans",
    message_id: int | None = None,
    first_name: str = DEFAULT_FIRST_NAME,
    date: int | None = None,
) -> JSONDict:
    """A (static, regular) sticker."""
    message = _message(
        chat_id,
        user_id=user_id,
        first_name=first_name,
        language_code=language_code,
        message_id=message_id,
        date=date,
    )
    number = message["message_id"]
    file_id = file_id or f"CAACAgIAAxkBAAIB{number:06d}ZmVhdHVyZS1zdGlja2VyLXRlc3Q"
    thumb_id = f"AAMCAgADGQEAAgH{number:06d}ZmVhdHVyZS1zdGlja2VyLXRodW1i"
    content: JSONDict = {
        "width": 512,
        "height": 512,
        "emoji": emoji,
        "is_animated": False,
        "is_video": False,
        "type": "regular",
        "thumbnail": {
            "file_id": thumb_id,
            "file_unique_id": f"AQAD{number:06d}tq",
            "file_size": 5416,
            "width": 128,
            "height": 128,
        },
        "file_id": file_id,
        "file_unique_id": f"AgAD{number:06d}st",
        "file_size": 28000,
    }
    if set_name:
        content["set_name"] = set_name
    message["sticker"] = content
    return {"update_id": update_id, "message": message}


def photo(
    update_id: int,
    chat_id: int,
    *,
    caption: str | None = None,
    width: int = 1280,
    height: int = 960,
    file_id: str | None = None,
    user_id: int | None = None,
    language_code: str = "zh-hans",
    message_id: int | None = None,
    first_name: str = DEFAULT_FIRST_NAME,
    date: int | None = None,
) -> JSONDict:
    """A photo, as the sizes Telegram made of it (smallest first); ``file_id`` names the
    largest."""
    message = _message(
        chat_id,
        user_id=user_id,
        first_name=first_name,
        language_code=language_code,
        message_id=message_id,
        date=date,
    )
    number = message["message_id"]
    sizes: list[JSONDict] = []
    boxes = [box for box in (90, 320, 800) if max(width, height) > box]
    boxes.append(min(max(width, height), 1280))
    for index, box in enumerate(boxes):
        scale = box / max(width, height)
        sizes.append(
            {
                "file_id": f"AgACAgUAAxkBAAIC{number:06d}{index}cGhvdG8tc2l6ZS10ZXN0",
                "file_unique_id": f"AQAD{number:06d}{index}ph",
                "file_size": max(1, round(width * height * scale * scale / 8)),
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
            }
        )
    if file_id is not None:
        sizes[-1]["file_id"] = file_id
    message["photo"] = sizes
    if caption:
        message["caption"] = caption
        entities = _command_entities(caption)
        if entities:
            message["caption_entities"] = entities
    return {"update_id": update_id, "message": message}


def group_message(
    update_id: int,
    chat_id: int,
    text: str,
    *,
    user_id: int = DEFAULT_GROUP_USER_ID,
    title: str = "测试群",
    chat_type: str = "group",
    language_code: str = "zh-hans",
    message_id: int | None = None,
    first_name: str = DEFAULT_FIRST_NAME,
    date: int | None = None,
) -> JSONDict:
    """A text message in a group (chat_id < 0; ``chat_type="supergroup"`` for a supergroup)."""
    if chat_id >= 0:
        raise ValueError(f"a group's chat_id is negative, got {chat_id}")
    message = _message(
        chat_id,
        user_id=user_id,
        first_name=first_name,
        language_code=language_code,
        message_id=message_id,
        date=date,
        title=title,
        chat_type=chat_type,
    )
    return {"update_id": update_id, "message": _with_text(message, text)}

"""A stand-in for Telegram's Bot API: a real aiohttp server on 127.0.0.1 for tests.

    async with BotApiStub() as stub:
        bot = telegram.Bot(stub.token, base_url=stub.base_url, base_file_url=stub.base_file_url)

Requests arrive at ``/bot<token>/<method>`` (method names case-insensitive, as Telegram treats
them), with parameters in the query string, ``application/x-www-form-urlencoded``,
``application/json`` or ``multipart/form-data``. As in Telegram's Bot API server, every parameter
is first a string (form encodings) or any JSON value (JSON body), and then read per field: integer
fields as integers, boolean fields as booleans ("true"/"1"), JSON fields (reply_markup, commands,
allowed_updates, entities, ...) decoded from their JSON text. python-telegram-bot always POSTs a
form (multipart when it uploads a file) in which every non-string value is JSON-encoded.

Answers follow the Bot API: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "..."}`` with Telegram's wording. The text of
sendMessage/editMessageText and the caption of sendPhoto are parsed as Telegram parses them
(parse_mode HTML, MarkdownV2 or Markdown; the same errors for broken markup), trimmed of leading
and trailing white space, and limited to 4096 (captions 1024) UTF-16 code units.

Every call, failed or not, is recorded in ``stub.calls`` as a :class:`Call`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import ipaddress
import itertools
import json
import re
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp import web

from tests import telegram_updates

__all__ = ["DEFAULT_TOKEN", "BotApiStub", "Call"]

JSONDict = dict[str, Any]

DEFAULT_TOKEN = "123456:TEST-token"
DEFAULT_BOT_USERNAME = "test_support_bot"
DEFAULT_BOT_FIRST_NAME = "Test Support Bot"

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
LONG_POLL_MAX_TIMEOUT = 50

_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]*$")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a content and reply markup of the current message"
)
_POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)
_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first"
)
_NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: _POLL_CONFLICT,
    500: "Internal Server Error",
}
_HTTP_PHRASES = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# How Telegram reads each parameter; anything not listed stays as it came.
_CHAT_ID_FIELDS = frozenset({"chat_id", "from_chat_id"})
_INT_FIELDS = _words(
    "message_id offset limit timeout max_connections reply_to_message_id "
    "message_thread_id direct_messages_topic_id cache_time user_id duration width "
    "height"
)
_BOOL_FIELDS = _words(
    "disable_notification protect_content allow_sending_without_reply "
    "allow_paid_broadcast disable_web_page_preview show_alert drop_pending_updates "
    "has_spoiler show_caption_above_media disable_content_type_detection"
)
_JSON_FIELDS = {
    "reply_markup": "can't parse reply keyboard markup JSON object",
    "commands": "can't parse commands JSON object",
    "scope": "can't parse BotCommandScope JSON object",
    "allowed_updates": "can't parse allowed updates JSON object",
    "entities": "can't parse entities JSON object",
    "caption_entities": "can't parse entities JSON object",
    "link_preview_options": "can't parse link preview options JSON object",
    "reply_parameters": "can't parse reply parameters JSON object",
    "media": "can't parse InputMedia JSON object",
    "results": "can't parse inline query results JSON object",
    "message_ids": "can't parse message identifiers JSON object",
    "reaction": "can't parse reaction types JSON object",
    "menu_button": "can't parse menu button JSON object",
    "rights": "can't parse ChatAdministratorRights JSON object",
}
_CHAT_ACTIONS = _words(
    "typing upload_photo record_video upload_video record_voice upload_voice "
    "upload_document choose_sticker find_location record_video_note "
    "upload_video_note"
)
_SCOPE_TYPES = _words(
    "default all_private_chats all_group_chats all_chat_administrators chat "
    "chat_administrators chat_member"
)
# Updates Telegram does not send unless asked for them in allowed_updates.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_MEDIA_KEYS = ("photo", "sticker", "document", "video", "audio", "voice", "animation")
_MESSAGE_KEYS = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_message",
    "edited_business_message",
)


@dataclass(frozen=True)
class Call:
    """One request the stand-in received.

    ``params`` holds the parameters as Telegram reads them (ints, bools, decoded JSON);
    ``files`` the uploaded multipart files by part name; ``at`` the ``time.monotonic()`` of the
    request's arrival; ``failed`` whether the answer was an error; ``status`` the HTTP status;
    ``response`` the JSON body answered (empty for a non-JSON answer).
    """

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    failed: bool = False
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


class ApiError(Exception):
    """An answer ``{"ok": false, ...}`` with this status and description."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def _required(name: str) -> ApiError:
    return _bad(f'parameter "{name}" is required')


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    description: str | None
    remaining: int


@dataclass(frozen=True)
class _Described:
    """A result that Telegram answers together with a description (setWebhook and friends)."""

    result: Any
    description: str


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str


Handler = Callable[[dict[str, Any], dict[str, bytes]], Awaitable[Any]]


class BotApiStub:
    """Telegram's Bot API on 127.0.0.1, for python-telegram-bot (or anything else) to talk to."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = DEFAULT_BOT_USERNAME,
        first_name: str = DEFAULT_BOT_FIRST_NAME,
        strict_edits: bool = False,
    ) -> None:
        """``strict_edits``: editing a message the stand-in has not seen (neither sent by the bot
        through it nor carried by a pushed update) answers "message to edit not found", as
        Telegram would; by default such an edit is accepted, since tests often feed updates to
        the bot without going through the stand-in."""
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.bot_user: JSONDict = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
            "has_topics_enabled": False,
            "allows_users_to_create_topics": False,
        }
        self.strict_edits = strict_edits
        self.calls: list[Call] = []
        self._runner: web.AppRunner | None = None
        self._url = ""
        self._changed = asyncio.Event()
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._updates: list[JSONDict] = []
        self._next_update_id = 1
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self._closing = False
        self._webhook: JSONDict = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._chats: dict[int, JSONDict] = {}
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._last_message_id: dict[int, int] = {}
        self._answered_queries: set[str] = set()
        self._files: dict[str, _StoredFile] = {}
        self._photos: dict[str, list[JSONDict]] = {}
        self._file_counter = itertools.count(1)
        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "logOut": self._log_out,
            "close": self._close,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "getFile": self._get_file,
        }
        self._canonical = {name.lower(): name for name in self._handlers}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("*", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_other)
        # A request whose client went away (a cancelled long poll) is cancelled here too.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Answer pending long polls (with no updates) and stop listening."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The root, e.g. ``http://127.0.0.1:PORT``."""
        if not self._url:
            raise RuntimeError("BotApiStub is not started")
        return self._url

    @property
    def base_url(self) -> str:
        """What python-telegram-bot takes as ``base_url``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """What python-telegram-bot takes as ``base_file_url``."""
        return f"{self.url}/file/bot"

    # ------------------------------------------------------------------ recording

    def calls_of(self, method: str) -> list[Call]:
        """The calls of one method (any case), failed ones included, in order."""
        name = self._canonical.get(method.lower(), method)
        return [call for call in self.calls if call.method == name]

    def sent_texts(self, chat_id: int | str) -> list[str]:
        """The texts of sendMessage and captions of sendPhoto that reached ``chat_id``, in order,
        as the bot sent them (markup included); failed calls are left out."""
        wanted = _to_int(chat_id)
        texts: list[str] = []
        for call in self.calls:
            if call.failed or call.params.get("chat_id") != wanted:
                continue
            if call.method == "sendMessage":
                texts.append(str(call.params.get("text", "")))
            elif call.method == "sendPhoto" and "caption" in call.params:
                texts.append(str(call.params["caption"]))
        return texts

    def messages(self, chat_id: int) -> list[JSONDict]:
        """The messages of ``chat_id`` as they stand now (edits applied): those the bot sent and
        those carried by pushed updates, by message_id."""
        found = [m for (chat, _), m in self._messages.items() if chat == chat_id]
        return copy.deepcopy(sorted(found, key=lambda m: int(m["message_id"])))

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until at least ``count`` calls of ``method`` (failed ones included) were recorded;
        return them, or raise TimeoutError listing what was recorded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            found = self.calls_of(method)
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                recorded = ", ".join(
                    c.method + (" (failed)" if c.failed else "") for c in self.calls
                )
                raise TimeoutError(
                    f"expected {count} call(s) of {method} within {timeout}s, got {len(found)}; "
                    f"recorded: {recorded or 'nothing'}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def clear_calls(self) -> None:
        self.calls.clear()

    # ------------------------------------------------------------------ faults and updates

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = None,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail as Telegram fails.

        429 answers ``Too Many Requests: retry after N`` with ``parameters.retry_after`` (N
        defaults to 1); 502/503/504 without a description answer nginx's HTML page, as Telegram's
        front does; any other status answers the JSON error body with ``description`` (or the
        usual one for that status). Faults queue up behind each other.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if status == 429 and retry_after is None:
            retry_after = 1
        name = self._known(method)
        self._faults.setdefault(name, []).append(_Fault(status, retry_after, description, times))

    def clear_faults(self, method: str | None = None) -> None:
        """Drop the faults still queued for ``method`` (for every method when None): Telegram
        is well again."""
        if method is None:
            self._faults.clear()
        else:
            self._faults.pop(self._known(method), None)

    def delay(self, method: str, seconds: float) -> None:
        """Answer every call of ``method`` ``seconds`` late (0 to stop)."""
        name = self._known(method)
        if seconds > 0:
            self._delays[name] = seconds
        else:
            self._delays.pop(name, None)

    def _known(self, method: str) -> str:
        name = self._canonical.get(method.lower())
        if name is None:
            raise ValueError(f"the stand-in does not implement {method}: {sorted(self._handlers)}")
        return name

    def push_update(self, update: JSONDict) -> int:
        """Queue an update for getUpdates (and wake a waiting long poll); returns its update_id,
        assigned in sequence when the update has none."""
        data = copy.deepcopy(update)
        if "update_id" not in data:
            data["update_id"] = self._next_update_id
        update_id = int(data["update_id"])
        self._next_update_id = max(self._next_update_id, update_id + 1)
        self._updates.append(data)
        self._updates.sort(key=lambda u: int(u["update_id"]))
        self._learn(data)
        self._notify()
        return update_id

    @property
    def pending_updates(self) -> list[JSONDict]:
        """The updates not yet confirmed by an offset."""
        return copy.deepcopy(self._updates)

    @property
    def webhook(self) -> JSONDict:
        """The webhook as set (url, secret_token, allowed_updates, max_connections, ...)."""
        return copy.deepcopy(self._webhook)

    def commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """The commands set for a scope (default scope when None) and language."""
        key = (_scope_key(scope or {"type": "default"}), language_code)
        return copy.deepcopy(self._commands.get(key, []))

    def add_file(
        self,
        data: bytes,
        *,
        file_id: str | None = None,
        file_unique_id: str | None = None,
        file_path: str | None = None,
    ) -> str:
        """Make a file known to getFile and downloadable from base_file_url (e.g. the file_id of
        a photo a pushed update carries); returns its file_id."""
        number = next(self._file_counter)
        file_id = file_id or _file_id("BQACAgIAAxkBAAI", number)
        stored = _StoredFile(
            file_id=file_id,
            file_unique_id=file_unique_id or _unique_id(file_id),
            data=data,
            file_path=file_path or f"documents/file_{number}",
        )
        self._files[file_id] = stored
        return file_id

    # ------------------------------------------------------------------ HTTP

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    async def _handle_other(self, request: web.Request) -> web.Response:
        return web.json_response(_error_body(404, "Not Found"), status=404)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(_error_body(404, "Not Found"), status=404)
        path = request.match_info["path"]
        for stored in self._files.values():
            if stored.file_path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.json_response(_error_body(404, "Not Found"), status=404)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        token = request.match_info["token"]
        asked = request.match_info["method"]
        method = self._canonical.get(asked.lower(), asked)
        raw: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        params: dict[str, Any] = {}
        try:
            raw, files = await _read_params(request)
            params, coercion_error = _coerce(raw)
            if token != self.token:
                if _TOKEN_SHAPE.match(token):
                    raise ApiError(401, "Unauthorized")
                raise ApiError(404, "Not Found")
            handler = self._handlers.get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            if method in self._delays:
                await asyncio.sleep(self._delays[method])
            injected = self._take_fault(method)
            if injected is not None:
                response = _fault_response(injected)
                body = _json_of(response)
                self._record(
                    Call(method, params or raw, files, arrived, True, response.status, body)
                )
                return response
            if coercion_error is not None:
                raise coercion_error
            result = await handler(params, files)
        except asyncio.CancelledError:
            # The client hung up before the answer (nginx logs such a request as 499).
            self._record(Call(method, params or raw, files, arrived, True, 499, {}))
            raise
        except ApiError as error:
            body = _error_body(error.status, error.description, error.parameters)
            self._record(Call(method, params or raw, files, arrived, True, error.status, body))
            return web.json_response(body, status=error.status)
        if isinstance(result, _Described):
            body = {"ok": True, "result": result.result, "description": result.description}
        else:
            body = {"ok": True, "result": result}
        self._record(Call(method, params, files, arrived, False, 200, copy.deepcopy(body)))
        return web.json_response(body)

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        return fault

    # ------------------------------------------------------------------ shared pieces

    def _chat_id(self, params: dict[str, Any], name: str = "chat_id") -> int:
        value = params.get(name)
        if value is None or value == "":
            raise _bad(f"{name} is empty")
        if isinstance(value, int) and not isinstance(value, bool) and value != 0:
            return value
        # @channelusername, garbage and 0 name no chat the stand-in knows.
        raise _bad("chat not found")

    def _chat(self, chat_id: int) -> JSONDict:
        known = self._chats.get(chat_id)
        if known is not None:
            return copy.deepcopy(known)
        if chat_id > 0:
            return {"id": chat_id, "first_name": "User", "type": "private"}
        if chat_id <= -1_000_000_000_000:
            return {"id": chat_id, "title": "Supergroup", "type": "supergroup"}
        return {"id": chat_id, "title": "Group", "type": "group"}

    def _bot_from(self) -> JSONDict:
        keys = ("id", "is_bot", "first_name", "username")
        return {key: self.bot_user[key] for key in keys}

    def _new_message(self, chat_id: int, params: dict[str, Any], **content: Any) -> JSONDict:
        # Rising in each chat, and never an id a builder of tests.telegram_updates hands out.
        message_id = telegram_updates.next_message_id(self._last_message_id.get(chat_id, 0) + 1)
        self._last_message_id[chat_id] = message_id
        message: JSONDict = {
            "message_id": message_id,
            "from": self._bot_from(),
            "chat": self._chat(chat_id),
            "date": int(time.time()),
        }
        thread_id = params.get("message_thread_id")
        if isinstance(thread_id, int) and thread_id > 0:
            message["message_thread_id"] = thread_id
        replied = self._replied_message(chat_id, params)
        if replied is not None:
            message["reply_to_message"] = replied
        message.update({key: value for key, value in content.items() if value is not None})
        if params.get("protect_content") is True:
            message["has_protected_content"] = True
        self._messages[(chat_id, message_id)] = message
        return copy.deepcopy(message)

    def _replied_message(self, chat_id: int, params: dict[str, Any]) -> JSONDict | None:
        reply = params.get("reply_parameters")
        target: Any = params.get("reply_to_message_id")
        if isinstance(reply, dict):
            target = reply.get("message_id")
            if reply.get("chat_id") not in (None, chat_id):
                return None
        if not isinstance(target, int) or target <= 0:
            return None
        found = self._messages.get((chat_id, target))
        if found is None:
            # Telegram refuses an unknown message unless told to send anyway; the stand-in only
            # knows messages that went through it, so it sends without the reply instead.
            return None
        replied = copy.deepcopy(found)
        replied.pop("reply_to_message", None)
        return replied

    def _formatted(
        self,
        params: dict[str, Any],
        text_key: str,
        entities_key: str,
        *,
        limit: int,
        too_long: str,
        empty: str | None,
    ) -> tuple[str, list[JSONDict]]:
        raw = params.get(text_key)
        if raw is None or raw == "":
            if empty is not None:
                raise _bad(empty)
            return "", []
        raw = _as_text(raw)
        explicit = params.get(entities_key)
        mode = str(params.get("parse_mode") or "").lower()
        if isinstance(explicit, list) and explicit:
            text, entities = raw, [e for e in explicit if isinstance(e, dict)]
        elif mode == "":
            text, entities = raw, []
        elif mode == "html":
            text, entities = _run_parser(_parse_html, raw)
        elif mode == "markdownv2":
            text, entities = _run_parser(_parse_markdown_v2, raw)
        elif mode == "markdown":
            text, entities = _run_parser(_parse_markdown, raw)
        else:
            raise _bad("unsupported parse_mode")
        text, entities = _trim(text, entities)
        if not text and empty is not None:
            raise _bad(empty)
        if _utf16_len(text) > limit:
            raise _bad(too_long)
        return text, entities

    def _reply_markup(self, params: dict[str, Any]) -> JSONDict | None:
        """Check reply_markup as Telegram does; return the inline keyboard a Message echoes."""
        if "reply_markup" not in params:
            return None
        markup = params["reply_markup"]
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            keyboard = markup["inline_keyboard"]
            if not isinstance(keyboard, list):
                raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
            for row in keyboard:
                if not isinstance(row, list):
                    raise _bad(
                        'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of '
                        "Arrays"
                    )
                for button in row:
                    _check_inline_button(button)
            rows = [row for row in keyboard if row]
            return {"inline_keyboard": rows} if rows else None
        if "keyboard" in markup:
            keyboard = markup["keyboard"]
            if not isinstance(keyboard, list) or not all(isinstance(r, list) for r in keyboard):
                raise _bad('field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays')
            return None
        if "remove_keyboard" in markup or "force_reply" in markup:
            return None
        raise _bad("can't parse reply keyboard markup JSON object")

    def _editable(self, params: dict[str, Any]) -> tuple[int, int, JSONDict] | None:
        """The (chat_id, message_id, message) an edit targets; None for an inline message."""
        inline_id = params.get("inline_message_id")
        if "chat_id" not in params and inline_id not in (None, ""):
            return None
        chat_id = self._chat_id(params)
        message_id = params.get("message_id")
        if message_id is None or message_id == "":
            raise _bad("message identifier is not specified")
        if not isinstance(message_id, int) or message_id <= 0:
            raise _bad("message to edit not found")
        found = self._messages.get((chat_id, message_id))
        if found is None:
            if self.strict_edits:
                raise _bad("message to edit not found")
            found = {
                "message_id": message_id,
                "from": self._bot_from(),
                "chat": self._chat(chat_id),
                "date": int(time.time()),
            }
            self._messages[(chat_id, message_id)] = found
            self._last_message_id[chat_id] = max(self._last_message_id.get(chat_id, 0), message_id)
            telegram_updates.seen_message_id(message_id)
        elif found.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return chat_id, message_id, found

    def _learn(self, update: JSONDict) -> None:
        """Remember the chats and messages a pushed update carries."""
        carried = [update.get(key) for key in _MESSAGE_KEYS]
        query = update.get("callback_query")
        if isinstance(query, dict):
            carried.append(query.get("message"))
        for message in carried:
            if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
                continue
            chat = message["chat"]
            chat_id, message_id = chat.get("id"), message.get("message_id")
            if not isinstance(chat_id, int) or not isinstance(message_id, int):
                continue
            self._chats.setdefault(chat_id, copy.deepcopy(chat))
            self._last_message_id[chat_id] = max(self._last_message_id.get(chat_id, 0), message_id)
            telegram_updates.seen_message_id(message_id)
            self._messages[(chat_id, message_id)] = copy.deepcopy(message)

    # ------------------------------------------------------------------ methods

    async def _get_me(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return copy.deepcopy(self.bot_user)

    async def _log_out(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return True

    async def _close(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return True

    async def _get_updates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if self._webhook.get("url"):
            raise ApiError(409, _WEBHOOK_CONFLICT)
        offset = _int_or(params.get("offset"), 0)
        limit = min(max(_int_or(params.get("limit"), 100), 1), 100)
        timeout = min(max(_int_or(params.get("timeout"), 0), 0), LONG_POLL_MAX_TIMEOUT)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed] or None
        if offset > 0:
            self._updates = [u for u in self._updates if int(u["update_id"]) >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older long poll ends with a conflict
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            if self._poll_generation != generation:
                raise ApiError(409, _POLL_CONFLICT)
            ready = self._deliverable()[:limit]
            remaining = deadline - loop.time()
            if ready or self._closing or remaining <= 0:
                return copy.deepcopy(ready)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _deliverable(self) -> list[JSONDict]:
        wanted = self._allowed_updates
        kept = []
        for update in self._updates:
            kinds = [key for key in update if key != "update_id"]
            kind = kinds[0] if kinds else ""
            allowed = kind in wanted if wanted is not None else kind not in _OPT_IN_UPDATES
            if allowed:
                kept.append(update)
        self._updates = kept  # Telegram never creates the updates nobody asked for
        return kept

    async def _set_webhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        url = _as_text(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params, files)
        parts = urlsplit(url)
        if parts.scheme.lower() != "https":
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        try:
            port = parts.port
        except ValueError:
            raise _bad("bad webhook: Wrong port number specified in the URL") from None
        if not parts.hostname:
            raise _bad("bad webhook: Failed to resolve host: Name or service not known")
        if port not in (None, 80, 88, 443, 8443):
            raise _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(parts.hostname)
            if not address.is_global:
                raise _bad(f"bad webhook: IP address {address} is reserved")
        secret = params.get("secret_token")
        if secret is not None:
            secret = _as_text(secret)
            if len(secret) > 256:
                raise _bad("secret token is too long")
            if not _SECRET_TOKEN.match(secret):
                raise _bad("secret token contains unallowed characters")
        max_connections = min(max(_int_or(params.get("max_connections"), 40), 1), 100)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            allowed_updates = [str(kind) for kind in allowed]
        else:
            allowed_updates = list(self._allowed_updates or [])
        webhook: JSONDict = {
            "url": url,
            "secret_token": secret or "",
            "max_connections": max_connections,
            "allowed_updates": allowed_updates,
            "ip_address": _as_text(params.get("ip_address") or ""),
            "has_custom_certificate": "certificate" in files,
        }
        unchanged = webhook == self._webhook
        self._webhook = webhook
        self._allowed_updates = allowed_updates or None
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        self._notify()
        return _Described(True, "Webhook is already set" if unchanged else "Webhook was set")

    async def _delete_webhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        was_set = bool(self._webhook.get("url"))
        self._webhook = {}
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        return _Described(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def _get_webhook_info(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        info: JSONDict = {
            "url": self._webhook.get("url", ""),
            "has_custom_certificate": bool(self._webhook.get("has_custom_certificate")),
            "pending_update_count": len(self._deliverable()),
        }
        if self._webhook.get("url"):
            info["max_connections"] = self._webhook["max_connections"]
            if self._webhook.get("ip_address"):
                info["ip_address"] = self._webhook["ip_address"]
            if self._webhook.get("allowed_updates"):
                info["allowed_updates"] = list(self._webhook["allowed_updates"])
        return info

    def _commands_key(self, params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope", {"type": "default"})
        if not isinstance(scope, dict) or scope.get("type") not in _SCOPE_TYPES:
            raise _bad("can't parse BotCommandScope JSON object")
        if scope["type"] in ("chat", "chat_administrators", "chat_member"):
            self._chat_id(scope)
            if scope["type"] == "chat_member" and not isinstance(scope.get("user_id"), int):
                raise _bad("user not found")
        language = _as_text(params.get("language_code") or "")
        if language and not _LANGUAGE_CODE.match(language):
            raise _bad("invalid language code specified")
        return _scope_key(scope), language

    async def _set_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if "commands" not in params:
            raise _required("commands")
        commands = params["commands"]
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        kept: list[JSONDict] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand: expected an Object")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str):
                raise _bad('can\'t parse BotCommand: Field "command" must be of type String')
            if not isinstance(description, str):
                raise _bad('can\'t parse BotCommand: Field "description" must be of type String')
            if not _COMMAND.match(name.removeprefix("/")):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            kept.append({"command": name.removeprefix("/"), "description": description})
        key = self._commands_key(params)
        if kept:
            self._commands[key] = kept
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self._commands.pop(self._commands_key(params), None)
        return True

    async def _send_message(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        text, entities = self._formatted(
            params,
            "text",
            "entities",
            limit=MAX_TEXT_LENGTH,
            too_long="message is too long",
            empty="message text is empty",
        )
        markup = self._reply_markup(params)
        preview = params.get("link_preview_options")
        if not isinstance(preview, dict) and params.get("disable_web_page_preview") is True:
            preview = {"is_disabled": True}
        return self._new_message(
            chat_id,
            params,
            text=text,
            entities=entities or None,
            link_preview_options=preview if isinstance(preview, dict) and preview else None,
            reply_markup=markup,
        )

    async def _send_photo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        sizes = self._photo_sizes(params, files)
        caption, entities = self._formatted(
            params,
            "caption",
            "caption_entities",
            limit=MAX_CAPTION_LENGTH,
            too_long="message caption is too long",
            empty=None,
        )
        markup = self._reply_markup(params)
        return self._new_message(
            chat_id,
            params,
            photo=sizes,
            caption=caption or None,
            caption_entities=entities or None,
            show_caption_above_media=True if params.get("show_caption_above_media") else None,
            has_media_spoiler=True if params.get("has_spoiler") else None,
            reply_markup=markup,
        )

    def _photo_sizes(self, params: dict[str, Any], files: dict[str, bytes]) -> list[JSONDict]:
        value = params.get("photo")
        data: bytes | None = None
        if isinstance(value, str) and value.startswith("attach://"):
            data = files.get(value.removeprefix("attach://"))
            if data is None:
                raise _bad("there is no photo in the request")
        elif value is None or value == "":
            data = files.get("photo")
            if data is None:
                raise _bad("there is no photo in the request")
        if data is None:
            reference = _as_text(value)
            if reference in self._photos:
                return copy.deepcopy(self._photos[reference])
            if reference in self._files:
                data = self._files[reference].data
            elif re.match(r"^https?://", reference, re.IGNORECASE):
                return self._store_photo(b"", 800, 600, 64_000)
            elif not re.match(r"^[A-Za-z0-9_-]{20,}$", reference):
                raise _bad("wrong file identifier/HTTP URL specified")
            else:
                return self._store_photo(b"", 800, 600, 64_000)
        dimensions = _image_size(data)
        if dimensions is None:
            raise _bad("IMAGE_PROCESS_FAILED")
        width, height = dimensions
        if width + height > 10_000 or max(width, height) > 20 * min(width, height):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        return self._store_photo(data, width, height, len(data))

    def _store_photo(self, data: bytes, width: int, height: int, size: int) -> list[JSONDict]:
        boxes = [box for box in (90, 320, 800) if max(width, height) > box]
        boxes.append(min(max(width, height), 1280))
        sizes: list[JSONDict] = []
        for box in boxes:
            scale = box / max(width, height)
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            number = next(self._file_counter)
            file_id = _file_id("AgACAgIAAxkDAAI", number)
            file_size = max(1, round(size * (w * h) / (width * height)))
            sizes.append(
                {
                    "file_id": file_id,
                    "file_unique_id": _unique_id(file_id),
                    "file_size": file_size,
                    "width": w,
                    "height": h,
                }
            )
            self._files[file_id] = _StoredFile(
                file_id, _unique_id(file_id), data, f"photos/file_{number}.jpg"
            )
        for size_ in sizes:
            self._photos[size_["file_id"]] = sizes
        return copy.deepcopy(sizes)

    async def _send_chat_action(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self._chat_id(params)
        action = params.get("action")
        if action is None or action == "":
            raise _required("action")
        if action not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    async def _answer_callback_query(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        query_id = params.get("callback_query_id")
        if query_id is None or query_id == "":
            raise _required("callback_query_id")
        query_id = _as_text(query_id)
        if query_id in self._answered_queries:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and _utf16_len(_as_text(text)) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad("MESSAGE_TOO_LONG")
        self._answered_queries.add(query_id)
        return True

    async def _edit_message_text(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        target = self._editable(params)
        text, entities = self._formatted(
            params,
            "text",
            "entities",
            limit=MAX_TEXT_LENGTH,
            too_long="message is too long",
            empty="message text is empty",
        )
        markup = self._reply_markup(params)
        if target is None:
            return True
        _, _, message = target
        if "text" not in message and any(key in message for key in _MEDIA_KEYS):
            raise _bad("there is no text in the message to edit")
        unchanged = (
            message.get("text") == text
            and message.get("entities", []) == entities
            and message.get("reply_markup") == markup
        )
        if unchanged:
            raise _bad(_NOT_MODIFIED)
        message["text"] = text
        _put(message, "entities", entities or None)
        _put(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _edit_message_reply_markup(
        self, params: dict[str, Any], files: dict[str, bytes]
    ) -> Any:
        target = self._editable(params)
        markup = self._reply_markup(params)
        sent = params.get("reply_markup")
        if isinstance(sent, dict) and "inline_keyboard" not in sent:
            raise _bad("inline keyboard expected")
        if target is None:
            return True
        _, _, message = target
        if message.get("reply_markup") == markup:
            raise _bad(_NOT_MODIFIED)
        _put(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _get_file(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        file_id = params.get("file_id")
        if file_id is None or file_id == "":
            raise _required("file_id")
        stored = self._files.get(_as_text(file_id))
        if stored is None:
            raise _bad("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }


# ---------------------------------------------------------------------- request parsing


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The parameters as Telegram receives them: query string, then the body over it."""
    raw: dict[str, Any] = dict(request.query)
    files: dict[str, bytes] = {}
    if request.content_type == "application/json":
        body = await request.read()
        if body.strip():
            try:
                decoded = json.loads(body)
            except ValueError:
                raise _bad("can't parse JSON encoded request") from None
            if not isinstance(decoded, dict):
                raise _bad("JSON object expected as request body")
            raw.update(decoded)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = value.file.read()
            elif isinstance(value, bytes):
                raw[name] = value.decode("utf-8", "replace")
            else:
                raw[name] = value
    return raw, files


def _coerce(raw: dict[str, Any]) -> tuple[dict[str, Any], ApiError | None]:
    """Read every parameter as Telegram reads that field; the first unreadable one is the error."""
    params: dict[str, Any] = {}
    error: ApiError | None = None
    for name, value in raw.items():
        if name in _JSON_FIELDS and isinstance(value, str):
            try:
                params[name] = json.loads(value)
            except ValueError:
                params[name] = value
                error = error or _bad(_JSON_FIELDS[name])
        elif name in _CHAT_ID_FIELDS or name in _INT_FIELDS:
            params[name] = _to_int(value)
        elif name in _BOOL_FIELDS:
            params[name] = _to_bool(value)
        else:
            params[name] = value
    return params, error


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() in ("true", "yes", "1")


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _scope_key(scope: JSONDict) -> str:
    return json.dumps(scope, sort_keys=True)


def _put(message: JSONDict, key: str, value: Any) -> None:
    if value is None:
        message.pop(key, None)
    else:
        message[key] = value


def _check_inline_button(button: Any) -> None:
    prefix = "can't parse inline keyboard button: "
    if not isinstance(button, dict):
        raise _bad(prefix + "InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise _bad(prefix + 'Field "text" must be of type String')
    action = next((key for key in _INLINE_BUTTON_ACTIONS if key in button), None)
    if action is None:
        raise _bad(prefix + "Text buttons are unallowed in the inline keyboard")
    if action == "callback_data":
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise _bad("BUTTON_DATA_INVALID")
    elif action == "url":
        url = button["url"]
        target = url if isinstance(url, str) and "://" in url else f"http://{url}"
        parts = urlsplit(target)
        ok = parts.scheme.lower() in ("http", "https") and "." in (parts.hostname or "")
        ok = ok or parts.scheme.lower() in ("tg", "ton")
        if not isinstance(url, str) or not ok:
            raise _bad("BUTTON_URL_INVALID")


# ---------------------------------------------------------------------- answers


def _error_body(status: int, description: str, parameters: JSONDict | None = None) -> JSONDict:
    body: JSONDict = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def _fault_response(fault: _Fault) -> web.Response:
    if fault.description is None and fault.status in _HTTP_PHRASES:
        page = _NGINX_PAGE.format(status=fault.status, phrase=_HTTP_PHRASES[fault.status])
        return web.Response(status=fault.status, text=page, content_type="text/html")
    parameters = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
    if fault.description is not None:
        description = fault.description
    elif fault.status == 429:
        description = f"Too Many Requests: retry after {fault.retry_after}"
    else:
        description = _DEFAULT_DESCRIPTIONS.get(fault.status, f"Error {fault.status}")
    body = _error_body(fault.status, description, parameters)
    return web.json_response(body, status=fault.status)


def _json_of(response: web.Response) -> JSONDict:
    if response.content_type != "application/json" or response.text is None:
        return {}
    decoded = json.loads(response.text)
    return decoded if isinstance(decoded, dict) else {}


# ---------------------------------------------------------------------- files


def _file_id(prefix: str, number: int) -> str:
    digest = hashlib.sha256(f"{prefix}{number}".encode()).digest() * 2
    return prefix + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:64]


def _unique_id(file_id: str) -> str:
    digest = hashlib.sha256(file_id.encode()).digest()
    return "AQAD" + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:12]


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, GIF, WebP or BMP image; None for anything else."""
    size: tuple[int, int] | None = None
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        size = (width, height)
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        size = (width, height)
    elif data.startswith(b"\xff\xd8"):
        size = _jpeg_size(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            size = (
                1 + int.from_bytes(data[24:27], "little"),
                1 + int.from_bytes(data[27:30], "little"),
            )
        elif chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            size = (width & 0x3FFF, height & 0x3FFF)
        elif chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    elif data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        size = (abs(width), abs(height))
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return None


# ---------------------------------------------------------------------- text formatting
#
# Ports of TDLib's parse_html, parse_markdown_v2 and parse_markdown (td/telegram/MessageEntity.cpp),
# which the Bot API runs on text with a parse_mode: same entities, same error messages, with byte
# offsets counted in UTF-8 as Telegram counts them. Entity offsets and lengths are UTF-16 units.


class _ParseError(Exception):
    pass


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _run_parser(
    parser: Callable[[str], tuple[str, list[JSONDict]]], text: str
) -> tuple[str, list[JSONDict]]:
    try:
        return parser(text)
    except _ParseError as error:
        raise _bad(f"can't parse entities: {error}") from None


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


_SPACES = " \t\r\n\v\0"
_TRIMMED = " \t\r\n\v\f\u00a0\u2028\u2029"


def _trim(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Telegram drops leading and trailing white space, cutting entities to what is left."""
    stripped = text.lstrip(_TRIMMED)
    shift = _utf16_len(text) - _utf16_len(stripped)
    stripped = stripped.rstrip(_TRIMMED)
    total = _utf16_len(stripped)
    kept: list[JSONDict] = []
    for entity in entities:
        start = max(int(entity.get("offset", 0)) - shift, 0)
        end = min(int(entity.get("offset", 0)) + int(entity.get("length", 0)) - shift, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    kept.sort(key=lambda e: (e["offset"], -e["length"]))
    return stripped, kept


_HTML_TAGS = _words(
    "a b strong i em s strike del u ins tg-spoiler tg-emoji span pre code blockquote tg-time"
)
_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_html_entity(text: str, i: int) -> tuple[str, int] | None:
    """The character an HTML entity at text[i] ('&') stands for, and its length."""
    match = re.match(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{1,10});", text[i:])
    if match is None:
        return None
    name = match.group(1)
    if name.startswith(("#x", "#X")):
        code = int(name[2:], 16)
    elif name.startswith("#"):
        code = int(name[1:])
    elif name in _NAMED_ENTITIES:
        return _NAMED_ENTITIES[name], match.end()
    else:
        return None
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), match.end()


def _parse_html(text: str) -> tuple[str, list[JSONDict]]:
    result: list[str] = []
    offset = 0  # UTF-16 units of result
    stack: list[tuple[str, str, int]] = []  # tag, argument, start offset
    entities: list[JSONDict] = []
    n = len(text)

    def char(k: int) -> str:
        return text[k] if k < n else "\0"

    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is not None:
                result.append(decoded[0])
                offset += _utf16_len(decoded[0])
                i += decoded[1]
                continue
        if c != "<":
            result.append(c)
            offset += _utf16_len(c)
            i += 1
            continue
        begin = i
        at = _byte_offset(text, begin)
        i += 1
        if char(i) != "/":
            while i < n and char(i) not in _SPACES and char(i) != ">":
                i += 1
            if i >= n:
                raise _ParseError(f"Unclosed start tag at byte offset {at}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise _ParseError(f'Unsupported start tag "{tag}" at byte offset {at}')
            argument = ""
            while char(i) != ">":
                while i < n and char(i) in _SPACES:
                    i += 1
                if char(i) == ">":
                    break
                name_begin = i
                while i < n and char(i) not in _SPACES and char(i) != "=":
                    i += 1
                attribute = text[name_begin:i]
                if not attribute:
                    raise _ParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {at}'
                    )
                while i < n and char(i) in _SPACES:
                    i += 1
                if tag == "blockquote" and attribute == "expandable" and char(i) != "=":
                    argument = "1"  # <blockquote expandable> takes no value
                    continue
                if char(i) != "=":
                    raise _ParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {at}'
                    )
                i += 1
                while i < n and char(i) in _SPACES:
                    i += 1
                if i >= n:
                    raise _ParseError(f'Unclosed start tag "{tag}" at byte offset {at}')
                if char(i) not in "'\"":
                    token_begin = i
                    while char(i).isascii() and (char(i).isalnum() or char(i) in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if char(i) not in _SPACES and char(i) != ">":
                        raise _ParseError(
                            "Unexpected end of name token at byte offset "
                            f"{_byte_offset(text, token_begin)}"
                        )
                else:
                    quote = char(i)
                    i += 1
                    pieces: list[str] = []
                    while i < n and char(i) != quote:
                        if char(i) == "&":
                            decoded = _decode_html_entity(text, i)
                            if decoded is not None:
                                pieces.append(decoded[0])
                                i += decoded[1]
                                continue
                        pieces.append(char(i))
                        i += 1
                    if char(i) == quote:
                        i += 1
                    value = "".join(pieces)
                if i >= n:
                    raise _ParseError(f"Unclosed start tag at byte offset {at}")
                if tag == "a" and attribute == "href":
                    argument = value
                elif tag == "code" and attribute == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attribute == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and attribute == "emoji-id":
                    argument = value
                elif tag == "blockquote" and attribute == "expandable":
                    argument = "1"
            if tag == "span" and argument != "spoiler":
                raise _ParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at}')
            stack.append((tag, argument, offset))
            i += 1  # the '>'
        else:
            if not stack:
                raise _ParseError(f"Unexpected end tag at byte offset {at}")
            i += 1
            while i < n and char(i) not in _SPACES and char(i) != ">":
                i += 1
            end_tag = text[begin + 2 : i].lower()
            while i < n and char(i) in _SPACES:
                i += 1
            if char(i) != ">":
                raise _ParseError(f"Unclosed end tag at byte offset {at}")
            tag, argument, start = stack.pop()
            if end_tag and end_tag != tag:
                raise _ParseError(
                    f'Unmatched end tag at byte offset {at}, expected "</{tag}>", found '
                    f'"</{end_tag}>"'
                )
            i += 1
            if offset > start:
                entity = _html_entity(tag, argument, start, offset - start, entities)
                if entity is not None:
                    entities.append(entity)
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(result), entities


def _html_entity(
    tag: str, argument: str, offset: int, length: int, inner: list[JSONDict]
) -> JSONDict | None:
    if tag == "a":
        if not argument:
            return None
        return {"type": "text_link", "offset": offset, "length": length, "url": argument}
    if tag == "tg-emoji":
        if not argument:
            return None
        return {
            "type": "custom_emoji",
            "offset": offset,
            "length": length,
            "custom_emoji_id": argument,
        }
    if tag == "tg-time":
        return None
    if tag == "blockquote" and argument:
        return {"type": "expandable_blockquote", "offset": offset, "length": length}
    if tag == "pre":
        # <pre><code class="language-x">...</code></pre> is one pre entity with a language.
        for entity in inner:
            same = entity["offset"] == offset and entity["length"] == length
            if same and entity["type"] == "code" and entity.get("language"):
                inner.remove(entity)
                return {**entity, "type": "pre"}
        return {"type": "pre", "offset": offset, "length": length}
    entity = {"type": _HTML_ENTITY_TYPES[tag], "offset": offset, "length": length}
    if tag == "code" and argument:
        entity["language"] = argument
    return entity


_MD2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MD2_TYPES = {
    "Bold": "bold",
    "Italic": "italic",
    "Underline": "underline",
    "Strikethrough": "strikethrough",
    "Spoiler": "spoiler",
    "Code": "code",
    "Pre": "pre",
    "TextUrl": "text_link",
    "CustomEmoji": "custom_emoji",
}


def _parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    result: list[str] = []
    offset = 0
    # kind, argument, start offset, byte offset of the opening, index into result
    stack: list[tuple[str, str, int, int, int]] = []
    entities: list[JSONDict] = []
    n = len(text)

    def char(k: int) -> str:
        return text[k] if k < n else "\0"

    def reserved(c: str) -> _ParseError:
        return _ParseError(
            f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
        )

    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and 0 < ord(char(i + 1)) <= 126:
            result.append(text[i + 1])
            offset += 1
            i += 2
            continue
        inside_code = bool(stack) and stack[-1][0] in ("Code", "Pre")
        if c == ">" and not inside_code and (i == 0 or text[i - 1] == "\n"):
            i += 1  # a block quote line: the marker is not text
            continue
        if c not in ("`" if inside_code else _MD2_RESERVED):
            result.append(c)
            offset += _utf16_len(c)
            i += 1
            continue
        closing = False
        if stack:
            kind = stack[-1][0]
            closing = {
                "Bold": c == "*",
                "Italic": c == "_" and char(i + 1) != "_",
                "Code": c == "`",
                "Pre": c == "`" and char(i + 1) == "`" and char(i + 2) == "`",
                "TextUrl": c == "]",
                "CustomEmoji": c == "]",
                "Underline": c == "_" and char(i + 1) == "_",
                "Strikethrough": c == "~",
                "Spoiler": c == "|" and char(i + 1) == "|",
            }[kind]
        if not closing:
            at = _byte_offset(text, i)
            argument = ""
            if c == "_":
                kind = "Italic"
                if char(i + 1) == "_":
                    kind = "Underline"
                    i += 1
            elif c == "*":
                kind = "Bold"
            elif c == "~":
                kind = "Strikethrough"
            elif c == "|" and char(i + 1) == "|":
                kind = "Spoiler"
                i += 1
            elif c == "[":
                kind = "TextUrl"
            elif c == "!" and char(i + 1) == "[":
                kind = "CustomEmoji"
                i += 1
            elif c == "`" and char(i + 1) == "`" and char(i + 2) == "`":
                kind = "Pre"
                i += 3
                language_end = i
                while language_end < n and char(language_end) not in _SPACES + "`":
                    language_end += 1
                if i != language_end and language_end < n and char(language_end) != "`":
                    argument = text[i:language_end]
                    i = language_end
                if char(i) in "\r\n":
                    if char(i + 1) in "\r\n" and char(i) != char(i + 1):
                        i += 2
                    else:
                        i += 1
                i -= 1
            elif c == "`":
                kind = "Code"
            else:
                raise reserved(c)
            stack.append((kind, argument, offset, at, len(result)))
            i += 1
            continue
        kind, argument, start, _, begin_index = stack.pop()
        base: JSONDict = {"type": _MD2_TYPES[kind], "offset": start, "length": 0}
        entity: JSONDict | None = base
        if kind in ("Underline", "Spoiler"):
            i += 1
        elif kind == "Pre":
            i += 2
        elif kind in ("TextUrl", "CustomEmoji"):
            if char(i + 1) != "(":
                url = "".join(result[begin_index:])
            else:
                i += 2
                url_begin = _byte_offset(text, i)
                pieces: list[str] = []
                while i < n and char(i) != ")":
                    if char(i) == "\\" and 0 < ord(char(i + 1)) <= 126:
                        pieces.append(char(i + 1))
                        i += 2
                        continue
                    pieces.append(char(i))
                    i += 1
                if char(i) != ")":
                    raise _ParseError(f"Can't find end of a URL at byte offset {url_begin}")
                url = "".join(pieces)
            if kind == "TextUrl":
                entity = {**base, "url": url} if url else None
            else:
                emoji_id = url.removeprefix("tg://emoji?id=")
                entity = {**base, "custom_emoji_id": emoji_id} if emoji_id != url else None
        if kind == "Pre" and argument and entity is not None:
            entity["language"] = argument
        if entity is not None and offset > start:
            entity["length"] = offset - start
            entities.append(entity)
        i += 1
    if stack:
        kind, _, _, at, _ = stack[-1]
        raise _ParseError(f"Can't find end of {kind} entity at byte offset {at}")
    return "".join(result), entities


def _parse_markdown(text: str) -> tuple[str, list[JSONDict]]:
    """The legacy Markdown: *bold*, _italic_, `code`, ```pre```, [text](url); no nesting."""
    result: list[str] = []
    offset = 0
    entities: list[JSONDict] = []
    n = len(text)

    def char(k: int) -> str:
        return text[k] if k < n else "\0"

    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and char(i + 1) in "_*`[":
            result.append(text[i + 1])
            offset += 1
            i += 2
            continue
        if c not in "_*`[":
            result.append(c)
            offset += _utf16_len(c)
            i += 1
            continue
        at = _byte_offset(text, i)
        end = "]" if c == "[" else c
        is_pre = False
        language = ""
        i += 1
        if c == "`" and char(i) == "`" and char(i + 1) == "`":
            is_pre = True
            i += 2
            language_end = i
            while language_end < n and char(language_end) not in _SPACES + "`":
                language_end += 1
            if i != language_end and language_end < n and char(language_end) != "`":
                language = text[i:language_end]
                i = language_end
            if char(i) in "\r\n":
                i += 1
        start = offset
        while i < n and (
            char(i) != end or (is_pre and not (char(i + 1) == "`" and char(i + 2) == "`"))
        ):
            result.append(text[i])
            offset += _utf16_len(text[i])
            i += 1
        if i >= n:
            raise _ParseError(f"Can't find end of the entity starting at byte offset {at}")
        length = offset - start
        if is_pre:
            i += 2
            if length:
                pre: JSONDict = {"type": "pre", "offset": start, "length": length}
                if language:
                    pre["language"] = language
                entities.append(pre)
        elif c == "[":
            url = ""
            if char(i + 1) == "(":
                i += 2
                url_start = i
                while i < n and char(i) != ")":
                    i += 1
                url = text[url_start:i]
            if length and url:
                entities.append(
                    {"type": "text_link", "offset": start, "length": length, "url": url}
                )
        elif length:
            kind = {"*": "bold", "_": "italic", "`": "code"}[c]
            entities.append({"type": kind, "offset": start, "length": length})
        i += 1
    return "".join(result), entities

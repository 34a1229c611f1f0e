"""A stand-in for Telegram's Bot API: a real aiohttp server on 127.0.0.1 for tests.

    async with BotApiStub() as stub:
        bot = telegram.Bot(stub.token, base_url=stub.base_url)

Requests arrive at ``/bot<token>/<method>`` (method names case-insensitive, as Telegram treats
them), with parameters in the query string, ``application/x-www-form-urlencoded``,
``application/json`` or ``multipart/form-data``. As in Telegram's Bot API server, every parameter
is first a string (form encodings) or any JSON value (JSON body), and then read per field: integer
fields as integers, boolean fields as booleans ("true"/"1"), JSON fields (reply_markup, commands,
allowed_updates, entities, ...) decoded from their JSON text. python-telegram-bot always POSTs a
form (multipart when it uploads a file) in which every non-string value is JSON-encoded.

Answers follow the Bot API: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "..."}`` with Telegram's wording. The text of
sendMessage and the caption of sendPhoto are trimmed of leading and trailing white space and
limited to 4096 (captions 1024) UTF-16 code units, as Telegram does.

Only what the bot uses is implemented: getMe, getUpdates (long polling, offsets, conflicts),
setWebhook/deleteWebhook/getWebhookInfo, setMyCommands, sendMessage, sendPhoto (an uploaded
PNG) and answerCallbackQuery; and the ways Telegram fails that the bot must survive (429 with
retry_after, 5xx from its nginx front, slow answers, a wrong token). A parse_mode, an edit or a
method not listed is refused loudly, so a bot that starts to use one fails a test here first
rather than passing against a stand-in that pretends.

Every call, failed or not, is recorded in ``stub.calls`` as a :class:`Call`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
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
LONG_POLL_MAX_TIMEOUT = 50

_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]*$")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")
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
_CHAT_ID_FIELDS = frozenset({"chat_id"})
_INT_FIELDS = _words("offset limit timeout max_connections user_id cache_time")
_BOOL_FIELDS = _words("drop_pending_updates show_alert disable_notification")
_JSON_FIELDS = {
    "reply_markup": "can't parse reply keyboard markup JSON object",
    "commands": "can't parse commands JSON object",
    "scope": "can't parse BotCommandScope JSON object",
    "allowed_updates": "can't parse allowed updates JSON object",
}
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


_ANSWERED = 0  # the status of a queued "fault" that lets calls through (fail_next's `after`)


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


Handler = Callable[[dict[str, Any], dict[str, bytes]], Awaitable[Any]]


class BotApiStub:
    """Telegram's Bot API on 127.0.0.1, for python-telegram-bot (or anything else) to talk to."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = DEFAULT_BOT_USERNAME,
        first_name: str = DEFAULT_BOT_FIRST_NAME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.clock = clock  # the Unix time a sent message is stamped with
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
        self._polls_waiting = 0
        self._closing = False
        self._webhook: JSONDict = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._chats: dict[int, JSONDict] = {}
        self._last_message_id: dict[int, int] = {}
        self._answered_queries: set[str] = set()
        self._file_counter = itertools.count(1)
        self._undelayed = asyncio.Event()
        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "answerCallbackQuery": self._answer_callback_query,
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
        after: int = 0,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail as Telegram fails (after ``after``
        calls answered as usual).

        429 answers ``Too Many Requests: retry after N`` with ``parameters.retry_after`` (N
        defaults to 1); 502/503/504 without a description answer nginx's HTML page, as Telegram's
        front does; any other status answers the JSON error body with ``description`` (or the
        usual one for that status). Faults queue up behind each other.
        """
        if times < 1 or after < 0:
            raise ValueError("times must be at least 1, after at least 0")
        if status == 429 and retry_after is None:
            retry_after = 1
        queue = self._faults.setdefault(self._known(method), [])
        if after:
            queue.append(_Fault(_ANSWERED, None, None, after))
        queue.append(_Fault(status, retry_after, description, times))

    def clear_faults(self, method: str | None = None) -> None:
        """Drop the faults still queued for ``method`` (for every method when None): Telegram
        is well again."""
        if method is None:
            self._faults.clear()
        else:
            self._faults.pop(self._known(method), None)

    def delay(self, method: str, seconds: float) -> None:
        """Answer every call of ``method`` ``seconds`` late; 0 stops that, and answers the calls
        waiting now at once."""
        name = self._known(method)
        if seconds > 0:
            self._delays[name] = seconds
        else:
            self._delays.pop(name, None)
            self._undelayed.set()
            self._undelayed = asyncio.Event()

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

    async def long_poll_waiting(self, timeout: float = 20) -> None:
        """Return once a getUpdates long poll waits here for updates (`timeout` guards against a
        hang; it measures nothing)."""
        async with asyncio.timeout(timeout):
            while not self._polls_waiting:
                await self._changed.wait()

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

    # ------------------------------------------------------------------ HTTP

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    async def _handle_other(self, request: web.Request) -> web.Response:
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
                # Until the delay is over, or `delay(method, 0)` says Telegram is well again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._undelayed.wait(), self._delays[method])
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
        return None if fault.status == _ANSWERED else fault

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
            "date": int(self.clock()),
        }
        message.update({key: value for key, value in content.items() if value is not None})
        return copy.deepcopy(message)

    def _text(
        self, params: dict[str, Any], key: str, *, limit: int, too_long: str, empty: str | None
    ) -> str:
        """The text (or caption) as Telegram keeps it: trimmed, and within `limit`."""
        if params.get("parse_mode"):
            raise _bad("the stand-in implements no parse_mode: the bot sends plain text")
        text = _as_text(params.get(key) or "").strip(_TRIMMED)
        if not text and empty is not None:
            raise _bad(empty)
        if _utf16_len(text) > limit:
            raise _bad(too_long)
        return text

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

    def _learn(self, update: JSONDict) -> None:
        """Remember the chats a pushed update carries, and its message ids (the stand-in's own
        are never one of those)."""
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

    # ------------------------------------------------------------------ methods

    async def _get_me(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return copy.deepcopy(self.bot_user)

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
        self._polls_waiting += 1
        self._notify()  # an older long poll ends with a conflict
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
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
        finally:
            self._polls_waiting -= 1

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

    async def _send_message(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        text = self._text(
            params,
            "text",
            limit=MAX_TEXT_LENGTH,
            too_long="message is too long",
            empty="message text is empty",
        )
        markup = self._reply_markup(params)
        return self._new_message(chat_id, params, text=text, reply_markup=markup)

    async def _send_photo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        value = params.get("photo")
        part = value.removeprefix("attach://") if isinstance(value, str) else "photo"
        data = files.get(part)
        if data is None:
            raise _bad("there is no photo in the request")
        dimensions = _png_size(data)
        if dimensions is None:
            raise _bad("IMAGE_PROCESS_FAILED")
        caption = self._text(
            params,
            "caption",
            limit=MAX_CAPTION_LENGTH,
            too_long="message caption is too long",
            empty=None,
        )
        markup = self._reply_markup(params)
        number = next(self._file_counter)
        width, height = dimensions
        photo = {
            "file_id": f"AgACAgIAAxkDAAI{number:08d}",
            "file_unique_id": f"AQAD{number:08d}",
            "file_size": len(data),
            "width": width,
            "height": height,
        }
        return self._new_message(
            chat_id, params, photo=[photo], caption=caption or None, reply_markup=markup
        )

    async def _answer_callback_query(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        query_id = params.get("callback_query_id")
        if query_id is None or query_id == "":
            raise _required("callback_query_id")
        query_id = _as_text(query_id)
        if query_id in self._answered_queries:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        self._answered_queries.add(query_id)
        return True


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


# ---------------------------------------------------------------------- text


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_TRIMMED = " \t\r\n\v\f\u00a0\u2028\u2029"


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG (what the bot uploads: QR codes); None for anything else."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width > 0 and height > 0 else None

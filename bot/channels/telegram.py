"""The Telegram channel, on python-telegram-bot: updates in, replies out through the outbox.

Updates reach `TelegramChannel.process` from the durable inbound store (webhook or polling), go
through PTB's `Application.process_update`, and become IncomingMessages for the engine. Replies
are not sent from the handlers: the engine wrote them to the outbox in the message's transaction,
and `TelegramSender` delivers them (split at 4,096 characters, buttons as inline keyboards, the
QR code as a photo). Text is sent without a parse mode, so nothing a user or the knowledge base
writes can be read as markup. Only private chats are served; group messages are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import warnings
from datetime import timedelta
from typing import Any, TypeGuard

from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram import error as tg_error
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackContext,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from bot.channels.outbox import RetryLater, Undeliverable
from bot.channels.telegram_http import AiohttpRequest
from bot.cleantext import clean_text
from bot.engine import Engine
from bot.render import Renderer
from bot.types import IncomingMessage, Language

log = logging.getLogger(__name__)

CHANNEL = "telegram"
MAX_TEXT = 4096
MAX_CALLBACK_BYTES = 64
COMMANDS = ("start", "help", "status", "pay", "reset", "bind", "human", "lang")
ALLOWED_UPDATES = ["message", "callback_query"]
# Telegram's ids (update_id, chat and user ids) fit a signed 64-bit integer, as stored.
MAX_ID = 2**63 - 1
REJECTED_TEMPLATE = "update_rejected"


def valid_id(value: object) -> bool:
    """An id as Telegram sends them: a JSON integer that a BIGINT column holds."""
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_ID <= value <= MAX_ID


def valid_update_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _chat(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The raw chat object of an update's message (or of the message a button was on)."""
    messages = [payload.get(field) for field in ("message", "edited_message", "channel_post")]
    query = payload.get("callback_query")
    if isinstance(query, dict):
        messages.append(query.get("message"))
    for message in messages:
        chat = message.get("chat") if isinstance(message, dict) else None
        if isinstance(chat, dict):
            return chat
    return None


def unusable(payload: dict[str, Any]) -> str | None:
    """Why an update can never be stored or handled, read from the raw JSON (None when it can):
    Telegram's own updates always carry ids that fit a BIGINT."""
    if not valid_update_id(payload.get("update_id")):
        return "bad_update_id"
    chat = _chat(payload)
    if chat is not None and not valid_id(chat.get("id")):
        return "bad_chat_id"
    return None


def chat_key(payload: dict[str, Any]) -> str | None:
    """The chat an update belongs to, read from the raw JSON (before any parsing); None
    when it has none, or none that is a Telegram id."""
    chat = _chat(payload)
    if chat is not None:
        return str(chat["id"]) if valid_id(chat.get("id")) else None
    query = payload.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("from"), dict):
        user_id = query["from"].get("id")
        return str(user_id) if valid_id(user_id) else None
    return None


def private_chat(payload: dict[str, Any]) -> str | None:
    """The private chat an update came from, if any: the only chats the bot answers."""
    chat = _chat(payload)
    if chat is None or chat.get("type") != "private" or not valid_id(chat.get("id")):
        return None
    return str(chat["id"])


def queue_key(payload: dict[str, Any], update_id: int) -> str:
    """What an update queues behind (webhook or polling): its chat's earlier updates, or, for
    an update without a chat, nothing but itself."""
    return chat_key(payload) or f"update:{update_id}"


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Parts of at most `limit` characters, cut at a line break or space where possible."""
    parts = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip("\n ")
    parts.append(text)
    return [p for p in parts if p] or [""]


def keyboard(buttons: list[dict[str, Any]]) -> InlineKeyboardMarkup | None:
    """One button per row; an action over 64 bytes travels as its index ("#3")."""
    if not buttons:
        return None
    return _keyboard(tuple((str(b["label"]), str(b["action"]), b.get("index")) for b in buttons))


@functools.lru_cache(maxsize=1024)
def _keyboard(buttons: tuple[tuple[str, str, Any], ...]) -> InlineKeyboardMarkup:
    # Built once per distinct keyboard: the same few (an answer's feedback and related
    # questions, the greeting's topics) go out again and again, and each PTB object built
    # costs a check on every attribute it sets. PTB's objects are immutable, so shared safely.
    rows = []
    for label, action, index in buttons:
        data = action if len(action.encode("utf-8")) <= MAX_CALLBACK_BYTES else f"#{index}"
        rows.append([InlineKeyboardButton(label[:64], callback_data=data)])
    return InlineKeyboardMarkup(rows)


def _retry_seconds(exc: tg_error.RetryAfter) -> float:
    # PTB 22 warns that the attribute turns into a timedelta; both forms are handled here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramSender:
    """Delivers one outbox payload; raises RetryLater or Undeliverable for the relay."""

    def __init__(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        self._bot = application.bot

    async def send(self, chat_id: str, payload: dict[str, Any]) -> None:
        parts = split_text(str(payload.get("text", "")))
        markup = keyboard(list(payload.get("buttons") or []))
        image = payload.get("image")
        try:
            for number, part in enumerate(parts):
                last = number == len(parts) - 1
                await self._bot.send_message(
                    chat_id=int(chat_id),
                    text=part,
                    reply_markup=markup if last and not image else None,
                )
            if image:
                data = base64.b64decode(str(image).split(",", 1)[1])
                await self._bot.send_photo(chat_id=int(chat_id), photo=data, reply_markup=markup)
        except tg_error.RetryAfter as exc:
            raise RetryLater(_retry_seconds(exc), "telegram flood control") from exc
        except tg_error.Forbidden as exc:
            raise Undeliverable(f"forbidden: {exc.message}") from exc
        except tg_error.BadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise Undeliverable(exc.message) from exc
            raise
        except (tg_error.TimedOut, tg_error.NetworkError) as exc:
            raise RetryLater(None, type(exc).__name__) from exc


class TelegramChannel:
    """PTB's Application at the edge: builds it, feeds it updates, registers commands."""

    def __init__(
        self,
        *,
        token: str,
        api_url: str,
        engine: Engine,
        renderer: Renderer,
        max_rate: float = 30.0,
    ) -> None:
        # PTB's documented opt-in: time periods (retry_after) as timedelta, without warnings.
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        api = api_url.rstrip("/")
        self.application = (
            ApplicationBuilder()
            .token(token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .updater(None)
            .request(AiohttpRequest())
            .get_updates_request(AiohttpRequest(connection_pool_size=1, read_timeout=35.0))
            .rate_limiter(AIORateLimiter(overall_max_rate=max_rate, max_retries=0))
            .build()
        )
        self._engine = engine
        self._renderer = renderer
        self._errors: dict[int, BaseException] = {}
        self._answers: set[asyncio.Task[None]] = set()
        private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        self.application.add_handler(MessageHandler(private, self._on_message))
        self.application.add_handler(CallbackQueryHandler(self._on_callback))
        self.application.add_error_handler(self._on_error)
        self.sender = TelegramSender(self.application)

    async def start(self, *, webhook_url: str | None, secret: str | None) -> None:
        await self.application.initialize()
        await self.register_commands()
        if webhook_url:
            await self.application.bot.set_webhook(
                webhook_url, secret_token=secret, allowed_updates=ALLOWED_UPDATES
            )
            log.info("telegram webhook registered")

    async def stop(self) -> None:
        await asyncio.gather(*self._answers, return_exceptions=True)
        await self.application.shutdown()

    async def register_commands(self) -> None:
        for language, code in ((Language.EN, None), (Language.ZH, "zh")):
            commands = [
                BotCommand(name, self._renderer.ui(language, f"command_{name}"))
                for name in COMMANDS
            ]
            await self.application.bot.set_my_commands(commands, language_code=code)

    async def reject(self, payload: dict[str, Any]) -> None:
        """An update given up for good (see bot/channels/inbound.py): a private chat hears
        that its message was not processed, instead of silence."""
        chat_id = private_chat(payload)
        if chat_id is not None:
            await self._engine.tell(CHANNEL, chat_id, REJECTED_TEMPLATE)

    async def process(self, payload: dict[str, Any]) -> None:
        """Run one stored update through PTB; a handler's failure is raised so it is retried."""
        update = Update.de_json(payload, self.application.bot)
        await self.application.process_update(update)
        error = self._errors.pop(update.update_id, None)
        if error is not None:
            raise error

    async def _on_error(self, update: object, context: CallbackContext[Any, Any, Any, Any]) -> None:
        if isinstance(update, Update) and context.error is not None:
            self._errors[update.update_id] = context.error

    @staticmethod
    async def _answer(query: CallbackQuery) -> None:
        try:
            await query.answer()
        except tg_error.TelegramError as exc:
            log.info("callback answer failed: %s", type(exc).__name__)

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        await self._engine.handle(
            IncomingMessage(
                channel=CHANNEL,
                chat_id=str(message.chat_id),
                user_id=str(user.id),
                message_id=f"u{update.update_id}",
                text=clean_text(message.text or message.caption or ""),
                received_at=message.date,
                client=str(user.id),
            )
        )

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        chat = query.message.chat if query.message is not None else None
        if chat is not None and chat.type == "private":
            await self._engine.handle(
                IncomingMessage(
                    channel=CHANNEL,
                    chat_id=str(chat.id),
                    user_id=str(query.from_user.id),
                    message_id=f"u{update.update_id}",
                    action=clean_text((query.data or "")[:MAX_CALLBACK_BYTES]),
                    client=str(query.from_user.id),
                )
            )
        # The answer only stops the button's spinner. It goes out beside the transaction, not
        # inside it, and once the handling went through: a handling run again (after a platform
        # call, see bot/storage/runner.py) does not answer twice.
        task = asyncio.create_task(self._answer(query))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

"""The bot's HTTP application, built by `create_app(settings)` so tests can run it.

Routes: the Telegram webhook, the web chat page and API, payment notifications from the
platform, and health and metrics. Resources (database, engine, Telegram, the outbox relay, the
inbound dispatcher) are opened and closed in one place, `_resources`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import text

from bot.app import Bot, Prepared, open_bot, prepare, remote_platform
from bot.channels import telegram
from bot.channels.body import MAX_BODY, parse_json_object
from bot.channels.client import TRUSTED_PROXIES, parse_networks
from bot.channels.errors import json_error
from bot.channels.inbound import InboundDispatcher
from bot.channels.outbox import OutboxRelay, Sender
from bot.channels.telegram import TelegramChannel
from bot.channels.webchat import Limits, WebChat, WebChatFanout, WebChatHub
from bot.console.views import AgentConsole
from bot.escalation.assist import Assistant
from bot.incidents.closing import ClosingNotices
from bot.incidents.job import IncidentDetector
from bot.logsafety import install_redaction
from bot.metrics import Metrics
from bot.notifications import EventError, PaymentEvent, PaymentNotifier, SignatureError, verify
from bot.outcomes.checker import keep_checking
from bot.platform.gateway import PlatformUnavailable
from bot.settings import Settings
from bot.storage.events import Event, OutboxFilled
from bot.storage.retention import keep_pruning

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "bot" / "web"
# Replies the engine queues for delivery after its transaction (web chat replies travel in the
# HTTP response instead); and the channels that take pushed messages (notices, agents' answers).
RELAYED = frozenset({telegram.CHANNEL})
PUSHED = frozenset({telegram.CHANNEL, "webchat"})
# How long a Telegram update (a webhook call, or one taken by polling) waits for the replies
# ahead of it to go out (OutboxRelay.room); well inside the time Telegram waits for an answer.
ROOM_WAIT = 5.0
# How long /readyz waits for the remote platform's health check: under a probe's usual timeout.
PLATFORM_PROBE_TIMEOUT = 1.0
# Long polling: the pause before polling again after a failed poll or an update not stored.
POLL_RETRY = 3.0


@dataclass
class Runtime:
    """What the routes need, filled in when the app starts."""

    bot: Bot
    metrics: Metrics
    hub: WebChatHub
    relay: OutboxRelay
    notifier: PaymentNotifier
    telegram: TelegramChannel | None = None
    dispatcher: InboundDispatcher | None = None


RUNTIME = web.AppKey("runtime", Runtime)


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter is not None else None


def render_page(settings: Settings) -> str:
    environment = Environment(
        loader=FileSystemLoader(WEB_DIR), autoescape=select_autoescape(["html"])
    )
    return environment.get_template("chat.html").render(
        default_language=settings.default_language.value
    )


async def healthz(_request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """503 when the database does not answer, so a load balancer stops sending traffic; 200
    otherwise. With a remote platform that does not answer, 200 "degraded": the bot still
    answers questions, hands chats to people and takes notifications, and the platform is the
    same one for every instance, so taking this one out of rotation would help no one."""
    runtime = request.app[RUNTIME]
    try:
        async with runtime.bot.db.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure here means "not ready"
        return web.json_response({"status": "unavailable", "error": type(exc).__name__}, status=503)
    remote = remote_platform(runtime.bot.gateway)
    if remote is None:
        return web.json_response({"status": "ready", "platform": "embedded"})
    if await remote.available(PLATFORM_PROBE_TIMEOUT):
        return web.json_response({"status": "ready", "platform": "ok"})
    runtime.metrics.error("platform_unready")
    return web.json_response({"status": "degraded", "platform": "unavailable"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[RUNTIME].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def telegram_webhook(request: web.Request) -> web.Response:
    """Authenticate, then store and handle the update; 200 once that committed, 503 if the
    update could not be stored (Telegram delivers it again)."""
    runtime = request.app[RUNTIME]
    expected = _secret(runtime.bot.settings.telegram_webhook_secret)
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if (
        runtime.dispatcher is None
        or not expected
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        runtime.metrics.error("telegram_forbidden")
        raise json_error(403, "forbidden", "bad or missing secret token")
    update = parse_json_object(await request.read())
    unusable = telegram.unusable(update)
    if unusable is not None:
        # JSON, from the holder of the secret, but no update this bot can store or handle (an
        # id no BIGINT holds). Any answer but 2xx would only make Telegram deliver it again,
        # for a day: acknowledged, nothing stored, counted and logged.
        runtime.metrics.error("telegram_rejected")
        log.warning("telegram update rejected: %s", unusable)
        return web.json_response({"ok": True, "rejected": unusable})
    update_id: int = update["update_id"]
    try:
        await _take_update(runtime.relay, runtime.dispatcher, update_id, update)
    except Exception as exc:
        runtime.metrics.error("telegram_store")
        log.warning("could not store update %s: %s", update_id, type(exc).__name__)
        raise json_error(503, "unavailable", "try again later") from exc
    return web.json_response({"ok": True})


async def platform_notify(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    secret = _secret(runtime.bot.settings.platform_webhook_secret)
    body = await request.read()
    if not secret:
        raise json_error(403, "forbidden", "notifications are not configured")
    try:
        verify(secret, request.headers.get("X-BTP-Signature", ""), body)
    except SignatureError as exc:
        runtime.metrics.notifications.labels("bad_signature").inc()
        raise json_error(401, "bad_signature", str(exc)) from exc
    try:
        event = PaymentEvent.parse(parse_json_object(body, parse_float=Decimal))
    except EventError as exc:
        raise json_error(exc.status, exc.code, str(exc)) from exc
    try:
        outcome, told = await runtime.notifier.apply(event)
    except EventError as exc:
        runtime.metrics.notifications.labels(exc.code).inc()
        raise json_error(exc.status, exc.code, str(exc)) from exc
    except PlatformUnavailable as exc:
        # Nothing was claimed: the platform delivers the event again and it is applied then.
        runtime.metrics.notifications.labels("unavailable").inc()
        raise json_error(503, "unavailable", "the platform cannot confirm the event now") from exc
    runtime.metrics.notifications.labels(outcome.value).inc()
    if told:
        runtime.relay.kick()
    return web.json_response({"result": outcome.value, "notified": told})


async def _take_update(
    relay: OutboxRelay, dispatcher: InboundDispatcher, update_id: int, payload: dict[str, Any]
) -> bool:
    """Store and handle one Telegram update, from the webhook or from polling alike: paced by
    the replies waiting to go out (`OutboxRelay.room`), and queued behind its chat's earlier
    updates. True when it was new; raises if it could not be stored."""
    await relay.room(ROOM_WAIT)
    return await dispatcher.receive(update_id, telegram.queue_key(payload, update_id), payload)


async def _poll_telegram(
    channel: TelegramChannel, dispatcher: InboundDispatcher, relay: OutboxRelay
) -> None:
    """Long polling, for a bot without a public URL: updates go through the same durable store,
    paced like the webhook (`OutboxRelay.room`). An update is confirmed to Telegram (the next
    poll's offset passes it) only once stored; one that could not be stored (the database
    locked or down) is polled again, with everything after it."""
    bot = channel.application.bot
    offset, webhook_deleted = 0, False
    while True:
        try:
            if not webhook_deleted:
                await bot.delete_webhook()
                webhook_deleted = True
            updates = await bot.get_updates(
                offset=offset, timeout=25, allowed_updates=telegram.ALLOWED_UPDATES
            )
        except Exception as exc:
            log.warning("telegram polling failed: %s", type(exc).__name__)
            await asyncio.sleep(POLL_RETRY)
            continue
        for update in updates:
            try:
                await _take_update(relay, dispatcher, update.update_id, update.to_dict())
            except Exception as exc:
                log.warning(
                    "could not store update %s, polling it again: %s",
                    update.update_id,
                    type(exc).__name__,
                )
                await asyncio.sleep(POLL_RETRY)
                break
            offset = update.update_id + 1


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 413 (body over the limit) in the same JSON shape as every other error; and
    an exception no handler expected as a 500 that says nothing of it (the log has the
    traceback). No input is meant to get that far: a 500 here is a bug to fix."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        body = json.dumps(
            {"error": {"code": "too_large", "message": f"the body is over {MAX_BODY} bytes"}}
        )
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY,
            actual_size=exc.actual_size if hasattr(exc, "actual_size") else 0,
            text=body,
            content_type="application/json",
        ) from exc
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = json.dumps({"error": {"code": "internal", "message": "internal error"}})
        return web.Response(status=500, text=body, content_type="application/json")


async def _close_sockets(app: web.Application) -> None:
    """Open web chat sockets would hold a graceful shutdown for its whole timeout."""
    if RUNTIME in app:
        await app[RUNTIME].hub.close()


def create_app(
    settings: Settings, *, telegram_polling: bool = False, prepared: Prepared | None = None
) -> web.Application:
    """The whole bot as an aiohttp app. The knowledge and templates are read here, once for
    the bot and its console, unless `prepared` (`bot.app.prepare`) brings them: a process that
    builds many apps (the tests) reads them once."""
    prepared = prepared or prepare(settings)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
    app[TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    app.on_shutdown.append(_close_sockets)

    async def _resources(app: web.Application) -> AsyncIterator[None]:
        token = _secret(settings.telegram_bot_token)
        install_redaction(
            [
                s
                for s in (
                    token,
                    _secret(settings.telegram_webhook_secret),
                    _secret(settings.platform_webhook_secret),
                )
                if s
            ]
        )
        meter = Metrics()
        async with open_bot(
            settings,
            relay_channels=RELAYED,
            pushed_channels=PUSHED,
            metrics=meter,
            prepared=prepared,
        ) as bot:
            hub = WebChatHub()
            senders: dict[str, Sender] = {"webchat": WebChatFanout(hub, bot.bus, bot.sessions)}
            channel = dispatcher = None
            if token:
                channel = TelegramChannel(
                    token=token,
                    api_url=settings.telegram_api_url,
                    engine=bot.engine,
                    renderer=bot.renderer,
                    max_rate=settings.telegram_max_rate,
                )
                await channel.start(
                    webhook_url=None if telegram_polling else settings.telegram_webhook_url,
                    secret=_secret(settings.telegram_webhook_secret),
                )
                senders[telegram.CHANNEL] = channel.sender
                dispatcher = InboundDispatcher(
                    bot.sessions, telegram.CHANNEL, channel.process, on_rejected=channel.reject
                )
            else:
                log.warning("TELEGRAM_BOT_TOKEN is not set: serving web chat and the console only")
            relay = OutboxRelay(bot.sessions, senders)
            bot.engine.on_queued = relay.kick
            bot.engine.deliver = relay.deliver

            async def on_event(event: Event) -> None:
                if isinstance(event, OutboxFilled):
                    relay.kick()

            bot.bus.subscribe(on_event)
            notifier = PaymentNotifier(bot.sessions, bot.gateway, bot.renderer, PUSHED)
            closing = ClosingNotices(bot.sessions, bot.renderer, PUSHED, on_queued=relay.kick)
            app[RUNTIME] = Runtime(bot, meter, hub, relay, notifier, channel, dispatcher)
            console.attach(
                handoffs=bot.handoffs,
                sessions=bot.sessions,
                knowledge=bot.knowledge,
                bus=bot.bus,
                on_incident_closed=closing.tell,
                assistant=Assistant(
                    lambda: (bot.engine.matcher, bot.engine.knowledge), bot.renderer
                ),
            )
            webchat.attach(bot.engine, bot.sessions, hub)
            tasks = [
                asyncio.create_task(relay.run(), name="outbox-relay"),
                asyncio.create_task(
                    keep_pruning(bot.db, timedelta(days=settings.retention_days)), name="pruning"
                ),
                asyncio.create_task(
                    keep_checking(
                        bot.db, bot.gateway, timedelta(seconds=settings.outcome_check_seconds)
                    ),
                    name="outcome-checks",
                ),
                asyncio.create_task(bot.knowledge.keep_fresh(), name="knowledge"),
                asyncio.create_task(
                    IncidentDetector(
                        bot.sessions, bot.gateway, settings, on_closed=closing.tell
                    ).keep_running(),
                    name="incidents",
                ),
            ]
            if dispatcher is not None:
                await dispatcher.resume_pending()
                if telegram_polling and channel is not None:
                    tasks.append(
                        asyncio.create_task(
                            _poll_telegram(channel, dispatcher, relay), name="polling"
                        )
                    )
            try:
                yield
            finally:
                if dispatcher is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(dispatcher.idle(), timeout=10)
                    await dispatcher.close()
                # Let the relay finish the send it is in (a cancelled send would sit leased for
                # its lease, then go out twice), then take one last pass.
                relay.stop()
                done, _ = await asyncio.wait(tasks[:1], timeout=15)
                if done:
                    await relay.flush()
                await relay.close()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await hub.close()
                await console.close()
                if channel is not None:
                    await channel.stop()

    webchat = WebChat(render_page(settings), Limits.of(settings))
    webchat.add_routes(app)
    console = AgentConsole(settings, renderer=prepared.renderer)
    console.add_routes(app)
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/telegram/webhook", telegram_webhook)
    app.router.add_post("/platform/notify", platform_notify)
    app.router.add_static("/static", WEB_DIR / "static", show_index=False)
    return app

"""The bot's HTTP application, built by `create_app(settings)` so tests can run it.

Today it serves the health endpoints on top of the real engine; the channel routes (Telegram
webhook, web chat, platform notifications, agent console) join it here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy import text

from bot.app import Bot, open_bot
from bot.settings import Settings

BOT = web.AppKey("bot", Bot)


async def healthz(_request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers; 503 otherwise, so a load balancer stops sending traffic."""
    try:
        async with request.app[BOT].db.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        return web.json_response({"status": "unavailable", "error": type(exc).__name__}, status=503)
    return web.json_response({"status": "ready"})


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)

    async def bot_context(app: web.Application) -> AsyncIterator[None]:
        async with open_bot(settings) as bot:
            app[BOT] = bot
            yield

    app.cleanup_ctx.append(bot_context)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app

"""Handlers for the labels that are not multi-turn flows, one module per family."""

from bot.handlers import chitchat, commands, fallback, faq, holding
from bot.routing import Router


def build_router() -> Router:
    """Every handler module's routes in one table; a duplicate registration fails at start."""
    router = Router("bot")
    for module in (faq, chitchat, commands, fallback, holding):
        router.include(module.router)
    return router

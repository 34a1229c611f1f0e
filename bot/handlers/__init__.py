"""Handlers for the labels that are not multi-turn flows, one module per family."""

from bot.diagnostics import registry
from bot.handlers import binding, chitchat, commands, fallback, faq, holding, orders
from bot.routing import Router


def build_router() -> Router:
    """Every handler module's routes in one table; a duplicate registration fails at start."""
    router = Router("bot")
    for module in (faq, chitchat, commands, fallback, holding, binding, orders, registry):
        router.include(module.router)
    return router

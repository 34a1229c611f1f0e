"""`action.password_reset`: send a reset link to the account's registered email or phone.

The chat never asks for or shows a password, link or token. The reply is the same whether the
account exists or not, and whether the platform throttled it (3 per account per hour); a chat
may ask 10 times an hour.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bot.context import Context, FlowState, Outcome
from bot.diagnostics.flow import Flow
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

CHAT_LIMIT = 10
WINDOW = timedelta(hours=1)
_LOGIN = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")


class PasswordResetFlow(Flow):
    name = "password_reset"
    label = Label.ACTION_PASSWORD_RESET

    def _key(self, ctx: Context) -> str:
        return f"reset:{ctx.conversation.id}"

    async def start(self, ctx: Context) -> Outcome:
        if await ctx.recent(self._key(ctx), WINDOW) >= CHAT_LIMIT:
            return self.finish(
                ctx, [ctx.say("flows/password_reset/too_many", ctx.human_button())], solved=False
            )
        if ctx.identity.is_merchant and ctx.identity.merchant_id:
            accounts = await ctx.gateway.list_accounts(ctx.identity.merchant_id)
            if len(accounts) == 1:
                return await self.send(ctx, accounts[0].login)
            if accounts:
                buttons = [Button(a.login, f"flow:login:{a.login}") for a in accounts[:5]]
                return self.wait(ctx, "login", "flows/password_reset/ask_login", *buttons)
        return self.wait(ctx, "login", "flows/password_reset/ask_login")

    async def step_login(self, ctx: Context, state: FlowState) -> Result:
        login = ctx.argument.removeprefix("login:") if ctx.argument.startswith("login:") else None
        text = ctx.message.text.strip()
        login = login or (text if _LOGIN.match(text) else None)
        if not login:
            return UNHANDLED
        return await self.send(ctx, login)

    async def send(self, ctx: Context, login: str) -> Outcome:
        if await ctx.recent(self._key(ctx), WINDOW) >= CHAT_LIMIT:
            return self.finish(
                ctx, [ctx.say("flows/password_reset/too_many", ctx.human_button())], solved=False
            )
        await ctx.gateway.start_password_reset(login)
        return self.finish(
            ctx,
            [ctx.say("flows/password_reset/sent", login=login)],
            rate_events=[self._key(ctx)],
            findings={"password_reset_for": login},
        )

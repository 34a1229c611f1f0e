"""`action.password_reset`: send a reset link to the account's registered email or phone.

The chat never asks for or shows a password, link or token. The reply is the same whether the
account exists or not, and whether the platform throttled it (3 per account per hour); a chat
may ask 10 times an hour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar

from bot.context import Context, FlowState, Outcome
from bot.diagnostics.flow import PROMPT, Flow, Slot, Step
from bot.diagnostics.login import role_names
from bot.nlu.values import Option, read_choice, read_yes_no
from bot.platform.models import AccountStatus
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

CHAT_LIMIT = 10
WINDOW = timedelta(hours=1)
_LOGIN = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
# A login named in a request, where no list of the merchant's logins says which names exist:
# "wang_cashier的密码忘了", "账号 li_risk", "reset the password for wang", "my login is li".
_NAME = r"([A-Za-z][A-Za-z0-9_.@-]{1,63})"
_NAMED_LOGIN = (
    re.compile(_NAME + r"\s*(?:这个)?\s*(?:的)?\s*(?:账号|帐号|登录名|用户名)?\s*(?:的)?\s*密码"),
    re.compile(r"(?:账号|帐号|登录名|用户名)\s*[:：是]?\s*" + _NAME),
    re.compile(
        r"(?i)\b(?:password|login|account|username)\s+(?:for|of)\s+(?:the\s+|my\s+)?"
        r"(?:login\s+|account\s+|user\s+)?" + _NAME
    ),
    re.compile(r"(?i)\b(?:login|username|user name|account)\s*(?:name\s*)?(?:is|:)\s*" + _NAME),
)
# Words that follow "password for" without being a name.
_NOT_NAMES = frozenset(
    {"my", "the", "a", "an", "this", "that", "it", "me", "our", "her", "his", "account", "login"}
    | {"user", "username", "shop", "store", "password", "staff", "cashier", "boss", "one"}
)


def named_login(text: str) -> str | None:
    """The login a request names in so many words, or None."""
    for pattern in _NAMED_LOGIN:
        match = pattern.search(text)
        if match and match.group(1).lower() not in _NOT_NAMES:
            return match.group(1)
    return None


class PasswordResetFlow(Flow):
    name = "password_reset"
    label = Label.ACTION_PASSWORD_RESET
    steps: ClassVar[Mapping[str, Step]] = {
        "login": Step(Slot.LOGIN, "flows/password_reset/ask_login", ("confirm",)),
        # "好，重置吧", "ok reset it": a yes that says the flow's own request presses it.
        "confirm": Step(
            Slot.YES_NO,
            "flows/password_reset/confirm",
            accepts=((Label.ACTION_PASSWORD_RESET, "confirm:yes"),),
        ),
    }

    def _key(self, ctx: Context) -> str:
        return f"reset:{ctx.conversation.id}"

    async def start(self, ctx: Context) -> Outcome:
        if await ctx.recent(self._key(ctx), WINDOW) >= CHAT_LIMIT:
            return self.finish(ctx, [ctx.say("flows/password_reset/too_many", ctx.human_button())])
        if ctx.identity.is_merchant and ctx.identity.merchant_id:
            accounts = await ctx.gateway.list_accounts(ctx.identity.merchant_id)
            named = _chosen(ctx, [a.login for a in accounts])
            if named is not None:
                return await self.checked(ctx, named)
            if len(accounts) == 1:
                return await self.checked(ctx, accounts[0].login)
            if accounts:
                # One button per login, with the action the login check offers too.
                buttons = [Button(a.login, f"flow:account:{a.login}") for a in accounts[:5]]
                return self.wait(ctx, "login", "flows/password_reset/ask_login", *buttons)
            return self.wait(ctx, "login", "flows/password_reset/ask_login")
        # Unbound: a reset by login name works (the reply reads the same for any login), and a
        # binding would let the bot offer the merchant's own logins; it is kept for after one.
        offer = self.bind_first(ctx, optional=True)
        named = named_login(ctx.message.text)
        if named is not None:
            asked = self.confirm(ctx, named)
        else:
            asked = self.wait(ctx, "login", "flows/password_reset/ask_login")
        asked.replies[:0] = offer.replies
        asked.pending = offer.pending
        return asked

    def confirm(self, ctx: Context, login: str) -> Outcome:
        """Nothing is sent before the merchant says yes to the login it goes to."""
        buttons = (
            Button(ctx.ui("confirm_reset"), "flow:confirm:yes"),
            Button(ctx.ui("cancel"), "flow:confirm:no"),
        )
        return self.wait(
            ctx,
            "confirm",
            "flows/password_reset/confirm",
            *buttons,
            slots={"login": login},
            login=login,
        )

    async def step_login(self, ctx: Context, state: FlowState) -> Result:
        # "login:" is what buttons offered before this release carry.
        prefix = next((p for p in ("account:", "login:") if ctx.argument.startswith(p)), None)
        login = ctx.argument.removeprefix(prefix) if prefix else None
        if login is None and ctx.message.text:
            offered = [label for label, _ in state.slots.get(PROMPT, {}).get("buttons", [])]
            login = _chosen(ctx, offered) if offered else None
            text = ctx.message.text.strip()
            # A yes or a no is an answer to a question, never a login name.
            typed = not offered and _LOGIN.match(text) is not None
            if login is None and typed and read_yes_no(text, ctx.knowledge.words) is None:
                login = text
        if not login:
            return UNHANDLED
        return await self.checked(ctx, login)

    async def step_confirm(self, ctx: Context, state: FlowState) -> Result:
        if ctx.argument == "confirm:no":
            return self.cancel(ctx, state)
        if ctx.argument != "confirm:yes":
            return UNHANDLED
        return await self.send(ctx, str(state.slots["login"]))

    async def correct(self, ctx: Context, state: FlowState) -> Result:
        # "不对，是 wang_cashier" at the confirmation: that login instead.
        if state.step != "confirm" or not ctx.identity.merchant_id:
            return UNHANDLED
        accounts = await ctx.gateway.list_accounts(ctx.identity.merchant_id)
        login = _chosen(ctx, [a.login for a in accounts])
        if login is None or login == state.slots.get("login"):
            return UNHANDLED
        return await self.checked(ctx, login)

    async def checked(self, ctx: Context, login: str) -> Outcome:
        """The confirmation, unless the merchant's own login is disabled by risk control: a
        new password does not lift that, a person does (said to the bound merchant only; an
        unbound chat hears the same for every login)."""
        if ctx.identity.is_merchant and ctx.identity.merchant_id:
            account = await ctx.gateway.get_account(login)
            if (
                account is not None
                and account.merchant_id == ctx.identity.merchant_id
                and account.status == AccountStatus.DISABLED
            ):
                reply = ctx.say("flows/login/disabled", ctx.human_button(), login=login)
                return self.finish(ctx, [reply])
        return self.confirm(ctx, login)

    async def send(self, ctx: Context, login: str) -> Outcome:
        if await ctx.recent(self._key(ctx), WINDOW) >= CHAT_LIMIT:
            return self.finish(ctx, [ctx.say("flows/password_reset/too_many", ctx.human_button())])
        await ctx.gateway.start_password_reset(login)
        return self.finish(
            ctx,
            [ctx.say("flows/password_reset/sent", login=login)],
            rate_events=[self._key(ctx)],
            findings={"password_reset_for": login},
        )


def _chosen(ctx: Context, logins: list[str]) -> str | None:
    """The login the message names (or picks by number) among `logins`."""
    if not ctx.message.text or not logins:
        return None
    index = read_choice(
        ctx.message.text, [Option(login, login, role_names(login)) for login in logins]
    )
    return logins[index] if index is not None else None

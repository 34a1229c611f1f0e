"""`diagnose.login`: why can't this merchant log in?

For a bound merchant: the account's lock (until when, in the user's time zone), its failed
attempts, whether risk control disabled it (only a person can lift that), or nothing wrong (then
the guide's login advice). A password reset is offered where it helps. An unbound chat gets the
general advice only: account states are not told to strangers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bot.context import Context, Findings, FlowState, Outcome
from bot.diagnostics.flow import Flow, Slot, Step
from bot.nlu.values import Option, read_choice
from bot.platform.models import Account, AccountStatus, MerchantStatus
from bot.routing import UNHANDLED, Result
from bot.types import Button, Label

WARN_AFTER = 3


# What a login is for, in the other language than its name ("收银那个账号" for wang_cashier).
_ROLES = {
    "cashier": ("收银", "收银员", "收银台"),
    "manager": ("店长", "经理"),
    "boss": ("老板",),
    "owner": ("老板", "店主"),
    "admin": ("管理员",),
    "staff": ("员工", "店员"),
}


def role_names(login: str) -> tuple[str, ...]:
    """The words that name a login by its role: "收银" for wang_cashier."""
    parts = login.lower().replace("-", "_").split("_")
    return tuple(word for part in parts for word in _ROLES.get(part, ()))


def _option(ctx: Context, account: Account) -> Option:
    """A login as an answer can name it: by its name, its role, or what is wrong with it."""
    names: tuple[str, ...] = role_names(account.login)
    if account.status == AccountStatus.DISABLED:
        names += ("disabled", "risk", "禁用", "停用", "风控")
    elif account.locked_until is not None and account.locked_at(ctx.now):
        names += ("locked", "锁", "冻结")
    return Option(account.login, f"flow:account:{account.login}", names)


class LoginFlow(Flow):
    name = "login"
    label = Label.DIAGNOSE_LOGIN
    steps: ClassVar[Mapping[str, Step]] = {"account": Step(Slot.CHOICE, "flows/login/pick_account")}

    async def start(self, ctx: Context) -> Outcome:
        if not ctx.identity.is_merchant or ctx.identity.merchant_id is None:
            # General advice, then the binding that lets the bot see the account itself.
            reply = ctx.say("flows/login/general", self._reset_button(ctx), bound=False)
            return self.bind_first(ctx, reply)
        accounts = await ctx.gateway.list_accounts(ctx.identity.merchant_id)
        named = self._named(ctx, accounts)
        if named is not None:
            return await self.diagnose(ctx, named)
        if len(accounts) == 1:
            return await self.diagnose(ctx, accounts[0])
        if not accounts:
            return self.finish(
                ctx, [ctx.say("flows/login/general", ctx.human_button(), bound=True)]
            )
        buttons = [Button(a.login, f"flow:account:{a.login}") for a in accounts[:5]]
        return self.wait(ctx, "account", "flows/login/pick_account", *buttons)

    @staticmethod
    def _named(ctx: Context, accounts: list[Account]) -> Account | None:
        words = set(ctx.message.text.replace("，", " ").replace(",", " ").split())
        return next((a for a in accounts if a.login in words), None)

    @staticmethod
    def _reset_button(ctx: Context, login: str | None = None) -> Button:
        """A reset for `login` goes straight to its confirmation: the login is not asked twice."""
        action = f"reset:{login}" if login else "intent:action.password_reset"
        return Button(ctx.ui("action_password_reset"), action)

    async def step_account(self, ctx: Context, state: FlowState) -> Result:
        assert ctx.identity.merchant_id is not None
        accounts = await ctx.gateway.list_accounts(ctx.identity.merchant_id)
        login = (
            ctx.argument.removeprefix("account:") if ctx.argument.startswith("account:") else None
        )
        chosen = next((a for a in accounts if a.login == login), None) or self._named(ctx, accounts)
        if chosen is None and ctx.message.text:
            index = read_choice(ctx.message.text, [_option(ctx, a) for a in accounts[:5]])
            chosen = accounts[index] if index is not None else None
        if chosen is None:
            return UNHANDLED
        return await self.diagnose(ctx, chosen)

    async def diagnose(self, ctx: Context, account: Account) -> Outcome:
        assert ctx.identity.merchant_id is not None
        merchant = await ctx.gateway.get_merchant(ctx.identity.merchant_id)
        findings: Findings = {
            "login": account.login,
            "account_status": account.status.value,
            "failed_attempts": account.failed_attempts,
            "locked_until": account.locked_until.isoformat() if account.locked_until else None,
        }
        merchant_status = merchant.status.value if merchant else None
        values: dict[str, Any] = {
            "login": account.login,
            "attempts": account.failed_attempts,
            "merchant_status": merchant_status or "",
        }
        if account.status == AccountStatus.DISABLED:
            reply = ctx.say("flows/login/disabled", ctx.human_button(), **values)
            return self.finish(ctx, [reply], findings=findings)
        if merchant is not None and merchant.status != MerchantStatus.ACTIVE:
            reply = ctx.say("flows/login/merchant_not_active", ctx.human_button(), **values)
            return self.finish(ctx, [reply], findings=findings)
        if account.locked_until is not None and account.locked_at(ctx.now):
            reply = ctx.say(
                "flows/login/locked",
                self._reset_button(ctx, account.login),
                ctx.human_button(),
                until=ctx.local(account.locked_until),
                **values,
            )
            return self.finish(ctx, [reply], findings=findings)
        if account.failed_attempts >= WARN_AFTER:
            reply = ctx.say(
                "flows/login/many_failures", self._reset_button(ctx, account.login), **values
            )
            return self.finish(ctx, [reply], findings=findings)
        reply = ctx.say(
            "flows/login/nothing_wrong",
            self._reset_button(ctx, account.login),
            ctx.human_button(),
            **values,
        )
        return self.finish(ctx, [reply], findings=findings)

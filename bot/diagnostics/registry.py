"""Every flow by name (as stored in the conversation) and the label that starts it."""

from __future__ import annotations

from bot.context import Context
from bot.diagnostics.data_sync import DataSyncFlow
from bot.diagnostics.flow import Flow
from bot.diagnostics.login import LoginFlow
from bot.diagnostics.password_reset import PasswordResetFlow
from bot.diagnostics.payment_failure import PaymentFailureFlow
from bot.diagnostics.payment_link import PaymentLinkFlow
from bot.diagnostics.payment_status import PaymentStatusFlow
from bot.diagnostics.ticket import TicketFlow
from bot.diagnostics.withdrawal_status import WithdrawalStatusFlow
from bot.routing import Handler, Result, Router
from bot.types import Label

FLOWS: dict[str, Flow] = {
    flow.name: flow
    for flow in (
        PaymentFailureFlow(),
        LoginFlow(),
        DataSyncFlow(),
        PaymentStatusFlow(),
        WithdrawalStatusFlow(),
        PaymentLinkFlow(),
        PasswordResetFlow(),
        TicketFlow(),
    )
}

router = Router("flows")


def _starter(flow: Flow) -> Handler:
    async def start(ctx: Context) -> Result:
        return await flow.start(ctx)

    return start


for _flow in FLOWS.values():
    if _flow.name != TicketFlow.name:
        router.label(_flow.label)(_starter(_flow))


def _command(flow: Flow) -> Handler:
    async def start(ctx: Context) -> Result:
        return await flow.start(ctx)

    return start


@router.action("reset")
async def reset_for(ctx: Context) -> Result:
    """The login flow's "reset the password" button: that login's confirmation at once."""
    flow = FLOWS["password_reset"]
    assert isinstance(flow, PasswordResetFlow)
    if not ctx.identity.is_merchant or not ctx.argument:
        return await flow.start(ctx)
    return flow.confirm(ctx, ctx.argument)


@router.action("login")
async def check_login(ctx: Context) -> Result:
    """One login's check by its name: a follow-up about the login just shown ("why is it
    disabled?"). Only the merchant's own logins are found."""
    flow = FLOWS["login"]
    assert isinstance(flow, LoginFlow)
    if not ctx.identity.is_merchant or ctx.identity.merchant_id is None or not ctx.argument:
        return await flow.start(ctx)
    accounts = await ctx.gateway.list_accounts(ctx.identity.merchant_id)
    account = next((a for a in accounts if a.login == ctx.argument), None)
    return await flow.diagnose(ctx, account) if account is not None else await flow.start(ctx)


router.command("status")(_command(FLOWS["payment_status"]))
router.command("pay")(_command(FLOWS["payment_link"]))
# `pay:<amount>`: a button that offers a link for an amount (a lone number, an order summary).
router.action("pay")(_command(FLOWS["payment_link"]))
router.command("reset")(_command(FLOWS["password_reset"]))


async def start_by_label(ctx: Context, label: Label) -> Result | None:
    flow = next((f for f in FLOWS.values() if f.label == label and f.name != TicketFlow.name), None)
    return await flow.start(ctx) if flow else None

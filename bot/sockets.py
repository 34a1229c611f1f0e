"""What every WebSocket the server keeps open (web chat, agent console) does with its frames."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web


async def answer_pings(
    socket: web.WebSocketResponse, still_allowed: Callable[[], Awaitable[bool]] | None = None
) -> None:
    """Until the socket closes: answer the page's "ping" with a pong, ignore anything else.
    With `still_allowed`, each ping first asks it; False closes the socket as a policy
    violation (the credential it was opened with is no longer valid)."""
    async for frame in socket:
        if frame.type == WSMsgType.TEXT and frame.data == "ping":
            if still_allowed is not None and not await still_allowed():
                await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unauthorized")
                break
            await socket.send_str(json.dumps({"type": "pong"}))
        elif frame.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            break

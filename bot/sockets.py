"""What every WebSocket the server keeps open (web chat, agent console) does with its frames."""

from __future__ import annotations

import json

from aiohttp import WSMsgType, web


async def answer_pings(socket: web.WebSocketResponse) -> None:
    """Until the socket closes: answer the page's "ping" with a pong, ignore anything else."""
    async for frame in socket:
        if frame.type == WSMsgType.TEXT and frame.data == "ping":
            await socket.send_str(json.dumps({"type": "pong"}))
        elif frame.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            break

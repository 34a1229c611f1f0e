"""Live updates: every open console holds a WebSocket that hears "the queue changed" and "this
chat changed" from the event bus, whichever process the change happened in; while it is open,
its agent counts as present, and a session that ended closes it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot.channels.errors import json_error
from bot.escalation.agent_sessions import AgentSessions, Viewer
from bot.escalation.service import HandoffService
from bot.sockets import answer_pings
from bot.storage.events import ChatChanged, Event, QueueChanged

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 30.0
SESSION_ENDED = 4401


class LiveUpdates:
    def __init__(self, *, heartbeat_every: float = HEARTBEAT_EVERY) -> None:
        self._heartbeat_every = heartbeat_every
        self._sockets: dict[web.WebSocketResponse, Viewer] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(
        self,
        request: web.Request,
        viewer: Viewer | None,
        agents: AgentSessions,
        handoffs: HandoffService,
    ) -> web.StreamResponse:
        if viewer is None:
            raise json_error(401, "unauthorized", "log in to the console first")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise json_error(403, "forbidden", "cross-origin console sockets are refused")
        socket = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
        await socket.prepare(request)
        self._sockets[socket] = viewer
        beat = asyncio.create_task(
            self._beat(socket, viewer, agents, handoffs), name="console-heartbeat"
        )
        self._tasks.add(beat)
        beat.add_done_callback(self._tasks.discard)
        try:
            await answer_pings(socket)
        finally:
            beat.cancel()
            self._sockets.pop(socket, None)
        return socket

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for socket in list(self._sockets):
            await socket.close()
        self._sockets.clear()

    async def on_event(self, event: Event) -> None:
        message: dict[str, Any]
        if isinstance(event, QueueChanged):
            message = {"type": event.kind}
        elif isinstance(event, ChatChanged):
            message = {"type": event.kind, "conversation_id": event.conversation_id}
        else:
            return
        text = json.dumps(message)
        for socket in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_str(text)

    async def _beat(
        self,
        socket: web.WebSocketResponse,
        viewer: Viewer,
        agents: AgentSessions,
        handoffs: HandoffService,
    ) -> None:
        """While a console is open its agent counts as present; a dead session ends the socket."""
        while not socket.closed:
            try:
                if not await agents.alive(viewer.session_id):
                    await socket.close(code=SESSION_ENDED, message=b"session ended")
                    return
                await handoffs.heartbeat(viewer.agent_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("console heartbeat failed for agent %s", viewer.agent_id)
            await asyncio.sleep(self._heartbeat_every)

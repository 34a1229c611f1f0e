"""python-telegram-bot's HTTP transport on aiohttp instead of httpx.

PTB builds every Bot API request and reads every answer itself; `BaseRequest` is its documented
hook for the part that moves bytes. httpx (with httpcore and anyio under it) cost 3.3 ms of CPU
per `sendMessage` in `benchmarks/`, against 0.5 ms for aiohttp posting the same call; every
reply goes through here, so it is aiohttp, which the server runs on anyway.

Requests without files go as a JSON body; uploads (the QR code photo) as multipart, every other
parameter JSON-encoded, as the Bot API takes them. Timeouts and network failures become PTB's
`TimedOut` and `NetworkError`, so callers see what they would see with PTB's own transport.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    def __init__(
        self,
        *,
        connection_pool_size: int = 64,
        read_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        media_write_timeout: float = 20.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._media_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data and request_data.contains_files else {}
        read = _given(read_timeout, self._read_timeout)
        if files and read is not None:
            read = max(read, self._media_timeout)
        timeout = aiohttp.ClientTimeout(
            sock_read=read, sock_connect=_given(connect_timeout, self._connect_timeout)
        )
        body: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] = {}
        if files and request_data is not None:
            body = _multipart(request_data.json_parameters, files)
        elif request_data is not None:
            body, headers = request_data.json_payload, {"Content-Type": "application/json"}
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


def _given(value: ODVInput[float], default: float) -> float | None:
    """A timeout PTB passed for this call, or ours when it passed none."""
    return default if isinstance(value, DefaultValue) else value


def _multipart(parameters: dict[str, str], files: dict[str, Any]) -> aiohttp.FormData:
    """PTB's parts: each file is (filename, content, mimetype)."""
    form = aiohttp.FormData()
    for name, value in parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in files.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form

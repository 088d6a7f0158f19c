"""The HTTP server's limits on slow and idle clients (uvicorn, with one addition).

uvicorn bounds idle keep-alive time (``timeout_keep_alive``) and open connections
(``limit_concurrency``, answered 503 beyond it), but it has no bound on the time a client may
take to send one request: a timeout per read never drops a client that sends one byte a second.
:func:`protocol_with_read_deadline` adds one: from a request's first byte (or the connection's
opening) to the end of its body, at most ``read_timeout_s``; past it the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from syncd.config import Settings


def protocol_with_read_deadline(base: type[asyncio.Protocol], read_timeout_s: float) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's httptools or h11 protocol) that closes a connection whose request
    (headers and body) is not read whole within ``read_timeout_s``."""

    class ReadDeadline(base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None
        #: The request cycle that was current when the deadline was armed: the one being read
        #: is the next one (a new cycle starts when its headers are complete).
        _before: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None:
                self._arm()  # the first byte of the next request on a kept-alive connection
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and cycle is not self._before and not cycle.more_body:
                self._disarm()  # read whole: the time the app takes is not the client's

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._before = self.cycle
            self._deadline = self.loop.call_later(read_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    ReadDeadline.__name__ = f"ReadDeadline{base.__name__}"
    return ReadDeadline


def _http_protocol() -> type[asyncio.Protocol]:
    """The parser uvicorn's ``http="auto"`` would pick: httptools when installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def server_config(app: Any, settings: Settings, **kwargs: Any) -> uvicorn.Config:
    """The uvicorn configuration of ``syncd run``, with the client limits of ``settings``."""
    return uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
        lifespan="off",
        http=protocol_with_read_deadline(_http_protocol(), settings.http_read_timeout_s),
        timeout_keep_alive=settings.http_keep_alive_s,
        limit_concurrency=settings.http_max_connections,
        **kwargs,
    )

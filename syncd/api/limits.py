"""The request body limit (``SYNCD_MAX_BODY_BYTES``), enforced before any route reads a body."""

from __future__ import annotations

import json
from typing import Any

from syncd.api.errors import error_body


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    class TooLarge(Exception):
        pass

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await self._answer(send, 400, "bad_request", "invalid Content-Length")
                return
            if int(length) > self.max_bytes:
                await self._answer(send, 413, "too_large", f"body over {self.max_bytes} bytes")
                return
        seen = 0
        started = too_large = answered = False

        async def answer_413() -> None:
            nonlocal answered
            if not answered:
                answered = True
                await self._answer(send, 413, "too_large", f"body over {self.max_bytes} bytes")

        async def limited() -> dict:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyLimit.TooLarge()
            return message

        async def tracking(message: dict) -> None:
            nonlocal started
            if too_large and not started:
                # FastAPI turns any failure while parsing a body into its own 400; the client
                # must hear why the body was refused.
                await answer_413()
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except BodyLimit.TooLarge:
            if not started:
                await answer_413()

    @staticmethod
    async def _answer(send: Any, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

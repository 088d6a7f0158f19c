"""The access log as an operator reads it: one JSON object per request, on stderr, secrets masked
by the same renderer as every other line (the request side is in tests/api/test_api_access_log.py)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from syncd.api.access_log import AccessLog
from syncd.logs import configure_logging

TOKEN = "abcdefgh12345678"


@pytest.fixture
def stderr_lines(capsys):
    """JSON logging into captured stderr, the process-wide setup put back afterwards."""
    touched = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in touched]
    configure_logging("INFO", "json")
    yield lambda: [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


async def test_the_rendered_line_is_one_json_object_without_the_query_or_headers(stderr_lines):
    app = AccessLog(Starlette(routes=[Route("/events", lambda request: PlainTextResponse("", 401),
                                            methods=["POST"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://syncd.test") as client:
        await client.post(f"/events?token={TOKEN}", headers={"authorization": f"Bearer {TOKEN}"})

    [line] = stderr_lines()
    assert (line["event"], line["method"], line["route"], line["status"]) == ("http.request", "POST", "/events", 401)
    assert line["logger"] == "syncd.access" and line["level"] == "info" and line["timestamp"].endswith("Z")
    assert TOKEN not in json.dumps(line)


async def test_a_filtered_level_writes_no_line_and_the_request_id_is_bound_while_it_runs(stderr_lines):
    seen: list[object] = []

    def handler(request):
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        return PlainTextResponse("")

    app = AccessLog(Starlette(routes=[Route("/events", handler, methods=["POST"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://syncd.test") as client:
        await client.post("/events", headers={"x-request-id": "req-1"})
        configure_logging("WARNING", "json")
        await client.post("/events", headers={"x-request-id": "req-2"})

    assert [line["request_id"] for line in stderr_lines()] == ["req-1"]  # INFO filtered: no line for req-2
    assert seen == ["req-1", "req-2"] and "request_id" not in structlog.contextvars.get_contextvars()

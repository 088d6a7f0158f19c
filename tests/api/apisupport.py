"""Helpers of the HTTP API suite (its own module name: test directories share sys.path)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx

from syncd.testbed import Testbed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class SimClock:
    """A simulator clock the test moves: real time plus an offset, or frozen."""

    def __init__(self, frozen: bool = False):
        self.offset = 0.0
        self.frozen_at = time.time() if frozen else None

    def __call__(self) -> float:
        return (self.frozen_at if self.frozen_at is not None else time.time()) + self.offset

    def advance(self, seconds: float = 1.0) -> None:
        self.offset += seconds


def load_fixture(platform: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{platform}.json").read_text())


def slack_sample(source_suffix: str) -> dict[str, Any]:
    """The Slack fixture sample whose ``source`` ends with ``source_suffix``."""
    for sample in load_fixture("slack")["samples"]:
        if sample["source"].endswith(source_suffix):
            return sample
    raise LookupError(source_suffix)


def slack_headers(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with ``body``: ``v0=HMAC-SHA256(secret, "v0:<ts>:<body>")``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-slack-request-timestamp": ts, "x-slack-signature": "v0=" + digest}


async def post_slack(tb: Testbed, integration: dict[str, Any], body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await tb.api.post(tb.webhook_url(integration), content=body, headers=headers)


async def chat_messages(tb: Testbed, integration: dict[str, Any], external_chat_id: str) -> list[dict[str, Any]]:
    """Every stored message of one chat (newest first), or [] if the chat is not stored."""
    chat = (await tb.chats(integration)).get(external_chat_id)
    return await tb.messages(chat["id"]) if chat else []


async def find_message(tb: Testbed, integration: dict[str, Any], external_chat_id: str,
                       external_message_id: str) -> dict[str, Any] | None:
    for message in await chat_messages(tb, integration, external_chat_id):
        if message["externalMessageId"] == external_message_id:
            return message
    return None


async def inbox_counts(tb: Testbed, integration: dict[str, Any]) -> dict[str, int]:
    return (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["inbox"]


async def drain_inbox(tb: Testbed, timeout_s: float = 10) -> None:
    """Until every received webhook is processed (``settle`` also waits for the outbox)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (await tb.daemon.store.inbox_counts()).get("pending"):
        if loop.time() > deadline:
            raise TimeoutError("inbox not drained")
        await asyncio.sleep(0.01)


def event(event_id: str, type_: str = "message.created", **fields: Any) -> dict[str, Any]:
    """An app change event for customer ``cust-1`` on Slack, with ``fields`` on top."""
    return {"id": event_id, "type": type_, "customerId": "cust-1", "platform": "slack", **fields}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """``response`` is ``{"error": {"code", "message"}}`` with ``status``; returns the error."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error

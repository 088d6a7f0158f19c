"""Slack Events API deliveries for the webhook benchmarks: distinct, correctly signed, shaped
like the documented ``event_callback`` sample in ``tests/fixtures/slack.json``, and a Slack
simulator served on 127.0.0.1 (syncd asks it who its bot is, once)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT
from syncd.providers.slack.sim import SlackSimulator

FIXTURE = ROOT / "tests" / "fixtures" / "slack.json"


def template() -> dict[str, Any]:
    """The documented message ``event_callback`` with ``event_ts`` and ``channel_type``."""
    samples = json.loads(Path(FIXTURE).read_text())["samples"]
    for sample in samples:
        payload = sample["payload"]
        event = payload.get("event") or {}
        if payload.get("type") == "event_callback" and event.get("type") == "message" \
                and "subtype" not in event and "event_ts" in event:
            return payload
    raise LookupError(f"no message event_callback with event_ts in {FIXTURE}")


def deliveries(count: int, secret: str, *, start: int = 0, channels: int = 20,
               stamp: float | None = None) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` distinct message deliveries (body, headers), signed with ``secret``."""
    base = template()
    now = stamp or time.time()
    timestamp = str(int(now))
    out = []
    for n in range(start, start + count):
        payload = copy.deepcopy(base)
        ts = f"{int(now) - 600}.{n:06d}" if n < 1_000_000 else f"{int(now) - 600 + n // 1_000_000}.{n % 1_000_000:06d}"
        event = payload["event"]
        event.update(channel=f"C0BENCH{n % channels:04d}", ts=ts, event_ts=ts, channel_type="channel",
                     text=f"benchmark message {n}: how many cats did we herd yesterday?")
        payload["event_id"] = f"Ev0BENCH{n:08d}"
        payload["event_time"] = int(now)
        body = json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        out.append((body, {"content-type": "application/json", "x-slack-request-timestamp": timestamp,
                           "x-slack-signature": f"v0={digest}"}))
    return out


def simulator() -> SlackSimulator:
    return SlackSimulator()


def credentials(sim: SlackSimulator) -> dict[str, str]:
    return {"botToken": next(iter(sim.valid_tokens)), "signingSecret": sim.signing_secret}

"""App callbacks to an app that takes its time to answer.

The daemon (in this process, on the store double) imports a Slack workspace of ``chats``
channels of ``messages`` each with app callbacks on, so every imported message is owed one
``message.created`` callback; the app answers each after ``latency_s``. The figure is callbacks
per second once the import is done, with ``SYNCD_CALLBACK_CONCURRENCY`` at its default, against
the same workspace sent one callback at a time (concurrency 1) in the same run. Each chat's
callbacks go one after the other, so the ratio is bounded by the chats as well as by the
setting. No target: a figure to watch (the app's own latency sets the baseline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.common import SECRET_KEY, Record
from bench.mongo_double import Client
from syncd.config import Settings
from syncd.store import Store, _fernet
from syncd.testbed import Testbed

NAME = "callbacks_slow_app"


@dataclass(frozen=True)
class Size:
    chats: int
    messages: int  # per chat
    latency_s: float


QUICK = Size(chats=24, messages=20, latency_s=0.02)
FULL = Size(chats=48, messages=50, latency_s=0.02)
TINY = Size(chats=4, messages=3, latency_s=0.005)


def _double_store() -> Store:
    client = Client()
    return Store(client, client["syncd"], _fernet(SECRET_KEY))  # indexes: created by ``build``


async def measure(size: Size, concurrency: int) -> dict[str, Any]:
    """Callbacks per second to the slow app after an import, and what the app saw."""
    tb = await Testbed.start(store=_double_store(), callback_concurrency=concurrency, shutdown_grace_s=30)
    try:
        tb.slack.seed_workspace()
        tb.slack.trial_history(size.chats, size.messages)
        tb.app.delay_s = size.latency_s
        await tb.create_slack()  # waits for the import; callbacks are already being sent
        started, before = time.monotonic(), len(tb.app.received)
        await tb.settle(timeout_s=600)
        elapsed = time.monotonic() - started
        sent = len(tb.app.received) - before
        ids = [c["id"] for c in tb.app.received]
        return {"callbacks": len(ids), "timed": sent, "per_s": sent / elapsed if elapsed else 0.0,
                "duplicates": len(ids) - len(set(ids)), "most_in_hand": tb.app.most_in_hand,
                "same_chat_at_once": tb.app.same_chat_at_once}
    finally:
        await tb.stop()


async def run(size: Size = QUICK) -> Record:
    concurrency = Settings.model_fields["callback_concurrency"].default
    one = await measure(size, 1)
    many = await measure(size, concurrency)
    ratio = many["per_s"] / one["per_s"] if one["per_s"] else 0.0
    return Record(
        name=NAME, value=many["per_s"], unit="callbacks/s", baseline=one["per_s"], ratio=ratio,
        target=f"none: a figure to watch (callbacks/s at concurrency {concurrency} / at 1, "
               f"app answering in {size.latency_s * 1000:g} ms)",
        meets_target=True,
        details={"size": size.__dict__, "concurrency": concurrency, "one_at_a_time": one, "concurrent": many})

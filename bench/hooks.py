"""What the scale benchmarks add to the daemon under test, inside its process, only when asked:
integrations cloned into the store before the daemon starts (as a restarted daemon finds them),
a trace of every scheduled poll taken from the scheduler's own times (``bench/replica.py``),
and stored messages added in bulk (``bench/cost_growth.py``).

The trace wraps ``Engine.poll`` (the scheduler's job function) and ``Poller.poll`` (the poll's
work, past the engine's gate) on the instances: a poll's lateness is the moment its work
starts minus the time its job was due (``Job.last_due``), so waiting for the gate counts.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from bench.mongo_double import Client

#: Collections an integration's state lives in; messages, inbox, outbox and leases are not cloned.
CLONED = ("integrations", "chats", "sync_status", "user_platforms")


def dump(client: Client, integration_id: str) -> bytes:
    """Every document of ``CLONED`` that names the integration (its ``_id`` or a top-level
    value), pickled: the template :func:`preload` clones."""
    db = client["syncd"]
    docs = {name: [d for d in db[name].docs.values()
                   if d.get("_id") == integration_id or integration_id in d.values()]
            for name in CLONED}
    return pickle.dumps({"integration": integration_id, "docs": docs})


def _renamed(value: Any, ids: dict[Any, Any]) -> Any:
    if isinstance(value, dict):
        return {_renamed(k, ids): _renamed(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, ids) for v in value]
    return ids.get(value, value) if isinstance(value, (str, ObjectId)) else value


def preload(client: Client, templates: list[bytes], count: int) -> None:
    """``count`` integrations, round-robin over the templates, each a copy of its template's
    documents under new ids (every id a template document has is replaced wherever it
    appears), written straight into the double before the daemon starts."""
    db = client["syncd"]
    loaded = [pickle.loads(t) for t in templates]
    for n in range(count):
        template = loaded[n % len(loaded)]
        ids: dict[Any, Any] = {template["integration"]: f"{template['integration']}-{n}"}
        for docs in template["docs"].values():
            for doc in docs:
                if doc["_id"] not in ids:
                    ids[doc["_id"]] = ObjectId() if isinstance(doc["_id"], ObjectId) else f"{doc['_id']}-{n}"
        for name, docs in template["docs"].items():
            for doc in docs:
                clone = _renamed(doc, ids)
                if name == "integrations":
                    clone["customerId"] = f"{clone.get('customerId')}-{n}"
                elif "customerId" in clone:
                    clone["customerId"] = f"{clone['customerId']}-{n}"
                db[name]._add(clone)


def fill(client: Client, count: int) -> int:
    """``count`` more stored messages, copies of the first one stored under new ids and
    external ids, spread over the chats that hold messages already (so the chats the benchmark
    writes to grow too); written straight into the double, through its indexes. The total."""
    messages = client["syncd"]["messages"]
    template = next(iter(messages.docs.values()))
    chats = sorted({d["chatId"] for d in messages.docs.values()})
    start = len(messages.docs)
    for n in range(start, start + count):
        doc = dict(template, _id=ObjectId(), externalMessageId=f"fill-{n}", chatId=chats[n % len(chats)])
        doc.pop("appMessageId", None)
        doc.pop("callbackPending", None)  # no callback is owed for these: the sweep reads none
        messages._add(doc)
    return len(messages.docs)


class PollTrace:
    """Per integration, the wall-clock start of each scheduled poll; per poll, its lateness:
    when the poll's work began (past the engine's gate, so waiting for a turn counts) minus
    when the scheduler had it due."""

    def __init__(self) -> None:
        self.starts: dict[str, list[float]] = {}
        self.lateness: list[tuple[float, float]] = []  # (start, start - scheduled)
        self._due: dict[str, float] = {}

    def wrap(self, daemon: Any) -> None:
        poll: Callable[[str], Awaitable[None]] = daemon.engine.poll
        work: Callable[..., Awaitable[Any]] = daemon.engine.poller.poll

        async def scheduled(integration_id: str) -> None:
            job = daemon.scheduler.get_job(f"poll:{integration_id}") if daemon.scheduler else None
            if job is not None and job.last_due is not None:
                self._due[integration_id] = job.last_due
            await poll(integration_id)

        async def started(integration_id: str, *args: Any, **kwargs: Any) -> Any:
            due = self._due.pop(integration_id, None)
            if due is not None:  # a scheduled poll (a webhook's asks for none)
                now = time.time()
                self.starts.setdefault(integration_id, []).append(now)
                self.lateness.append((now, now - due))
            return await work(integration_id, *args, **kwargs)

        daemon.engine.poll = scheduled
        daemon.engine.poller.poll = started

    def report(self) -> dict[str, Any]:
        return {"now": datetime.now(UTC).timestamp(), "starts": self.starts, "lateness": self.lateness}

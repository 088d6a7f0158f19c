"""What the benchmarks add to the daemon under test, only when asked: integrations cloned into
the store before the daemon starts (as a restarted daemon finds them), a trace of every
scheduled poll taken from the scheduler's own times (``bench/replica.py``), stored messages
added in bulk (``bench/cost_growth.py``), and what the probes read of the double. The
functions that take the double as ``client`` run where it is (``Client.run``): in the
daemon's process, or in the double's own (``bench/double_process.py``).

The trace wraps ``Engine.poll`` (the scheduler's job function) and ``Poller.poll`` (the poll's
work, past the engine's gate) on the instances: a poll's lateness is the moment its work
starts minus the time its job was due (``Job.last_due``), so waiting for the gate counts.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from bench.common import rss_mb
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
        self.durations: list[tuple[float, float]] = []  # (start, how long the poll's work took)
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
            if due is None:  # a webhook's poll, not a scheduled one
                return await work(integration_id, *args, **kwargs)
            now = time.time()
            self.starts.setdefault(integration_id, []).append(now)
            self.lateness.append((now, now - due))
            try:
                return await work(integration_id, *args, **kwargs)
            finally:
                self.durations.append((now, time.time() - now))

        daemon.engine.poll = scheduled
        daemon.engine.poller.poll = started

    def report(self) -> dict[str, Any]:
        return {"now": datetime.now(UTC).timestamp(), "starts": self.starts, "lateness": self.lateness,
                "durations": self.durations}


def double_stats(client: Client, params: dict[str, str]) -> dict[str, Any]:
    """Round-trips counted so far, inbox and outbox by state, messages stored; with
    ``written``, when each message was first written; with ``integration``, its sync
    status; with ``ids``, stored against distinct external ids (a full scan)."""
    db = client["syncd"]
    inbox: dict[str, int] = {}
    for doc in db["inbox"].docs.values():
        inbox[doc.get("status")] = inbox.get(doc.get("status"), 0) + 1
    outbox: dict[str, int] = {}
    for doc in db["outbox"].docs.values():
        outbox[doc.get("type")] = outbox.get(doc.get("type"), 0) + 1
    body: dict[str, Any] = {
        "calls": {f"{c}.{op}": n for (c, op), n in sorted(client.calls.items())},
        "totals": client.totals(client.calls), "inbox": inbox, "outbox": outbox,
        "messages": len(db["messages"].docs) + db["messages"].discarded,
    }
    if params.get("written"):
        body["written_at"] = client.messages_written_at()
    if params.get("integration"):
        body["sync"] = [
            {**{k: d.get(k) for k in ("chatId", "phase", "counts", "lastError")},
             "finishedAt": _epoch(d.get("finishedAt"))}
            for d in db["sync_status"].docs.values() if d.get("integrationId") == params["integration"]
        ]
    if params.get("ids"):
        ids = [d.get("externalMessageId") for d in db["messages"].docs.values()]
        body["stored_ids"] = len(ids)
        body["distinct_ids"] = len(set(ids))
    return body


def pending_counts(client: Client) -> dict[str, int]:
    """Deliveries not yet processed, and callbacks queued or being sent, from the indexes'
    status buckets (no scan)."""
    db = client["syncd"]
    inbox = db["inbox"].indexes["inbox_due_order"].first
    outbox = db["outbox"].indexes["outbox_due_order"].first
    return {"pending": len(inbox.get("pending", ())),
            "callbacks": len(outbox.get("queued", ())) + len(outbox.get("sending", ()))}


async def wait_pending(client: Client, keys: list[str], wait_s: float) -> dict[str, int]:
    """:func:`pending_counts` once none of ``keys`` counts anything, or after ``wait_s``:
    checked every millisecond where the double is, answered once."""
    deadline = time.monotonic() + wait_s
    counts = pending_counts(client)
    while any(counts[k] for k in keys) and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
        counts = pending_counts(client)
    return counts


def process_rss(_client: Client) -> float:
    """The resident memory of the process this runs in, in MiB."""
    return rss_mb()


def _epoch(moment: Any) -> float | None:
    """A stored datetime as seconds since the epoch (the benchmark's process has the same clock)."""
    if not isinstance(moment, datetime):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class GcPauses:
    """How long each garbage collection stopped the daemon, by generation: the count, the
    total and the longest; and every full (generation 2) collection and every pause of 50 ms
    or more, with its wall-clock end and generation."""

    def __init__(self) -> None:
        self._started = 0.0
        self.by_generation: dict[int, list[float]] = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}
        self.long_or_full: list[tuple[float, int, float]] = []
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        count_total_max = self.by_generation[info["generation"]]
        count_total_max[0] += 1
        count_total_max[1] += pause
        count_total_max[2] = max(count_total_max[2], pause)
        if info["generation"] == 2 or pause >= 0.05:
            self.long_or_full.append((time.time(), info["generation"], round(pause, 4)))

    def report(self) -> dict[str, Any]:
        return {"by_generation": {str(g): {"count": int(c), "total_s": round(t, 3), "max_s": round(m, 4)}
                                  for g, (c, t, m) in self.by_generation.items()},
                "long_or_full": self.long_or_full[-100:]}

"""What the fault scenarios share: a testbed per run, a wire between syncd and the simulators
(that records, holds and drops requests), replicas that die the way ``kill -9`` leaves them,
and a few seeding and waiting helpers.

A replica "dies" by losing its database first (every store call it makes from then on fails,
so no ``finally`` block, lease release or checkpoint of a dead process reaches MongoDB) and
then having every task it runs cancelled. What it wrote before that moment stays, exactly as a
killed process leaves it; its leases run out on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from pymongo.errors import AutoReconnect

from syncd.daemon import Daemon
from syncd.providers.slack.connector import SlackConnector
from syncd.providers.slack.sim import SlackSimulator, us_to_ts
from syncd.store import Store
from syncd.testbed import APP_SECRET, GMAIL_PUSH_TOKEN, Testbed


def quiet() -> None:
    """Only errors that stop a scenario reach the terminal (the table is the output)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    logging.getLogger().setLevel(logging.CRITICAL)


# -- the wire ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """One request syncd made to a simulator."""

    sim: str
    method: str
    path: str
    params: dict[str, str]

    @property
    def endpoint(self) -> str:
        """Slack's method name (the last path segment), or Gmail's path after ``users/me``."""
        if self.sim == "slack":
            return self.path.rstrip("/").rsplit("/", 1)[-1]
        return self.path.split("/users/me", 1)[-1]


@dataclass
class Hold:
    """Requests matching ``match`` (at most ``times`` of them) wait until their caller dies."""

    match: Callable[[Seen], bool]
    times: int = 1
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class LoseAnswers:
    """Requests matching ``match`` reach the platform, which acts on them; the answer of each
    is lost with ``probability`` (a read timeout), at most ``times`` of them."""

    match: Callable[[Seen], bool]
    probability: float = 1.0
    times: int = 1_000_000
    lost: int = 0


class Wire:
    """The network between syncd and the simulators (``Testbed.start(transport=wire.transport)``).

    Records every request; ``hold`` keeps chosen requests in flight until the caller dies;
    ``lose_answers`` lets chosen requests (writes too) through and loses their answers;
    ``drop_probability`` fails that share of requests as a flaky network does: half of them
    as a connection reset, half as a timeout. The platform never acts on a dropped write
    (the connection failed before the request got there); a dropped read may have been
    answered and the answer lost, which only costs the read.
    """

    def __init__(self, seed: int = 0):
        self.seen: list[Seen] = []
        self.holds: list[Hold] = []
        self.losses: list[LoseAnswers] = []
        self.drop_probability = 0.0
        self.dropped: Counter[str] = Counter()
        #: HTTP status of every answer that reached syncd.
        self.statuses: Counter[int] = Counter()
        self.random = random.Random(seed)

    def transport(self, name: str, sim: Any) -> httpx.AsyncBaseTransport:
        return _WireTransport(self, name, httpx.ASGITransport(sim))

    def hold(self, match: Callable[[Seen], bool], times: int = 1) -> Hold:
        hold = Hold(match, times)
        self.holds.append(hold)
        return hold

    def lose_answers(self, match: Callable[[Seen], bool], probability: float = 1.0,
                     times: int = 1_000_000) -> LoseAnswers:
        loss = LoseAnswers(match, probability, times)
        self.losses.append(loss)
        return loss

    def _loses(self, seen: Seen) -> bool:
        for loss in self.losses:
            if loss.times > 0 and loss.match(seen) and self.random.random() < loss.probability:
                loss.times -= 1
                loss.lost += 1
                return True
        return False

    def calls(self, sim: str, endpoint: str) -> list[Seen]:
        return [s for s in self.seen if s.sim == sim and s.endpoint == endpoint]

    def count(self, sim: str | None = None) -> int:
        return sum(1 for s in self.seen if sim is None or s.sim == sim)


class _WireTransport(httpx.AsyncBaseTransport):
    def __init__(self, wire: Wire, name: str, inner: httpx.AsyncBaseTransport):
        self.wire, self.name, self.inner = wire, name, inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        wire = self.wire
        seen = Seen(self.name, request.method, request.url.path, dict(request.url.params))
        wire.seen.append(seen)
        for hold in wire.holds:
            if hold.times > 0 and hold.match(seen):
                hold.times -= 1
                hold.reached.set()
                await hold.released.wait()  # in practice: until the caller is cancelled
        if wire.drop_probability and wire.random.random() < wire.drop_probability:
            if wire.random.random() < 0.5:
                wire.dropped["reset"] += 1
                raise httpx.ConnectError("connection reset by peer", request=request)
            wire.dropped["timeout"] += 1
            if request.method == "GET":
                await self.inner.handle_async_request(request)  # answered; the answer is lost
                raise httpx.ReadTimeout("timed out reading the answer", request=request)
            raise httpx.ConnectTimeout("timed out connecting", request=request)
        response = await self.inner.handle_async_request(request)
        if wire._loses(seen):
            # The platform acted (a POST's message is posted); syncd never hears of it.
            wire.dropped["answer_lost"] += 1
            raise httpx.ReadTimeout("timed out reading the answer", request=request)
        wire.statuses[response.status_code] += 1
        return response


# -- replicas that die ---------------------------------------------------------------------------
class _Life:
    dead = False


class _Severed:
    """A collection (or database) as a process sees it: gone once the process is dead."""

    def __init__(self, target: Any, life: _Life):
        self._target, self._life = target, life

    def _check(self) -> None:
        if self._life.dead:
            raise AutoReconnect("the process is dead")

    def __getattr__(self, name: str) -> Any:
        self._check()
        return getattr(self._target, name)

    def __getitem__(self, name: str) -> Any:
        self._check()
        return self._target[name]


def severable(store: Store) -> tuple[Store, _Life]:
    """The same database as ``store``, seen through a connection that dies with its process."""
    life = _Life()
    view = copy.copy(store)
    for name, value in list(vars(view).items()):
        if name in ("db", "client") or "Collection" in type(value).__name__:
            setattr(view, name, _Severed(value, life))
    return view, life


@dataclass
class Mortal:
    """A replica (its own process, as far as syncd can tell) that can die at any moment."""

    tb: Testbed
    daemon: Daemon
    life: _Life
    api: httpx.AsyncClient

    @property
    def owner(self) -> str:
        return self.daemon.engine.ctx.owner

    @property
    def dead(self) -> bool:
        return self.life.dead

    async def die(self) -> None:
        """kill -9: the database connection goes first, then every task of the process."""
        self.life.dead = True
        engine = self.daemon.engine
        current = asyncio.current_task()
        tasks = [t for t in (*engine.importer._tasks.values(), *engine._polls, *engine.outbox._sending,
                             *(w.task for w in (engine.inbox.worker, engine.outbox.events, engine.outbox.notify)))
                 if t is not None and not t.done() and t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.daemon in self.tb.replicas:
            self.tb.replicas.remove(self.daemon)  # nobody will stop it gracefully
        await self.api.aclose()

    def die_here(self) -> None:
        """Die from inside one of the replica's own tasks (the caller's code stops here)."""
        self.life.dead = True
        asyncio.get_running_loop().create_task(self.die())
        raise asyncio.CancelledError("killed")


async def mortal(tb: Testbed, *, run: bool = True, **overrides: Any) -> Mortal:
    store, life = severable(tb.daemon.store)
    daemon = await tb.replica(store=store, run=run, **overrides)
    return Mortal(tb, daemon, life, tb.client(daemon))


def dies_in(module: Any, name: str, victim: Mortal, *, before: Callable[[tuple, dict], bool] | None = None,
            after: Callable[[tuple, dict], bool] | None = None) -> contextlib.AbstractContextManager[None]:
    """Wrap the coroutine function ``module.name`` so the victim dies right before or right
    after a call that ``before``/``after`` picks (given the call's args and kwargs). Only
    calls made by the victim's engine count (their first argument is its context, or their
    ``self`` carries it)."""
    real = getattr(module, name)

    def mine(args: tuple) -> bool:
        if not args:
            return False
        ctx = getattr(args[0], "ctx", args[0])
        return getattr(ctx, "owner", None) == victim.owner

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not victim.dead and mine(args) and before is not None and before(args, kwargs):
            victim.die_here()
        result = await real(*args, **kwargs)
        if not victim.dead and mine(args) and after is not None and after(args, kwargs):
            victim.die_here()
        return result

    return patched(module, name, wrapper)


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


@contextlib.contextmanager
def slack_pages(limit: int) -> Iterator[None]:
    """Slack history in pages of ``limit`` (the connector asks for 200), so a few dozen
    messages make several pages."""
    with patched(SlackConnector, "page_limit", limit):
        yield


# -- testbeds ------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def testbed(seed: int = 0, **options: Any) -> AsyncIterator[tuple[Testbed, Wire]]:
    """A testbed whose daemon only answers the API (``run=False`` unless told otherwise);
    the scenario's replicas do the work."""
    wire = Wire(seed)
    options.setdefault("run", False)
    tb = await Testbed.start(transport=wire.transport, **options)
    try:
        yield tb, wire
    finally:
        await tb.stop()


def slack_credentials(tb: Testbed) -> dict[str, str]:
    return {"botToken": next(iter(tb.slack.valid_tokens)), "signingSecret": tb.slack.signing_secret}


async def create_slack(api: httpx.AsyncClient, tb: Testbed, customer: str = "cust-1") -> dict[str, Any]:
    response = await api.post("/integrations", json={"platform": "slack", "customerId": customer,
                                                     "credentials": slack_credentials(tb)})
    if response.status_code != 201:
        raise AssertionError(f"create slack: {response.status_code} {response.text}")
    return response.json()["integration"]


async def create_gmail(api: httpx.AsyncClient, tb: Testbed, customer: str = "cust-1") -> dict[str, Any]:
    token = next(t for t, a in tb.gmail.tokens.items() if a == tb.gmail.address)
    response = await api.post("/integrations", json={"platform": "gmail", "customerId": customer, "credentials": {
        "accessToken": token, "emailAddress": tb.gmail.address, "pushToken": GMAIL_PUSH_TOKEN}})
    if response.status_code != 201:
        raise AssertionError(f"create gmail: {response.status_code} {response.text}")
    return response.json()["integration"]


async def push_gmail(api: httpx.AsyncClient, tb: Testbed, integration: dict[str, Any]) -> httpx.Response:
    body, headers = tb.gmail.push_notification()
    return await api.post(f"{tb.webhook_url(integration)}?token={GMAIL_PUSH_TOKEN}", content=body, headers=headers)


async def deliver_slack(api: httpx.AsyncClient, tb: Testbed, integration: dict[str, Any], delivery: Any) -> httpx.Response:
    return await api.post(tb.webhook_url(integration), content=delivery.body, headers=delivery.headers)


def seed_mailbox(sim: Any, threads: int, per_thread: int) -> list[str]:
    """``threads`` conversations of ``per_thread`` emails from outside; their thread ids."""
    ids = []
    for t in range(threads):
        sender = f"Person {t} <person{t}@example.org>"
        thread = sim.add_incoming(None, sender, f"Topic {t}", f"topic {t} mail 0")
        for m in range(1, per_thread):
            sim.add_incoming(thread, sender, f"Re: Topic {t}", f"topic {t} mail {m}")
        ids.append(thread)
    return ids


async def post_event(api: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    """POST one app event to ``api``'s ``/events``, signed as the app signs it."""
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return await api.post("/events", content=body,
                          headers={"content-type": "application/json", "x-syncd-signature": signature})


def app_event(n: int | str, kind: str, platform: str, chat: str | None, text: str | None = None,
              customer: str = "cust-1") -> dict[str, Any]:
    """The app's event ``evt-<kind>-<n>`` about its message ``app-<n>``."""
    event: dict[str, Any] = {"id": f"evt-{kind}-{n}", "type": f"message.{kind}", "customerId": customer,
                             "platform": platform, "message": {"id": f"app-{n}"}}
    if chat is not None:
        event["externalChatId"] = chat
    if text is not None:
        event["message"]["text"] = text
    return event


def seed_channel(sim: SlackSimulator, name: str, count: int, *, start: int = 1_700_000_000,
                 thread_replies: int = 0) -> str:
    """A channel of ``count`` messages, one second apart, from a few people; the first one
    carries ``thread_replies`` replies."""
    users = [sim.ids.get(n) or sim.ids.setdefault(n, sim.add_user(n, n.title(), email=f"{n}@example.com"))
             for n in ("alice", "bob", "carol")]
    channel = sim.add_channel(name)
    for i in range(count):
        parent = sim.add_message(channel, f"{name} message {i}", users[i % 3], ts=us_to_ts((start + 10 * i) * 10**6))
        if i == 0:
            for r in range(thread_replies):
                sim.add_message(channel, f"{name} reply {r}", users[(r + 1) % 3],
                                ts=us_to_ts((start + 1 + r) * 10**6 + 500), thread_ts=parent["ts"])
    return channel


async def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> None:
    """Until ``condition()`` (awaited when it is a coroutine) is truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def settle(store: Store, *daemons: Daemon, timeout_s: float = 60.0) -> None:
    """Until no import runs and the inbox and outbox hold nothing due, twice in a row."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    while calm < 2:
        for daemon in daemons:
            await daemon.engine.importer.wait()
        inbox, outbox = await store.inbox_counts(), await store.outbox_counts()
        busy = inbox.get("pending") or outbox.get("queued") or outbox.get("sending")
        calm = 0 if busy else calm + 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled: inbox {inbox}, outbox {outbox}")
        await asyncio.sleep(0.02)


async def imported(store: Store, integration_id: str) -> bool:
    statuses = await store.list_sync_status(integration_id)
    return bool(statuses) and all(s.phase == "done" for s in statuses)


async def survivor_finishes_import(tb: Any, integration_id: str) -> Any:
    """A fresh engine on the same database waits out the dead owner's lease and finishes the
    import; returns that replica."""
    survivor = await tb.replica()
    await survivor.engine.importer.wait()
    tb.clock.advance(tb.daemon.settings.lease_ttl_s + 1)
    await survivor.engine.resume()
    await survivor.engine.importer.wait()
    await wait_for(lambda: imported(tb.daemon.store, integration_id), what="the import to finish")
    return survivor


def timed(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Fill the returned row's ``seconds``."""
    async def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        row = await fn(*args, **kwargs)
        row.seconds = time.perf_counter() - started
        return row

    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run

"""An in-process syncd wired to the platform simulators and a fake app: the demo and the
end-to-end tests drive exactly what an operator runs, through the HTTP API only.

Nothing here opens a port: the daemon's API, the simulators and the app's callback endpoint
are ASGI apps reached through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.config import Settings
from syncd.daemon import Daemon, build
from syncd.providers.gmail.sim import PUSH_TOKEN as GMAIL_PUSH_TOKEN
from syncd.providers.gmail.sim import GmailSimulator
from syncd.providers.slack.sim import SlackSimulator
from syncd.store import Store

BASE = "http://syncd.test"
ADMIN_TOKEN = "testbed-admin-token"
APP_SECRET = "testbed-app-secret"


@dataclass
class FakeApp:
    """The app's callback endpoint: verifies the signature and records what arrived."""

    secret: str
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    fail_next: int = 0
    #: Seconds the app takes to answer each callback (a slow app).
    delay_s: float = 0.0
    #: The chats of the callbacks being answered now; the most at once; how often a chat's
    #: callback came while another of the same chat was still being answered.
    in_hand: list[str] = field(default_factory=list)
    most_in_hand: int = 0
    same_chat_at_once: int = 0

    def asgi(self) -> Starlette:
        async def callback(request: Request) -> JSONResponse:
            body = await request.body()
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("x-syncd-signature", ""), expected):
                self.rejected += 1
                return JSONResponse({"error": "bad signature"}, status_code=401)
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": "try later"}, status_code=503)
            payload = json.loads(body)
            await self._answer_slowly(str((payload.get("message") or {}).get("chatId")))
            self.received.append(payload)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/callbacks", callback, methods=["POST"])])

    async def _answer_slowly(self, chat: str) -> None:
        self.same_chat_at_once += chat in self.in_hand
        self.in_hand.append(chat)
        self.most_in_hand = max(self.most_in_hand, len(self.in_hand))
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_hand.remove(chat)


async def _no_wait(_: float) -> None:
    await asyncio.sleep(0)


class Clock:
    """Wall time plus an offset that tests move forward, so leases and outbox claims expire
    without waiting. It drives the store's clock (leases) and every engine's ``now``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


class Testbed:
    """Built by :meth:`start`; ``daemon`` and ``api`` are the replica the tests talk to."""

    __test__ = False  # not a pytest test class, whatever its name says
    daemon: Daemon
    api: httpx.AsyncClient

    def __init__(self, slack: SlackSimulator, gmail: GmailSimulator, app: FakeApp, *, fast_retries: bool = True,
                 sims: dict[str, Any] | None = None,
                 transport: Callable[[str, Any], httpx.AsyncBaseTransport] | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None):
        self.slack = slack
        self.gmail = gmail
        #: platform (or shared API root key, e.g. ``meta``) -> simulator ASGI app.
        self.sims: dict[str, Any] = {"slack": slack, "gmail": gmail, **(sims or {})}
        self.app = app
        self.fast_retries = fast_retries
        #: (name, simulator) -> the transport every replica reaches it through; the fault
        #: suite wraps it to drop connections and time out, which no ASGI app can do.
        self.transport = transport or (lambda _, sim: httpx.ASGITransport(sim))
        self.sleep = sleep or (_no_wait if fast_retries else asyncio.sleep)
        self.clock = Clock()
        self.replicas: list[Daemon] = []

    @staticmethod
    def client(daemon: Daemon) -> httpx.AsyncClient:
        """An admin client of ``daemon``'s HTTP API."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(daemon.app), base_url=BASE,
                                 headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    @classmethod
    async def start(cls, *, callbacks: bool = True, fast_retries: bool = True, run: bool = True,
                    store: Store | None = None, sims: dict[str, Any] | None = None,
                    transport: Callable[[str, Any], httpx.AsyncBaseTransport] | None = None,
                    sleep: Callable[[float], Awaitable[None]] | None = None,
                    **overrides: Any) -> Testbed:
        """``run=False`` wires everything but starts no worker (webhooks and events are still
        accepted and stored); ``store`` shares an existing store (another replica's); ``sims``
        adds simulators of more platforms, keyed by platform or by shared API root key;
        ``transport`` builds the transport to each simulator and ``sleep`` replaces the wait
        between HTTP retries (by default none with ``fast_retries``)."""
        app = FakeApp(APP_SECRET)
        settings = Settings(**{
            "mongodb_uri": "mongomock://",
            "admin_token": ADMIN_TOKEN,
            "app_webhook_secret": APP_SECRET,
            "app_callback_url": f"{BASE}/callbacks" if callbacks else None,
            "public_url": BASE,
            "poll_interval_s": 3600,
            "retry_base_s": 0.01 if fast_retries else 1.0,
            "retry_max_s": 0.05 if fast_retries else 300.0,
            "worker_poll_s": 0.02,
            # Retry waits cost nothing here (a fake sleep), so every wait is taken inline.
            "http_max_inline_wait_s": 1e9 if fast_retries else 30.0,
            "shutdown_grace_s": 5,
            **overrides,
        })
        bed = cls(SlackSimulator(), GmailSimulator(), app, fast_retries=fast_retries, sims=sims,
                  transport=transport, sleep=sleep)
        bed.daemon = await bed._build(settings, store)
        bed.api = bed.client(bed.daemon)
        if run:
            await bed.daemon.start(schedule=False)
        return bed

    async def _build(self, settings: Settings, store: Store | None) -> Daemon:
        daemon = await build(
            settings,
            transports={name: self.transport(name, sim) for name, sim in self.sims.items()},
            callback_transport=httpx.ASGITransport(self.app.asgi()),
            sleep=self.sleep,
            store=store,
        )
        daemon.store.clock = self.clock.now
        daemon.engine.ctx.now = self.clock.now
        return daemon

    async def replica(self, *, store: Store | None = None, run: bool = True, **overrides: Any) -> Daemon:
        """Another daemon (its own lease owner) on the same store and simulators, as a second
        replica or a restarted process would be."""
        settings = self.daemon.settings.model_copy(update=overrides)
        daemon = await self._build(settings, store or self.daemon.store)
        self.replicas.append(daemon)
        if run:
            await daemon.start(schedule=False)
        return daemon

    async def stop(self) -> None:
        await self.api.aclose()
        for replica in self.replicas:
            await replica.engine.stop(grace_s=1)
        await self.daemon.stop()

    @property
    def engine(self):
        return self.daemon.engine

    # -- integrations ---------------------------------------------------------------------
    async def create(self, platform: str, credentials: dict[str, Any], *, customer: str = "cust-1",
                     settings: dict[str, Any] | None = None, wait: bool = True) -> dict[str, Any]:
        body = {"platform": platform, "customerId": customer, "credentials": credentials}
        if settings is not None:
            body["settings"] = settings
        response = await self.api.post("/integrations", json=body)
        if response.status_code != 201:
            raise AssertionError(f"create {platform}: {response.status_code} {response.text}")
        integration = response.json()["integration"]
        if wait:
            await self.wait_imported(integration["id"])
        return integration

    async def create_slack(self, **kw: Any) -> dict[str, Any]:
        return await self.create("slack", {"botToken": next(iter(self.slack.valid_tokens)),
                                           "signingSecret": self.slack.signing_secret}, **kw)

    async def create_gmail(self, **kw: Any) -> dict[str, Any]:
        token = next(t for t, a in self.gmail.tokens.items() if a == self.gmail.address)
        return await self.create("gmail", {"accessToken": token, "emailAddress": self.gmail.address,
                                           "pushToken": GMAIL_PUSH_TOKEN}, **kw)

    # The other platforms' simulators are the ones given to ``start(sims=...)``, by platform;
    # each integration is made with that platform's real credential shape.
    async def create_teams(self, **kw: Any) -> dict[str, Any]:
        """From a delegated OAuth grant; its creation subscribes to change notifications."""
        sim = self.sims["teams"]
        return await self.create("teams", {"tenantId": sim.tenant_id, "clientId": sim.client[0],
                                           "clientSecret": sim.client[1],
                                           "refreshToken": next(iter(sim.refresh_tokens))}, **kw)

    async def create_whatsapp(self, **kw: Any) -> dict[str, Any]:
        sim = self.sims["whatsapp"]
        return await self.create("whatsapp", {"accessToken": next(iter(sim.valid_tokens)),
                                              "phoneNumberId": sim.phone_number_id, "appSecret": sim.app_secret,
                                              "verifyToken": sim.verify_token}, **kw)

    async def create_messenger(self, **kw: Any) -> dict[str, Any]:
        sim = self.sims["messenger"]
        return await self.create("messenger", {"pageAccessToken": next(iter(sim.valid_tokens)),
                                               "pageId": sim.account_id, "appSecret": sim.app_secret,
                                               "verifyToken": sim.verify_token}, **kw)

    async def create_instagram(self, **kw: Any) -> dict[str, Any]:
        sim = self.sims["instagram"]
        return await self.create("instagram", {"accessToken": next(iter(sim.valid_tokens)),
                                               "igUserId": sim.account_id, "appSecret": sim.app_secret,
                                               "verifyToken": sim.verify_token}, **kw)

    async def create_telegram(self, **kw: Any) -> dict[str, Any]:
        """From the bot token alone; its maintenance run registers the webhook and its secret."""
        return await self.create("telegram", {"botToken": self.sims["telegram"].bot.token}, **kw)

    async def wait_imported(self, integration_id: str, timeout_s: float = 60) -> list[dict[str, Any]]:
        """Until no import work is left; returns the status documents."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            response = await self.api.get(f"/integrations/{integration_id}/status")
            statuses = response.json()["status"]
            if statuses and not any(s["phase"] in ("pending", "importing") for s in statuses):
                return statuses
            if loop.time() > deadline:
                raise TimeoutError(f"import of {integration_id} did not finish: {statuses}")
            await asyncio.sleep(0.02)

    # -- platform traffic -----------------------------------------------------------------
    def webhook_url(self, integration: dict[str, Any]) -> str:
        return integration["webhookUrl"].replace(BASE, "")

    async def deliver_slack(self, integration: dict[str, Any], delivery: Any) -> httpx.Response:
        return await self.api.post(self.webhook_url(integration), content=delivery.body, headers=delivery.headers)

    async def push_gmail(self, integration: dict[str, Any], token: str = GMAIL_PUSH_TOKEN) -> httpx.Response:
        body, headers = self.gmail.push_notification()
        return await self.api.post(f"{self.webhook_url(integration)}?token={token}", content=body, headers=headers)

    async def deliver(self, integration: dict[str, Any], delivery: Any) -> httpx.Response:
        """POST a simulator's delivery (raw ``body`` and ``headers``, and its ``query`` if it
        has one) to the integration's webhook, byte for byte as the platform sends it."""
        query = getattr(delivery, "query", "")
        url = self.webhook_url(integration) + (f"?{query}" if query else "")
        return await self.api.post(url, content=delivery.body, headers=delivery.headers)

    async def validate_teams(self, delivery: Any) -> tuple[int, str, str]:
        """Graph's reachability check on subscription create, through syncd's public API:
        set as ``TeamsSimulator.validator``; answers (status, content type, body)."""
        response = await self.api.post(delivery.target(BASE), content=delivery.body, headers=delivery.headers)
        return response.status_code, response.headers.get("content-type", ""), response.text

    # -- app traffic -----------------------------------------------------------------------
    async def post_event(self, event: dict[str, Any] | bytes, *, secret: str = APP_SECRET) -> httpx.Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return await self.api.post("/events", content=body,
                                   headers={"content-type": "application/json", "x-syncd-signature": signature})

    async def settle(self, timeout_s: float = 30) -> None:
        """Until the inbox and outbox hold nothing due (imports included)."""
        store = self.daemon.store
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            await self.daemon.engine.importer.wait()
            await self.daemon.engine.wait_background()
            inbox = await store.inbox_counts()
            outbox = await store.outbox_counts()
            if not inbox.get("pending") and not outbox.get("queued") and not outbox.get("sending"):
                return
            if loop.time() > deadline:
                raise TimeoutError(f"not settled: inbox {inbox}, outbox {outbox}")
            await asyncio.sleep(0.02)

    async def messages(self, chat_id: str) -> list[dict[str, Any]]:
        """Every stored message of a chat, through the API's cursor paging."""
        out, cursor = [], None
        while True:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (await self.api.get(f"/chats/{chat_id}/messages", params=params)).json()
            out += page["messages"]
            cursor = page["nextCursor"]
            if not cursor:
                return out

    async def chats(self, integration: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """externalChatId -> chat."""
        response = await self.api.get("/chats", params={"integrationId": integration["id"]})
        return {c["externalChatId"]: c for c in response.json()["chats"]}

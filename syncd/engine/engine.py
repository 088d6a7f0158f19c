"""``Engine``: the sync engine's one face to the API, the CLI and the daemon.

It composes the importer, poller, inbox, exporter and outbox over one ``EngineContext`` and
owns the integration lifecycle (create, delete, import chats, resync). It starts no scheduler
and opens no database: the daemon hands it a store and drives ``resume``/``poll`` on schedule.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import structlog
from pydantic import ValidationError

from syncd.engine.connectors import UnknownPlatform
from syncd.engine.context import EngineContext, connector_for
from syncd.engine.deadletters import DeadLetters
from syncd.engine.errors import Conflict, Invalid, NotFound, Unavailable
from syncd.engine.exporter import Exporter
from syncd.engine.importer import Importer, chat_data
from syncd.engine.inbox import Inbox
from syncd.engine.leases import hold
from syncd.engine.lifecycle import Lifecycle, full_sync_period, valid_period
from syncd.engine.listeners import Listeners
from syncd.engine.notifier import CallbackSender, sweep_owed_callbacks
from syncd.engine.outbox import Outbox
from syncd.engine.poller import PollBusy, Poller
from syncd.kit.errors import AuthError, PermanentError, ProviderError
from syncd.models import Chat, Integration, SyncStatus, UserPlatform
from syncd.universal import ChatData, UserData

log = structlog.get_logger(__name__)


#: The share of a poll interval for which one replica's scheduled poll stands for all: a
#: little less than the interval, so the turn has expired when that replica's next tick comes.
TURN_SHARE = 0.9


def work_budget(grace_s: float) -> float:
    """How much of a shutdown grace period work in hand may use. The rest (half of it, at
    most 1.5 s) is kept for what must follow: cancelling, checkpointing, releasing the
    leases, and the process exit itself (the interpreter's teardown of syncd's modules alone
    takes 0.6-0.8 s), so a process killed when its grace period ends has done all of that."""
    return max(0.0, grace_s - min(1.5, grace_s / 2))


def secrets_from_settings(connector_cls: Any, credentials: dict[str, Any],
                          settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A secret an operator put in ``settings`` (the platform declares which) moves to the
    credentials: encrypted at rest, and never answered back by the API."""
    for key in connector_cls.secret_settings:
        if key in settings:
            value = settings.pop(key)
            if value is not None:
                credentials.setdefault(key, value)
    return credentials, settings


class Engine:
    def __init__(self, ctx: EngineContext, *, callback_transport: httpx.AsyncBaseTransport | None = None):
        self.ctx = ctx
        self.store = ctx.store
        self.importer = Importer(ctx)
        self.poller = Poller(ctx, self.importer)
        self.inbox = Inbox(ctx, self.poller)
        self.exporter = Exporter(ctx)
        self.callbacks = CallbackSender(ctx, transport=callback_transport)
        self.outbox = Outbox(ctx, self.exporter, self.callbacks, yield_to=self.inbox.idle)
        self.lifecycle = Lifecycle(ctx, self.importer)
        self.dead_letters = DeadLetters(ctx, events=self.outbox.events, deliveries=self.inbox.worker)
        self._polls: set[asyncio.Task[Any]] = set()
        #: Scheduled polls and maintenance runs in hand at once (``poll_concurrency``).
        self._gate = asyncio.Semaphore(ctx.settings.poll_concurrency)
        self.listeners = Listeners(ctx, self._poll_now)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the inbox and outbox workers (the daemon schedules polls and resumes)."""
        self.inbox.worker.start()
        self.outbox.events.start()
        self.listeners.enabled = True  # ``resume`` starts them
        if self.ctx.settings.app_callback_url:
            self.outbox.notify.start()

    @property
    def workers_running(self) -> bool:
        return self.inbox.worker.running and self.outbox.events.running

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking work, let work in hand finish (or checkpoint) within the grace period,
        release every lease, close connectors. Work gets ``work_budget(grace)``; the rest of
        the grace period is kept for cancelling, checkpointing and giving the leases back."""
        grace = self.ctx.settings.shutdown_grace_s if grace_s is None else grace_s
        self.ctx.stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + work_budget(grace)
        for worker in (self.inbox.worker, self.outbox.events, self.outbox.notify):
            await worker.stop(max(0.0, deadline - loop.time()))
        await self.outbox.drain(max(0.0, deadline - loop.time()))
        importing = self.importer.busy()
        if importing or self._polls or self.listeners.count:
            # Said before waiting, so a slow stop is explained while it happens.
            log.info("shutdown waiting for work in hand", imports=importing, polls=len(self._polls),
                     listeners=self.listeners.count, wait_s=round(max(0.0, deadline - loop.time()), 1))
        # Listeners hold no work: closed first, so they wake no poll while the rest winds down.
        await self.listeners.close()
        try:
            await asyncio.wait_for(self.importer.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.warning("shutdown: imports did not finish in the grace period; checkpointed and cancelled",
                        imports=self.importer.busy())
            await self.importer.cancel()
        if self._polls:
            polls = set(self._polls)
            _, late = await asyncio.wait(polls, timeout=max(0.0, deadline - loop.time()))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.ctx.users.close()
        await self.store.release_all(self.ctx.owner)
        await self.callbacks.aclose()
        await self.ctx.connectors.close()

    async def resume(self, known: list[Integration] | None = None) -> None:
        """Continue every unfinished import (after a restart, a crash, a failed page, or a
        replica that died holding the lease), and queue the app callbacks a process died
        before queueing. ``known``: the integrations the caller just read (every active one
        among them), so 10,000 of them are not read and validated twice."""
        if known is None:
            active = await self.store.list_integrations(status="active")
        else:
            active = [i for i in known if i.status == "active"]
        with_work = await self.importer.with_work()
        for integration in active:
            if integration.id in with_work:
                self.importer.kick(integration.id)
        await self.listeners.keep(active)
        owed = await sweep_owed_callbacks(self.ctx)
        if owed:
            log.info("queued callbacks a stopped process owed", messages=owed)

    async def poll(self, integration_id: str) -> None:
        """One scheduled poll; a stopping engine starts none, and ``stop`` waits for those in hand.

        Every replica schedules every integration's poll, so each poll interval is a turn
        that one replica claims (a lease that is left to expire, not released): the other
        replicas' ticks in that interval are skipped instead of polling the platform again.
        Polls a webhook asks for do not take turns, nor wait for the gate."""
        async with self._gate:
            if not self.ctx.stopping.is_set():
                await self._scheduled_poll(integration_id)

    async def _scheduled_poll(self, integration_id: str) -> None:
        integration = await self.store.get_integration(integration_id)
        if integration is None or integration.status != "active":
            return  # the poll would find nothing to do; no turn is taken
        try:
            cls = self.ctx.connectors.connector_class(integration.platform)
        except UnknownPlatform:
            return
        interval = cls.poll_every_s or self.ctx.settings.poll_interval_s
        if self.listeners.is_up(integration_id):
            # The listener wakes a poll when something changes; a scheduled one is a safety net.
            if not self.listeners.safety_poll_due(integration_id, cls.listen_poll_every_s):
                return
            interval = max(interval, cls.listen_poll_every_s)
        # The turn is taken with the poll's lease, in one round-trip.
        await self._track(self._poll(integration_id, integration, turn_s=interval * TURN_SHARE),
                          f"poll:{integration_id}")

    async def wait_background(self) -> None:
        """Until the polls and maintenance runs started so far have finished."""
        while self._polls:
            await asyncio.gather(*list(self._polls), return_exceptions=True)

    def _track(self, work: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self._polls.add(task)
        task.add_done_callback(self._polls.discard)
        return task

    async def maintain(self, integration_id: str) -> None:
        """Create or renew what keeps the integration's webhooks flowing (subscriptions,
        watches, the registered webhook URL), under a lease; its state is kept in the
        integration's sync status."""
        async with self._gate:
            if not self.ctx.stopping.is_set():
                await self._maintain(integration_id)

    async def _maintain(self, integration_id: str) -> None:
        async with hold(self.ctx, f"maintain:{integration_id}") as held:
            if not held:
                return
            integration = await self.store.get_integration(integration_id)
            if integration is None or integration.status != "active":
                return
            connector = await connector_for(self.ctx, integration)
            top = await self.store.get_sync_status(integration_id)
            try:
                state = await connector.maintain(top.maintenance if top else None)
            except AuthError as exc:
                await self.store.update_integration(integration_id, status="error", status_reason=str(exc))
                log.warning("maintenance stopped: credentials rejected", integration_id=integration_id)
                return
            except ProviderError as exc:
                log.warning("maintenance failed; will retry", integration_id=integration_id, error=str(exc))
                return
            await self.store.update_sync_status(integration_id, None, maintenance=state, maintained_at=self.ctx.now())

    async def _poll(self, integration_id: str, integration: Integration | None = None, *,
                    turn_s: float | None = None) -> bool:
        """One poll; False when one of this integration is running already (or, with
        ``turn_s``, another replica took this interval's turn)."""
        try:
            await self.poller.poll(integration_id, integration, turn_s=turn_s)
        except PollBusy:
            return False
        except ProviderError as exc:
            log.warning("poll failed", integration_id=integration_id, error=str(exc))
        return True

    async def _poll_now(self, integration_id: str) -> bool:
        """A poll a listener woke: tracked like a scheduled one, so shutdown waits for it, and
        shielded, so a listener that stops meanwhile does not cut it short."""
        if self.ctx.stopping.is_set():
            return True
        return bool(await asyncio.shield(self._track(self._poll(integration_id), f"poll:{integration_id}")))

    # -- integrations ------------------------------------------------------------------------
    async def create_integration(
        self, *, platform: str, customer_id: str, name: str | None,
        credentials: dict[str, Any], settings: dict[str, Any] | None,
    ) -> Integration:
        try:
            connector_cls = self.ctx.connectors.connector_class(platform)
            credentials, settings = secrets_from_settings(connector_cls, dict(credentials), dict(settings or {}))
            given = set(credentials)
            # What syncd generates itself (webhook secret tokens, clientState) is added first,
            # so it is validated and stored like the rest.
            credentials, settings = connector_cls.prepare_credentials(credentials, settings)
            self.ctx.connectors.validate_credentials(platform, credentials)
        except UnknownPlatform:
            raise Invalid(
                "unknown_platform", f"unknown platform {platform!r}; supported: {', '.join(self.ctx.connectors.platforms())}",
            ) from None
        except ValidationError as exc:
            details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
            raise Invalid("invalid_credentials", f"credentials for {platform} are invalid", details) from None
        settings = settings or {}
        chats = settings.get("importChats")
        if chats is not None and (not isinstance(chats, list) or not all(isinstance(c, str) and c for c in chats)):
            raise Invalid("invalid_settings", "settings.importChats must be a list of chat ids")
        if "fullSyncEveryS" in settings and not valid_period(settings["fullSyncEveryS"]):
            raise Invalid("invalid_settings", "settings.fullSyncEveryS must be a number of seconds, 0 or more (0 = never)")
        integration = Integration(customer_id=customer_id, platform=platform, name=name or platform, settings=settings)
        identities, credentials = await self._identify(integration, credentials)
        await self.store.insert_integration(integration, credentials)
        for identity in identities:
            await self.store.upsert_user_platform(UserPlatform(
                customer_id=customer_id, platform=platform, integration_id=integration.id,
                external_user_id=identity.external_user_id, external_email=identity.external_email,
                display_name=identity.display_name, is_self=identity.is_self,
            ))
        await self.store.repoint_chats(customer_id, platform, integration.id)
        await self.importer.plan_initial(integration)
        self.importer.kick(integration.id)
        self.listeners.start(integration)
        if connector_cls.maintain_every_s is not None:
            self._track(self.maintain(integration.id), f"maintain:{integration.id}")
        log.info("integration created", integration_id=integration.id, platform=platform, customer_id=customer_id)
        generated = {k: v for k, v in credentials.items() if k not in given}
        integration.setup = connector_cls.setup(generated, self.ctx.settings.webhook_url(platform, integration.id))
        return integration

    async def _identify(self, integration: Integration,
                        credentials: dict[str, Any]) -> tuple[list[UserData], dict[str, Any]]:
        """Check ``credentials`` with the platform: the account's own identities, and the
        credentials to store (a check that refreshed a token hands back the rotated grant:
        storing the one it replaced would lose it where a provider revokes used tokens).

        ``Invalid`` when the platform rejects them (or the request they make), ``Unavailable``
        (``platform_unreachable``) at once when it cannot be reached: credentials that were
        never checked are not stored as working ones."""
        platform = integration.platform
        latest = credentials

        async def rotated(new: dict[str, Any]) -> None:
            nonlocal latest
            latest = new

        connector = self.ctx.connectors.build(integration, credentials, on_credentials=rotated, quick=True)
        try:
            return await connector.identify(), latest
        except AuthError as exc:
            raise Invalid("credentials_rejected", f"{platform} rejected the credentials: {exc}") from None
        except PermanentError as exc:
            raise Invalid("credentials_rejected", f"{platform} refused the credentials check: {exc}") from None
        except ProviderError as exc:
            log.warning("could not check credentials with the platform", platform=platform, error=str(exc))
            raise Unavailable("platform_unreachable",
                                   f"{platform} cannot be reached to check the credentials ({exc}); "
                                   "nothing was stored, try again") from None
        finally:
            await connector.close()

    async def get_integration(self, integration_id: str) -> Integration:
        integration = await self.store.get_integration(integration_id)
        if integration is None or integration.status == "deleted":
            raise NotFound("not_found", f"no integration {integration_id!r}")
        return integration

    async def delete_integration(self, integration_id: str, *, purge: bool = False) -> dict[str, Any]:
        """Stop its sync, undo at the platform what syncd set up there (retried in the background
        when the platform cannot be reached now), wipe its credentials; ``purge`` also removes
        its chats, messages, user mappings and sync status. What was done, and what is left."""
        integration = await self.get_integration(integration_id)
        await self.store.update_integration(integration_id, status="deleted")
        await self.importer.cancel(integration_id)
        await self.listeners.stop(integration_id)
        self.ctx.users.forget(integration_id)
        disconnect = await self.lifecycle.start_disconnect(integration)
        purged = await self.store.purge_integration(integration_id) if purge else None
        log.info("integration deleted", integration_id=integration_id, purge=purge, disconnect=disconnect.state)
        return {"disconnect": disconnect, "purged": purged}

    async def pause_integration(self, integration_id: str, reason: str | None = None) -> Integration:
        """Stop its polls, imports, full syncs and deliveries; webhooks and app events wait."""
        integration = await self.get_integration(integration_id)
        if integration.status not in ("active", "paused"):
            raise Conflict("integration_not_active",
                                   f"only an active integration can be paused; this one is {integration.status}")
        paused = await self.lifecycle.pause(integration, reason)
        await self.listeners.stop(integration_id)
        return paused

    async def resume_integration(self, integration_id: str) -> Integration:
        integration = await self.get_integration(integration_id)
        if integration.status not in ("active", "paused"):
            raise Conflict("integration_not_paused",
                                   f"only a paused integration can be resumed; this one is {integration.status}")
        if integration.status == "active":
            return integration
        updated = await self.lifecycle.resume(integration)
        self.inbox.worker.wake()
        self.outbox.events.wake()
        if await self.importer.has_work(integration_id):
            self.importer.kick(integration_id)
        cls = self.ctx.connectors.connector_class(integration.platform)
        if cls.maintain_every_s is not None:
            # Subscriptions may have lapsed while nothing was allowed to renew them.
            self._track(self.maintain(integration_id), f"maintain:{integration_id}")
        if cls.can_poll:
            self._track(self._poll(integration_id), f"poll:{integration_id}")
        self.listeners.start(updated)
        return updated

    async def full_sync(self, integration_id: str) -> None:
        """One scheduled look at whether the integration's periodic full sync is due."""
        await self.lifecycle.full_sync(integration_id)

    def full_sync_view(self, integration: Integration, top: SyncStatus | None) -> dict[str, Any]:
        """The integration's periodic full syncs for its status: how often, when next, and the
        current or last run with what it changed."""
        try:
            cls = self.ctx.connectors.connector_class(integration.platform)
        except UnknownPlatform:
            return {"everyS": None}
        run = top.full_sync if top else None
        return {
            "everyS": full_sync_period(cls, integration),
            "nextAt": top.next_full_sync_at.isoformat() if top and top.next_full_sync_at else None,
            "running": bool(run and run.finished_at is None),
            "last": run.model_dump(by_alias=True, mode="json") if run else None,
        }

    async def retry_disconnects(self) -> None:
        await self.lifecycle.retry_disconnects()

    async def update_credentials(self, integration_id: str, credentials: dict[str, Any]) -> Integration:
        """New credentials (e.g. after a failed refresh) bring an integration back to active."""
        integration = await self.get_integration(integration_id)
        connector_cls = self.ctx.connectors.connector_class(integration.platform)
        try:
            # Generated secrets (a webhook secret token, a clientState) are made as on create;
            # the maintenance run below registers them with the platform.
            credentials, _ = connector_cls.prepare_credentials(dict(credentials), dict(integration.settings))
            self.ctx.connectors.validate_credentials(integration.platform, credentials)
        except ValidationError as exc:
            details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
            raise Invalid("invalid_credentials", "credentials are invalid", details) from None
        # Checked first, so credentials the platform refuses never replace working ones.
        _, credentials = await self._identify(integration, credentials)
        await self.listeners.stop(integration_id)  # it runs on the old credentials
        await self.ctx.connectors.forget(integration_id)
        await self.store.set_credentials(integration_id, credentials)
        # Again: a worker that read the old credentials meanwhile may have cached a connector.
        await self.ctx.connectors.forget(integration_id)
        if integration.status == "paused":
            # New credentials do not end a pause: the resume (which an operator asks for) does.
            paused = await self.store.update_integration(integration_id, status="paused")
            if paused is None:
                raise NotFound("not_found", f"no integration {integration_id!r}")
            return paused
        updated = await self.store.update_integration(integration_id, status="active", status_reason=None)
        if updated is None:
            raise NotFound("not_found", f"no integration {integration_id!r}")
        self.importer.kick(integration_id)
        if connector_cls.maintain_every_s is not None:
            self._track(self.maintain(integration_id), f"maintain:{integration_id}")
        self.listeners.start(updated)
        return updated

    async def available_chats(self, integration_id: str) -> list[ChatData]:
        integration = await self._active(integration_id)
        connector = await connector_for(self.ctx, integration)
        try:
            return await connector.list_chats()
        except ProviderError as exc:
            raise Unavailable("platform_unavailable", f"listing chats failed: {exc}") from None

    async def import_chats(self, integration_id: str, external_chat_ids: list[str]) -> list[Chat]:
        integration = await self._active(integration_id)
        if not self.ctx.connectors.connector_class(integration.platform).has_history:
            # The platform cannot list chats nor read their past: selecting a chat means
            # syncing what arrives for it from now on.
            selected = [ChatData(external_chat_id=c) for c in external_chat_ids]
            return await self.importer.plan_chats(integration, selected)
        available = {c.external_chat_id: c for c in await self.available_chats(integration_id)}
        missing = [c for c in external_chat_ids if c not in available]
        if missing:
            raise NotFound("unknown_chat", f"the platform has no chats {missing} for this account")
        chats = await self.importer.plan_chats(integration, [available[c] for c in external_chat_ids])
        self.importer.kick(integration.id)
        return chats

    async def resync(self, integration_id: str, chat_ids: list[str] | None = None, full: bool = False) -> list[Chat]:
        integration = await self._active(integration_id)
        if not self.ctx.connectors.connector_class(integration.platform).has_history:
            raise Conflict(
                "no_history", f"{integration.platform} has no history API: there is nothing to re-read, and what "
                "webhooks delivered is kept as it is",
            )
        chats = [c for c in await self.store.list_chats(integration_id=integration_id) if c.imported]
        if chat_ids is not None:
            by_id = {c.id: c for c in await self.store.list_chats(integration_id=integration_id)}
            unknown = [c for c in chat_ids if c not in by_id]
            if unknown:
                raise NotFound("unknown_chat", f"no chats {unknown} in this integration")
            chats = [by_id[c] for c in chat_ids]
        planned = await self.importer.plan_chats(integration, [chat_data(c) for c in chats], full=full)
        self.importer.kick(integration.id)
        return planned

    async def _active(self, integration_id: str) -> Integration:
        integration = await self.get_integration(integration_id)
        if integration.status != "active":
            raise Conflict(
                "integration_not_active", f"integration is {integration.status}: {integration.status_reason or 'no reason recorded'}",
            )
        return integration

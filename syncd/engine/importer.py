"""Paged import of chat history, checkpointed after every stored page.

The work list is durable: each chat to import has a ``sync_status`` document (phase
``pending``/``importing``, its page ``cursor``). Whoever holds the integration's import lease
drains that list, so a crash, a restart or another replica resumes where the import stopped,
re-fetching at most the page that was in flight.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from typing import Any

import structlog

from syncd import metrics
from syncd.engine.context import EngineContext, connector_for
from syncd.engine.ingest import IngestResult, ingest, self_identities
from syncd.engine.lanes import IMPORT_CONCURRENCY, Lane, Lanes
from syncd.engine.leases import hold
from syncd.kit.connector import Connector
from syncd.kit.errors import AuthError, CursorExpired, ProviderError
from syncd.kit.http import background_lane
from syncd.mapping import MappingError
from syncd.models import Chat, FullSync, Integration, SyncStatus
from syncd.store import WriteResult
from syncd.universal import ChatData, HistoryPage, MessageData

log = structlog.get_logger(__name__)

ACTIVE_PHASES = ("pending", "importing", "error")
#: Rounds one drain makes over chats planned while it was importing.
MAX_ROUNDS = 3


def after_page(status: SyncStatus, page: HistoryPage, written: IngestResult | WriteResult) -> SyncStatus:
    """A copy of ``status`` once ``page`` is stored: its counts with what ``written`` did,
    and the cursor of the next page."""
    counts = status.counts.model_copy(update={
        "pages": status.counts.pages + 1,
        "fetched": status.counts.fetched + len(page.messages),
        "inserted": status.counts.inserted + written.inserted,
        "updated": status.counts.updated + written.updated,
        "unchanged": status.counts.unchanged + written.unchanged,
        "deleted": status.counts.deleted + written.deleted,
    })
    return status.model_copy(update={"counts": counts, "cursor": page.next_cursor})


def chat_data(chat: Chat) -> ChatData:
    return ChatData(
        external_chat_id=chat.external_chat_id, name=chat.name, kind=chat.kind,
        participants=chat.participants, last_message_at=chat.last_message_at,
    )


class Importer:
    def __init__(self, ctx: EngineContext):
        self.ctx = ctx
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._kicked_again: set[str] = set()

    # -- planning --------------------------------------------------------------------------
    async def plan_initial(self, integration: Integration) -> None:
        """Mark the integration for a first import of every readable (or selected) chat."""
        await self.ctx.store.save_sync_status(SyncStatus(integration_id=integration.id, phase="pending"))

    async def plan_chats(
        self, integration: Integration, chats: list[ChatData], *, full: bool = False, keep_existing: bool = False,
        background: bool = False,
    ) -> list[Chat]:
        """Queue ``chats`` for import (a resync when they were imported before).

        ``keep_existing`` leaves chats that already have an import status alone, so a
        resumed discovery keeps the page cursors of the chats it had already queued;
        ``background`` reads them in the HTTP client's background lane (a periodic full sync)."""
        planned = []
        for data in chats:
            chat = await self.ctx.store.upsert_chat(
                integration.customer_id, integration.id, integration.platform, data, imported=True
            )
            previous = await self.ctx.store.get_sync_status(integration.id, chat.id)
            if previous is not None and keep_existing:
                continue
            status = SyncStatus(
                integration_id=integration.id, chat_id=chat.id, external_chat_id=chat.external_chat_id,
                phase="pending", full=full, background=background, started_at=self.ctx.now(),
            )
            if previous is not None:
                status.id = previous.id
                if previous.background and previous.phase in ACTIVE_PHASES:
                    # Still one of a running full sync's chats, which re-reads it in full anyway:
                    # it stays one, so that run is counted to its end.
                    status.full = status.background = True
            await self.ctx.store.save_sync_status(status)
            planned.append(chat)
        return planned

    async def plan_full_sync(self, integration: Integration, next_at: Any) -> int | None:
        """Start a periodic full sync if it is still due (another replica may have started it):
        every imported chat not being imported right now is re-read in full, in the
        background lane. The number of chats planned, or None when it was not due."""
        statuses = {s.chat_id: s for s in await self.ctx.store.list_sync_status(integration.id)}
        chats = [c for c in await self.ctx.store.list_chats(integration_id=integration.id)
                 if c.imported and (c.id not in statuses or statuses[c.id].phase not in ACTIVE_PHASES)]
        now = self.ctx.now()
        run = FullSync(started_at=now, chats=len(chats), finished_at=None if chats else now)
        if not await self.ctx.store.claim_full_sync(integration.id, now, next_at, run):
            return None
        await self.plan_chats(integration, [chat_data(c) for c in chats], full=True, background=True)
        metrics.FULL_SYNCS.labels(integration.platform, "started").inc()
        log.info("full sync started", integration_id=integration.id, chats=len(chats))
        return len(chats)

    async def _full_sync_chat_done(self, integration: Integration, status: SyncStatus) -> None:
        counts = status.counts
        for change in ("inserted", "updated", "deleted"):
            if getattr(counts, change):
                metrics.FULL_SYNC_CHANGES.labels(integration.platform, change).inc(getattr(counts, change))
        run = await self.ctx.store.full_sync_chat_done(integration.id, counts, self.ctx.now())
        if run is not None and run.finished_at is not None:
            metrics.FULL_SYNCS.labels(integration.platform, "finished").inc()
            log.info("full sync finished", integration_id=integration.id, inserted=run.inserted,
                     updated=run.updated, deleted=run.deleted)

    async def halted(self, integration_id: str) -> bool:
        """Whether the integration's work must stop now: the engine is stopping, or it was
        paused or deleted meanwhile (on any replica: the store's read is cached for seconds)."""
        if self.ctx.stopping.is_set():
            return True
        integration = await self.ctx.store.get_integration(integration_id)
        return integration is None or integration.status != "active"

    # -- running ---------------------------------------------------------------------------
    def kick(self, integration_id: str) -> asyncio.Task[Any]:
        """Drain the integration's import work in the background (once per process). A kick
        while a drain runs makes it drain once more when it ends: work planned after its last
        look for pending chats would otherwise wait for the next restart."""
        task = self._tasks.get(integration_id)
        if task is None or task.done():
            task = asyncio.create_task(self._drain_until_quiet(integration_id), name=f"import:{integration_id}")
            self._tasks[integration_id] = task
        else:
            self._kicked_again.add(integration_id)
        return task

    async def _drain_until_quiet(self, integration_id: str) -> bool:
        while True:
            self._kicked_again.discard(integration_id)
            try:
                drained = await self.drain(integration_id)
            except Exception:
                # A bug, not a platform's answer (those end in a chat's status): logged now, not
                # when the task is collected at shutdown. The chats keep their checkpoints, and
                # the next reconcile resumes them.
                log.exception("import stopped by an unexpected error", integration_id=integration_id)
                return False
            if integration_id not in self._kicked_again or self.ctx.stopping.is_set():
                return drained

    def busy(self) -> list[str]:
        """The integrations being imported right now."""
        return sorted(i for i, t in self._tasks.items() if not t.done())

    async def wait(self) -> None:
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel(self, integration_id: str | None = None) -> None:
        """Cancel the running imports (of one integration, or all); each checkpoints its page
        and gives its lease back on the way out."""
        tasks = [t for i, t in self._tasks.items() if integration_id is None or i == integration_id]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def with_work(self) -> set[str]:
        """Every integration :meth:`has_work` is true for, in one store round-trip."""
        return await self.ctx.store.integrations_in_phases(ACTIVE_PHASES)

    async def has_work(self, integration_id: str) -> bool:
        return any(s.phase in ACTIVE_PHASES for s in await self.ctx.store.list_sync_status(integration_id))

    async def drain(self, integration_id: str) -> bool:
        """Run every pending import of the integration under its lease. False if another
        owner holds the lease (it will do the work) or the engine is stopping."""
        if self.ctx.stopping.is_set():
            return False
        async with hold(self.ctx, f"import:{integration_id}") as held:
            if not held:
                return False
            integration = await self.ctx.store.get_integration(integration_id)
            if integration is None or integration.status != "active":
                return False
            structlog.contextvars.bind_contextvars(integration_id=integration.id, platform=integration.platform)
            connector = await connector_for(self.ctx, integration)
            try:
                await self._discover(integration, connector)
                for _ in range(MAX_ROUNDS):
                    due = [s for s in await self.ctx.store.list_sync_status(integration_id)
                           if s.chat_id is not None and s.phase in ACTIVE_PHASES]
                    await self._import_chats(integration, connector, due)
                    if await self.halted(integration_id):
                        return False
                    # Chats planned while this round ran (a resync, more chats imported, a chat
                    # re-planned mid-import) get another round now, not at the next resume.
                    statuses = await self.ctx.store.list_sync_status(integration_id)
                    if not any(s.chat_id is not None and s.phase == "pending" for s in statuses):
                        break
            except AuthError as exc:
                await self.ctx.store.update_integration(integration.id, status="error", status_reason=str(exc))
                log.warning("import stopped: credentials rejected", error=str(exc))
                return False
            return not self.ctx.stopping.is_set()

    async def _import_chats(self, integration: Integration, connector: Connector, due: list[SyncStatus]) -> None:
        """Import ``due`` chats, several at a time (``Lanes``: as many as the platform's
        declared rate limit takes); the first failure that stops the whole import (credentials
        rejected) stops the others too, each of which checkpoints its page on the way out."""
        queue = collections.deque(due)

        async def one_by_one(lane: Lane, first: bool) -> None:
            if not first:
                await lanes.warmed.wait()
            try:
                # The queue is looked at after the halt check, not before: that check reads the
                # store, and another lane may take the last chat meanwhile.
                while queue and not await self.halted(integration.id) and queue:
                    await self._import_chat(integration, connector, queue.popleft(), lane)
            finally:
                lanes.warmed.set()

        fixed = getattr(connector, "import_concurrency", None)
        limit = connector.rate_limit
        reads = limit.reads_per_s() if limit is not None and fixed is None else None
        if len(due) <= 1:
            lanes = Lanes(1, None)
            await one_by_one(lanes.lane(), True)
            return
        try:
            async with asyncio.TaskGroup() as group:
                lanes = Lanes(min(len(due), fixed or IMPORT_CONCURRENCY), reads,
                              open_lane=lambda: group.create_task(one_by_one(lanes.lane(), lanes.opened == 1)),
                              more=lambda: bool(queue))
                for _ in range(lanes.base):
                    lanes.open()
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _discover(self, integration: Integration, connector: Connector) -> None:
        """First import: set the poll mark, list chats, queue each; resumable until done."""
        top = await self.ctx.store.get_sync_status(integration.id)
        if top is None or top.phase not in ACTIVE_PHASES:
            return
        update = self.ctx.store.update_sync_status
        await update(integration.id, None, phase="importing", started_at=top.started_at or self.ctx.now())
        try:
            if top.high_watermark is None and connector.can_poll:
                # Taken before reading history, so nothing that happens during the import
                # is missed by the first poll.
                mark = (await connector.poll(None, [], 0)).state
                await update(integration.id, None, high_watermark=mark)
            chats = await connector.list_chats()
            # Before any history page: imported messages that carry only a sender id get names.
            await self.ctx.users.refresh(self.ctx, integration, connector)
            wanted = integration.settings.get("importChats")
            if wanted is not None:
                chats = [c for c in chats if c.external_chat_id in set(wanted)]
            await self.plan_chats(integration, chats, keep_existing=True)
            await update(integration.id, None, phase="done", finished_at=self.ctx.now(), last_error=None)
        except (ProviderError, MappingError) as exc:
            if isinstance(exc, AuthError):
                raise
            await update(integration.id, None, phase="error", last_error=str(exc))
            log.warning("chat listing failed", error=str(exc))

    async def _save(self, status: SyncStatus) -> bool:
        """Checkpoint ``status``, unless its chat was re-planned since this run loaded it
        (``plan_chats`` stamps every plan with a new ``started_at``); False then."""
        status.updated_at = self.ctx.now()
        return await self.ctx.store.checkpoint_sync_status(status)

    def _checkpoint(self, status: SyncStatus, page: HistoryPage, written: WriteResult) -> SyncStatus:
        """The checkpoint of ``page``, given to the store to write with the page's messages."""
        checkpoint = after_page(status, page, written)
        checkpoint.updated_at = self.ctx.now()
        return checkpoint

    async def _import_chat(self, integration: Integration, connector: Connector, status: SyncStatus,
                           lane: Lane | None = None) -> None:
        """Import one chat from its checkpoint; stops when a newer plan supersedes this run."""
        chat = await self.ctx.store.get_chat(status.chat_id) if status.chat_id is not None else None
        if chat is None:
            status.phase, status.last_error = "cancelled", "chat was deleted"
            await self._save(status)
            return
        log_ = log.bind(chat_id=chat.id, external_chat_id=chat.external_chat_id)
        if not connector.has_history:
            # No past to read (and nothing may be judged "gone" from an empty history): the
            # chat is synced from what arrives from now on.
            status.phase, status.full, status.finished_at = "done", False, self.ctx.now()
            await self._save(status)
            return
        # A full resync compares everything it read with what is stored, so it always
        # starts from the first page.
        seen: set[str] | None = set() if status.full else None
        cursor = None if status.full else status.cursor
        status.phase, status.last_error = "importing", None
        known = {chat.external_chat_id: chat}
        superseded = False
        # Read once per chat, not once per page.
        identities = await self_identities(self.ctx, integration)
        # A first import reads pages nobody stored yet: their messages are written without
        # being read first. A page that turns out to be known (a resync) ends the guessing.
        guess_new = seen is None
        background = background_lane if status.background else contextlib.nullcontext
        try:
            while True:
                # A pause (or delete) lets the page in hand finish, then stops at its checkpoint.
                if await self.halted(integration.id):
                    return
                if lane is not None:
                    lane.reading()
                with metrics.IMPORT_PAGE_SECONDS.labels(integration.platform).time(), background():
                    page = await connector.fetch_history_page(chat_data(chat), cursor)
                # A page with more to come is checkpointed; the store writes the checkpoint with
                # the page's messages where it can (one round-trip), else it is saved below.
                # The last page's status is saved on the way out.
                checkpoint = None if page.next_cursor is None else functools.partial(self._checkpoint, status, page)
                result = await ingest(self.ctx, integration, page.messages, source="import", known_chats=known,
                                      guess_new=guess_new, identities=identities, checkpoint=checkpoint)
                guess_new = guess_new and result.unchanged + result.updated == 0
                # The chat as this page left it (its lastMessageAt), so older pages leave it alone.
                known.update(result.chats)
                if lane is not None:
                    lane.read()
                if seen is not None:
                    seen.update(m.external_message_id for m in page.messages if m.deleted_at is None)
                status = after_page(status, page, result)
                cursor = status.cursor
                if cursor is None:
                    break
                saved = result.checkpointed
                if saved is None:
                    saved = await self._save(status)
                if not saved:
                    superseded = True
                    return
            if seen is not None:
                gone = await self.ctx.store.live_external_ids(chat.id) - seen
                if gone:
                    # Tombstones go through the one ingest path, so the app hears of them.
                    now = self.ctx.now()
                    tombstones = [
                        MessageData(external_chat_id=chat.external_chat_id, external_message_id=ext, deleted_at=now)
                        for ext in sorted(gone)
                    ]
                    result = await ingest(self.ctx, integration, tombstones, source="resync", known_chats=known)
                    status.counts.deleted += result.deleted
            status.phase, status.finished_at, status.full = "done", self.ctx.now(), False
            await self.ctx.store.upsert_chat(
                integration.customer_id, integration.id, integration.platform,
                chat_data(chat), imported=True,
            )
            if status.background:
                status.background = False
                await self._full_sync_chat_done(integration, status)
            log_.info("chat imported", pages=status.counts.pages, messages=status.counts.fetched)
        except CursorExpired as exc:
            status.phase, status.cursor, status.last_error = "pending", None, str(exc)
        except AuthError:
            status.phase, status.last_error = "error", "credentials rejected"
            raise
        except (ProviderError, MappingError) as exc:
            status.phase, status.last_error = "error", str(exc)
            log_.warning("chat import failed; will retry", error=str(exc))
        finally:
            if not superseded:
                await self._save(status)

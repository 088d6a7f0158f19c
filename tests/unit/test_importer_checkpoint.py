"""An import on a MongoDB 8.0 server, where each page's checkpoint travels with its messages
(the benchmarks' counting double plays the server): a crash between or inside pages still
resumes with nothing lost or duplicated, and a run replaced by a newer plan stops without
touching the newer plan's status."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet

from bench.faults.harness import (
    Wire,
    create_slack,
    dies_in,
    imported,
    mortal,
    seed_channel,
    slack_pages,
    survivor_finishes_import,
    wait_for,
)
from bench.faults.harness import testbed as faults_testbed
from bench.faults.report import tally_slack
from bench.mongo_double import Client
from syncd.engine import importer as importer_module
from syncd.engine.importer import chat_data
from syncd.providers.slack.connector import SlackConnector
from syncd.store import Store

PAGE = 4
MESSAGES = 11  # 3 pages


def server8_store() -> Store:
    client = Client()
    return Store(client, client["syncd"], Fernet(Fernet.generate_key()))


def history_requests(wire: Wire) -> list[tuple[str | None, str | None]]:
    return [(s.params.get("channel"), s.params.get("cursor")) for s in wire.calls("slack", "conversations.history")]


@pytest.mark.parametrize("cut", ["before page 2 is stored", "after page 2 is stored", "inside page 2's write"])
async def test_a_crash_between_or_inside_pages_resumes_with_nothing_lost_or_duplicated(cut: str) -> None:
    with slack_pages(PAGE):
        async with faults_testbed(store=server8_store()) as (tb, wire):
            seed_channel(tb.slack, "general", MESSAGES)
            victim = await mortal(tb)
            client = tb.daemon.store.client
            pages = {"n": 0}

            def second_page(args: tuple, kwargs: dict) -> bool:
                if kwargs.get("source") != "import":
                    return False
                pages["n"] += 1
                return pages["n"] == 2

            real_bulk_write = client.bulk_write
            writes = {"n": 0}

            async def dies_halfway(models, **options):
                writes["n"] += 1
                if cut == "inside page 2's write" and writes["n"] == 2:
                    # The server applied the first two inserts, then the process died: no checkpoint.
                    await real_bulk_write(models[:2], **options)
                    victim.die_here()
                return await real_bulk_write(models, **options)

            client.bulk_write = dies_halfway
            before = second_page if cut == "before page 2 is stored" else None
            after = second_page if cut == "after page 2 is stored" else None
            with dies_in(importer_module, "ingest", victim, before=before, after=after):
                integration = await create_slack(victim.api, tb)
                await wait_for(lambda: victim.dead, what=f"the crash {cut}")
                await asyncio.sleep(0)
            # Page 1 and its checkpoint went in one write; then page 2's, unless the crash came first.
            assert writes["n"] == (1 if cut == "before page 2 is stored" else 2)

            await survivor_finishes_import(tb, integration["id"])

            tally = await tally_slack(tb.api, integration["id"], tb.slack)
            found = (tally.expected, tally.stored, tally.lost, tally.duplicated, tally.wrong)
            assert found == (MESSAGES, MESSAGES, 0, 0, 0)
            requests = history_requests(wire)
            refetched = len(requests) - len(set(requests))
            assert refetched == (0 if cut == "after page 2 is stored" else 1)
            chat = next(s for s in await tb.daemon.store.list_sync_status(integration["id"]) if s.chat_id)
            counts = chat.counts
            assert (counts.pages, counts.fetched, counts.inserted + counts.unchanged) == (3, MESSAGES, MESSAGES)


async def test_a_run_replaced_by_a_newer_plan_stops_and_leaves_the_newer_status_alone(monkeypatch) -> None:
    with slack_pages(PAGE):
        async with faults_testbed(store=server8_store(), run=True) as (tb, wire):
            channel = seed_channel(tb.slack, "general", MESSAGES)
            real_fetch = SlackConnector.fetch_history_page
            replanned_at = []

            async def replanned_during_page_2(self, chat, cursor):
                page = await real_fetch(self, chat, cursor)
                if len(history_requests(wire)) == 2 and not replanned_at:
                    # A resync of the chat arrives while page 2 is in hand: a newer plan.
                    tb.clock.advance(1)
                    integration = (await tb.daemon.store.list_integrations())[0]
                    stored = await tb.daemon.store.find_chat("cust-1", "slack", channel)
                    await tb.engine.importer.plan_chats(integration, [chat_data(stored)])
                    replanned_at.append((await tb.daemon.store.get_sync_status(integration.id, stored.id)).started_at)
                return page

            monkeypatch.setattr(SlackConnector, "fetch_history_page", replanned_during_page_2)
            integration = await create_slack(tb.api, tb)
            await tb.engine.importer.wait()
            await wait_for(lambda: imported(tb.daemon.store, integration["id"]), what="the import to finish")

            status = next(s for s in await tb.daemon.store.list_sync_status(integration["id"]) if s.chat_id)
            # The old run stored page 2's messages, its checkpoint was refused, and it stopped;
            # the newer plan started over from the first page and is the status that remains.
            assert status.started_at == replanned_at[0]
            # Pages 1 and 2 of the old run went with their checkpoints (page 2's refused), and the
            # newer run's first page tried to, until its first insert met a stored message.
            assert tb.daemon.store.client.calls[("client", "bulk_write")] == 3
            assert len(history_requests(wire)) == 2 + 3
            assert (status.counts.pages, status.counts.fetched) == (3, MESSAGES)
            assert (status.counts.inserted, status.counts.unchanged) == (MESSAGES - 2 * PAGE, 2 * PAGE)
            tally = await tally_slack(tb.api, integration["id"], tb.slack)
            assert (tally.stored, tally.lost, tally.duplicated, tally.wrong) == (MESSAGES, 0, 0, 0)

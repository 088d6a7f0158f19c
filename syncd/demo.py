"""``syncd demo``: the whole two-way sync against the built-in simulators, in memory.

It seeds a Slack workspace and a Gmail mailbox, creates both integrations through the HTTP
API, imports with a progress line, then plays live traffic both ways (new messages delivered
twice, edits, deletes, app events exported, echoes racing the send reply) and checks every
stored chat against the simulators' own state. The exit code is 1 if anything disagrees.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from syncd import metrics
from syncd.logs import configure_logging
from syncd.sim.slack import us_to_ts
from syncd.testbed import Testbed


@dataclass
class Tally:
    """What the demo did to one platform (expected) and what syncd stored (observed)."""

    imported: list[int] = field(default_factory=lambda: [0, 0])
    exported: list[int] = field(default_factory=lambda: [0, 0])
    updated: list[int] = field(default_factory=lambda: [0, 0])
    deleted: list[int] = field(default_factory=lambda: [0, 0])
    duplicates: list[int] = field(default_factory=lambda: [0, 0])
    problems: list[str] = field(default_factory=list)


def _say(text: str) -> None:
    print(text, flush=True)


def _progress(label: str, done: int, total: int, messages: int) -> None:
    sys.stdout.write(f"\r  {label:<6} {done}/{total} chats imported, {messages} messages")
    sys.stdout.flush()


def _seed_slack(tb: Testbed, n: int, rng: random.Random) -> dict[str, str]:
    sim = tb.slack
    ids = sim.seed_workspace()
    people = [ids["alice"], ids["bob"], ids["carol"]]
    channels = [ids["general"], sim.add_channel("support"), sim.add_channel("engineering")]
    ids["support"], ids["engineering"] = channels[1], channels[2]
    base = int(time.time()) - 86_400
    for i in range(max(0, n - len(sim.messages[ids["general"]]) - 4)):
        channel = channels[i % len(channels)]
        sim.add_message(channel, f"history message {i}", rng.choice(people),
                        ts=us_to_ts((base + i * 7) * 1_000_000 + i))
    return ids


def _seed_gmail(tb: Testbed, n: int) -> list[str]:
    sim = tb.gmail
    threads = []
    senders = ["Guilherme Dias <email@domain.com>", "Ana Lima <ana@example.org>", "Billing <billing@vendor.test>"]
    for t in range(max(1, n // 10)):
        thread = None
        for i in range(10):
            if t * 10 + i >= n:
                break
            message_id = sim.add_incoming(thread, senders[(t + i) % 3], f"Order #{1000 + t}",
                                          f"Message {i} about order {1000 + t}",
                                          html=f"<p>Message {i} about order <b>{1000 + t}</b></p>")
            thread = thread or next(m.thread_id for m in sim._box(None).messages.values() if m.id == message_id)
        threads.append(thread)
    return threads


async def _import(tb: Testbed, platform: str, create) -> dict[str, Any]:
    integration = await create(wait=False)
    while True:
        statuses = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
        chats = [s for s in statuses if s.get("chatId")]
        done = sum(1 for s in chats if s["phase"] == "done")
        _progress(platform, done, len(chats), sum(s["counts"]["fetched"] for s in chats))
        if statuses and not any(s["phase"] in ("pending", "importing") for s in statuses):
            sys.stdout.write("\n")
            return integration
        await asyncio.sleep(0.05)


def _counter(metric: Any, **labels: str) -> float:
    return metric.labels(**labels)._value.get()


async def _slack_live(tb: Testbed, integration: dict[str, Any], ids: dict[str, str], tally: Tally) -> None:
    sim = tb.slack
    general, support = ids["general"], ids["support"]
    # New messages, each delivered twice (Slack retries an unacknowledged delivery).
    posted = []
    for i in range(10):
        delivery = sim.post_user_message(support, f"live question {i}", ids["bob"])
        posted.append(delivery)
        assert (await tb.deliver_slack(integration, delivery)).status_code == 200
        assert (await tb.deliver_slack(integration, sim.retry(delivery))).status_code == 200
        tally.duplicates[0] += 1
    # Edits and deletes of history and live messages.
    for delivery in posted[:3]:
        await tb.deliver_slack(integration, sim.edit_message(support, delivery.payload["event"]["ts"], "edited!"))
        tally.updated[0] += 1
    for delivery in posted[3:5]:
        await tb.deliver_slack(integration, sim.delete_message(support, delivery.payload["event"]["ts"]))
        tally.deleted[0] += 1
    # App events: half the echoes arrive before the send reply, half after.
    early: list[Any] = []

    async def echo_before_reply(delivery: Any) -> None:
        if len(early) % 2 == 0:
            await tb.deliver_slack(integration, delivery)
        early.append(delivery)

    sim.on_echo = echo_before_reply
    for i in range(6):
        event = {"id": f"evt-slack-{i}", "type": "message.created", "customerId": "cust-1", "platform": "slack",
                 "externalChatId": general, "message": {"id": f"app-msg-{i}", "text": f"reply from the app {i}"}}
        response = await tb.post_event(event)
        assert response.status_code == 202, response.text
        tally.exported[0] += 1
    again = await tb.post_event({"id": "evt-slack-0", "type": "message.created", "customerId": "cust-1",
                                 "platform": "slack", "externalChatId": general,
                                 "message": {"id": "app-msg-0", "text": "reply from the app 0"}})
    assert again.status_code == 202
    await tb.settle()
    await tb.post_event({"id": "evt-slack-edit", "type": "message.updated", "customerId": "cust-1",
                         "platform": "slack", "message": {"id": "app-msg-1", "text": "reply, corrected"}})
    await tb.post_event({"id": "evt-slack-del", "type": "message.deleted", "customerId": "cust-1",
                         "platform": "slack", "message": {"id": "app-msg-2"}})
    tally.updated[0] += 1
    tally.deleted[0] += 1
    await tb.settle()
    sim.on_echo = None
    for i, delivery in enumerate(early):
        if i % 2 == 1:
            await tb.deliver_slack(integration, delivery)
    await tb.settle()


async def _gmail_live(tb: Testbed, integration: dict[str, Any], threads: list[str], tally: Tally) -> None:
    sim = tb.gmail
    for i in range(6):
        thread = threads[i % len(threads)]
        subject = "Re: " + sim.truth(thread)[0]["subject"]
        sim.add_incoming(thread, "Ana Lima <ana@example.org>", subject, f"live email {i}")
        sim.add_incoming(None, "New Customer <new@customer.test>", f"Question {i}", f"Hello, question {i}")
        body, headers = sim.push_notification()
        url = f"{tb.webhook_url(integration)}?token=testbed-push-token"
        assert (await tb.api.post(url, content=body, headers=headers)).status_code == 200
        assert (await tb.api.post(url, content=body, headers=headers)).status_code == 200  # redelivered
        tally.duplicates[0] += 1
    await tb.settle()
    trashed = sim.truth(threads[0])[0]["id"]
    sim.trash(trashed)
    await tb.push_gmail(integration)
    tally.deleted[0] += 1
    chats = await tb.chats(integration)
    for i in range(4):
        event = {"id": f"evt-gmail-{i}", "type": "message.created", "customerId": "cust-1", "platform": "gmail",
                 "chatId": chats[threads[i % len(threads)]]["id"],
                 "message": {"id": f"app-mail-{i}", "text": f"Thanks, we are on it ({i})"}}
        assert (await tb.post_event(event)).status_code == 202
        tally.exported[0] += 1
    await tb.settle()
    await tb.push_gmail(integration)  # the sent mails come back through history as echoes
    await tb.settle()


async def _check_slack(tb: Testbed, integration: dict[str, Any], tally: Tally) -> None:
    chats = await tb.chats(integration)
    sim = tb.slack
    for channel, truth in ((c, sim.truth(c)) for c in sim.channels):
        chat = chats.get(channel)
        if chat is None:
            tally.problems.append(f"slack: channel {channel} was not imported")
            continue
        stored = {m["externalMessageId"]: m for m in await tb.messages(chat["id"])}
        expected = {f"{channel}:{m['ts']}": m for m in truth}
        for key, m in expected.items():
            got = stored.get(key)
            if got is None:
                if not m["deleted"]:
                    tally.problems.append(f"slack: {key} missing")
                continue
            if m["deleted"] != (got["deletedAt"] is not None):
                tally.problems.append(f"slack: {key} deleted={m['deleted']} but stored deletedAt={got['deletedAt']}")
            elif not m["deleted"] and got["text"] != m["text"]:
                tally.problems.append(f"slack: {key} text {got['text']!r} != {m['text']!r}")
        extra = set(stored) - set(expected)
        if extra:
            tally.problems.append(f"slack: {len(extra)} stored messages the workspace does not have")


async def _check_gmail(tb: Testbed, integration: dict[str, Any], tally: Tally) -> None:
    chats = await tb.chats(integration)
    box = tb.gmail._box(None)
    for thread_id in box.threads:
        chat = chats.get(thread_id)
        if chat is None:
            tally.problems.append(f"gmail: thread {thread_id} was not imported")
            continue
        stored = {m["externalMessageId"]: m for m in await tb.messages(chat["id"])}
        truth = {m["id"]: m for m in tb.gmail.truth(thread_id)}
        for key, m in truth.items():
            got = stored.get(key)
            if got is None:
                tally.problems.append(f"gmail: {key} missing")
            elif m["trashed"] != (got["deletedAt"] is not None):
                tally.problems.append(f"gmail: {key} trashed={m['trashed']} but deletedAt={got['deletedAt']}")
            elif (got["text"] or "").strip() != (m["text"] or "").strip():
                tally.problems.append(f"gmail: {key} text differs")
        if set(stored) - set(truth):
            tally.problems.append(f"gmail: thread {thread_id} has stored messages the mailbox does not have")


async def _observed(tb: Testbed, platform: str, integration: dict[str, Any], t: Tally, sent_by_app: int) -> None:
    statuses = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
    t.imported[1] = sum(s["counts"]["inserted"] for s in statuses if s.get("chatId"))
    store = tb.daemon.store
    messages = [m for c in await store.list_chats(integration_id=integration["id"])
                for m in (await store.list_messages(c.id, limit=10_000))[0]]
    t.updated[1] = sum(1 for m in messages if m.edited_at is not None)
    t.deleted[1] = sum(1 for m in messages if m.deleted_at is not None)
    t.duplicates[1] = int(_counter(metrics.WEBHOOKS, platform=platform, outcome="duplicate"))
    t.exported[1] = sent_by_app


async def run_demo(messages: int = 300, verbose: bool = False) -> int:
    configure_logging("INFO" if verbose else "ERROR", "console")
    if not verbose:
        logging.getLogger().setLevel(logging.ERROR)
    started = time.monotonic()
    rng = random.Random(7)
    tb = await Testbed.start()
    try:
        _say("syncd demo: Slack and Gmail simulators, in-memory store (SYNCD_MONGODB_URI=mongomock://)")
        ids = _seed_slack(tb, messages // 2, rng)
        threads = _seed_gmail(tb, messages - messages // 2)
        seeded_slack = sum(len(v) for v in tb.slack.messages.values())
        seeded_gmail = len(tb.gmail._box(None).messages)
        _say(f"seeded {seeded_slack} Slack messages in {len(tb.slack.channels)} conversations and "
             f"{seeded_gmail} emails in {len(threads)} Gmail threads")
        _say("importing through the API:")
        slack = await _import(tb, "slack", tb.create_slack)
        gmail = await _import(tb, "gmail", tb.create_gmail)
        tallies = {"slack": Tally(), "gmail": Tally()}
        tallies["slack"].imported[0], tallies["gmail"].imported[0] = seeded_slack, seeded_gmail
        _say("playing live traffic both ways (webhooks, duplicates, edits, deletes, app events, echoes)...")
        await _slack_live(tb, slack, ids, tallies["slack"])
        await _gmail_live(tb, gmail, threads, tallies["gmail"])
        await tb.settle()

        s, g = tallies["slack"], tallies["gmail"]
        s_expected = {"exported": s.exported[0], "updated": s.updated[0], "deleted": s.deleted[0], "duplicates": s.duplicates[0]}
        g_expected = {"exported": g.exported[0], "updated": g.updated[0], "deleted": g.deleted[0], "duplicates": g.duplicates[0]}
        await _check_slack(tb, slack, s)
        await _check_gmail(tb, gmail, g)
        bot_posts = sum(1 for c in tb.slack.channels for m in tb.slack.truth(c) if m["user"] == tb.slack.bot_user_id)
        sent_mail = sum(1 for m in tb.gmail._box(None).messages.values() if "SENT" in m.labels)
        s.exported[0], g.exported[0] = s_expected["exported"], g_expected["exported"]
        s.updated[0], s.deleted[0], s.duplicates[0] = s_expected["updated"], s_expected["deleted"], s_expected["duplicates"]
        g.updated[0], g.deleted[0], g.duplicates[0] = g_expected["updated"], g_expected["deleted"], g_expected["duplicates"]
        await _observed(tb, "slack", slack, s, bot_posts)
        await _observed(tb, "gmail", gmail, g, sent_mail)

        dead = (await tb.daemon.store.outbox_counts()).get("dead", 0)
        failed = (await tb.daemon.store.inbox_counts()).get("failed", 0)
        ok = _table(tallies) and dead == 0 and failed == 0
        if dead or failed:
            _say(f"  dead-lettered events: {dead}, failed webhook deliveries: {failed}")
        _say(f"app callbacks received: {len(tb.app.received)} (signature checked; {tb.app.rejected} rejected)")
        _say(f"finished in {time.monotonic() - started:.1f}s: " + ("everything matches" if ok else "MISMATCH"))
        return 0 if ok else 1
    finally:
        await tb.stop()


def _table(tallies: dict[str, Tally]) -> bool:
    columns = ("imported", "exported", "updated", "deleted", "duplicates")
    header = f"{'platform':<9}" + "".join(f"{c + ' (exp/got)':>24}" for c in columns) + "  check"
    _say(header)
    ok = True
    for platform, t in tallies.items():
        cells, row_ok = [], not t.problems
        for c in columns:
            expected, got = getattr(t, c)
            row_ok &= expected == got
            cells.append(f"{expected}/{got}".rjust(24))
        ok &= row_ok
        _say(f"{platform:<9}" + "".join(cells) + ("  ok" if row_ok else "  MISMATCH"))
        for problem in t.problems[:10]:
            _say(f"    - {problem}")
    _say("(duplicates = redelivered webhooks suppressed; each cell is what the demo did / what syncd stored)")
    return ok

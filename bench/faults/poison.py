"""Scenario 7: poison input.

Among real Slack deliveries come payloads the mapping cannot handle (a message without its
``ts``, a ``ts`` that is not a timestamp, a text that is not a string), and among the app's
events one Slack refuses. Each poison item is kept with its error and retried with backoff,
then parked; none of them holds up the items behind it; the parked ones show in
``GET /integrations/{id}/status`` (``failedDeliveries``) and in ``/metrics``
(``syncd_inbox_failed``).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from typing import Any

from bench.faults.harness import (
    app_event,
    create_slack,
    deliver_slack,
    imported,
    post_event,
    seed_channel,
    settle,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import Row, compare_exports, tally_slack
from syncd.providers.slack.sim import SlackDelivery, SlackSimulator

NAME = "7 poison input"
MAX_ATTEMPTS = 4


def _spoil(event: dict[str, Any], n: int) -> None:
    if n % 3 == 0:
        del event["ts"]
    elif n % 3 == 1:
        event["ts"] = "not-a-ts"
    else:
        event["text"] = {"blocks": "a text that is not a string"}


def poison(sim: SlackSimulator, good: SlackDelivery, n: int) -> SlackDelivery:
    """A real delivery with its message spoiled, its own event id, signed as Slack signs."""
    payload = copy.deepcopy(good.payload)
    payload["event_id"] = f"Ev0POISON{n:04d}"
    _spoil(payload["event"], n)
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(sim.signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return SlackDelivery(payload, body, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
                                         "X-Slack-Signature": "v0=" + digest.hexdigest()})


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` good deliveries with a poison one before every fifth (at most 20: the status
    lists 20 failed deliveries); ``size`` app events with one Slack refuses before every tenth."""
    row = Row(NAME, runs=1)
    async with testbed(seed, run=True, inbox_max_attempts=MAX_ATTEMPTS, outbox_max_attempts=MAX_ATTEMPTS,
                       retry_base_s=0.3, retry_max_s=1.0) as (tb, wire):
        api, store = tb.api, tb.daemon.store
        channel = seed_channel(tb.slack, "poisoned", 3)
        integration = await create_slack(api, tb)
        await wait_for(lambda: imported(store, integration["id"]), what="the import")
        users = [tb.slack.ids["alice"], tb.slack.ids["bob"]]

        poisons: list[SlackDelivery] = []
        for i in range(size):
            good = tb.slack.post_user_message(channel, f"healthy {i}", users[i % 2])
            if i % 5 == 0:
                poisons.append(poison(tb.slack, good, i))
                await deliver_slack(api, tb, integration, poisons[-1])
            await deliver_slack(api, tb, integration, good)
        texts, refused = [], []
        for i in range(size):
            if i % 10 == 0:
                # A reply into a thread Slack does not have: refused with invalid_thread_ts.
                refused.append(app_event(f"bad{i}", "created", "slack", channel, f"reply to nothing {i}"))
                refused[-1]["message"]["externalThreadId"] = f"{channel}:1000000000.000001"
                await post_event(api, refused[-1])
            texts.append(f"exported {i}")
            await post_event(api, app_event(i, "created", "slack", channel, texts[-1]))

        # Everything behind the poison is done while the poison still waits for its retry.
        async def healthy_done() -> bool:
            counts = await store.inbox_counts(integration["id"])
            return counts["done"] == size
        await wait_for(healthy_done, what="the healthy deliveries")
        waiting = [await store.inbox.find_one({"deliveryId": p.event_id}) for p in poisons]
        row.fact("poison_waiting_behind_healthy", sum(1 for w in waiting if w["status"] == "pending"))
        row.expect(all(w["status"] == "pending" and w["error"] for w in waiting),
                   "a poison delivery was not kept for a retry with its error")
        await settle(store, tb.daemon)

        row.tally = await tally_slack(api, integration["id"], tb.slack, [channel])
        bot = [m["text"] for m in tb.slack.truth(channel) if m["user"] == tb.slack.bot_user_id]
        row.tally.add(compare_exports(texts, bot))

        status = (await api.get(f"/integrations/{integration['id']}/status")).json()
        failed = {f["deliveryId"]: f for f in status["failedDeliveries"]}
        row.fact("poison_in_status", sum(1 for p in poisons if p.event_id in failed))
        row.expect(all(p.event_id in failed and failed[p.event_id]["attempts"] == MAX_ATTEMPTS
                       and "MappingError" in (failed[p.event_id]["error"] or "") for p in poisons),
                   f"status failedDeliveries: {list(failed.values())[:2]}")
        gauge = _metric((await api.get("/metrics")).text, "syncd_inbox_failed")
        row.fact("syncd_inbox_failed", int(gauge or 0))
        row.expect(gauge == len(poisons), f"syncd_inbox_failed is {gauge}, {len(poisons)} poison deliveries")
        for event in refused:
            answer = (await post_event(api, event)).json()
            row.expect(answer.get("status") == "dead" and "invalid_thread_ts" in answer.get("error", ""),
                       f"refused event answered {answer}")
        row.fact("refused_events_dead", len(refused))
    return row

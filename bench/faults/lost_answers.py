"""Scenario 10: the platform posts the message and the answer is lost.

The app exports messages to Slack (channel posts and thread replies) and to Gmail (replies);
the wire lets each send through and loses the answer of about half of them, as a read
timeout or a connection dropped after the request went out does. syncd must not post those
a second time: the outbox retry looks for the first attempt at the platform (Slack by the
message metadata it attached, Gmail by the RFC Message-ID) and records what it finds. Every
app message must end posted once and stored once, with the platform's id.
"""

from __future__ import annotations

import random

from bench.faults.harness import (
    Seen,
    app_event,
    create_gmail,
    create_slack,
    imported,
    post_event,
    seed_channel,
    seed_mailbox,
    settle,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import Row, compare_exports, stored_chats, stored_messages, tally_gmail, tally_slack

NAME = "10 lost send answers"
#: The share of sends whose answer is lost.
LOST = 0.5


def _send(seen: Seen) -> bool:
    return seen.method == "POST" and seen.endpoint in ("chat.postMessage", "/messages/send")


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` app messages to each platform; a thread reply every third on Slack."""
    row = Row(NAME, runs=1)
    rng = random.Random(seed)
    async with testbed(seed, run=True) as (tb, wire):
        api, store = tb.api, tb.daemon.store
        channels = [seed_channel(tb.slack, "lost-a", 3, thread_replies=1),
                    seed_channel(tb.slack, "lost-b", 3, start=1_700_100_000)]
        threads = seed_mailbox(tb.gmail, 2, 2)
        slack, gmail = await create_slack(api, tb), await create_gmail(api, tb)
        for integration in (slack, gmail):
            await wait_for(lambda i=integration: imported(store, i["id"]), what="the import")
        parents = {c: tb.slack.truth(c)[0]["ts"] for c in channels}
        loss = wire.lose_answers(_send, probability=LOST)

        slack_texts, gmail_texts = [], []
        for i in range(size):
            channel = channels[rng.randrange(2)]
            event = app_event(f"s{i}", "created", "slack", channel, f"lost answer {i}")
            if i % 3 == 2:
                event["message"]["externalThreadId"] = f"{channel}:{parents[channel]}"
            slack_texts.append(event["message"]["text"])
            gmail_texts.append(f"lost mail {i}")
            for e in (event, app_event(f"g{i}", "created", "gmail", threads[i % 2], gmail_texts[-1])):
                response = await post_event(api, e)
                row.expect(response.status_code == 202, f"event {e['id']} answered {response.status_code}")
        await settle(store, tb.daemon, timeout_s=120)

        row.tally = await tally_slack(api, slack["id"], tb.slack, channels)
        row.tally.add(await tally_gmail(api, gmail["id"], tb.gmail))
        bot = [m["text"] for c in channels for m in tb.slack.truth(c) if m["user"] == tb.slack.bot_user_id]
        row.tally.add(compare_exports(slack_texts, bot))
        sent = [m["text"] for t in threads for m in tb.gmail.truth(t) if "SENT" in m["labelIds"]]
        row.tally.add(compare_exports(gmail_texts, sent))
        for integration, texts in ((slack, slack_texts), (gmail, gmail_texts)):
            docs = [d for c in (await stored_chats(api, integration["id"])).values()
                    for d in await stored_messages(api, c["id"])]
            for text in texts:
                mine = [d for d in docs if (d.get("text") or "").strip() == text]
                row.expect(len(mine) == 1 and bool(mine[0]["appMessageId"]) and bool(mine[0]["externalMessageId"]),
                           f"{text!r} stored as {[(d['origin'], d['externalMessageId']) for d in mine]}")
        row.fact("answers_lost", loss.lost)
        # Slack's searches ask for metadata, Gmail's for a Message-ID.
        row.fact("searches", sum(1 for s in wire.seen if s.params.get("include_all_metadata")
                                 or s.params.get("q", "").startswith("rfc822msgid:")))
        row.expect(loss.lost > 0, "no answer was lost")
    return row

"""Scenario 5 against a real MongoDB: a ``syncd run`` process accepts app events (202) and
acknowledges webhooks (200), and is killed with SIGKILL while a send and a poll hang at the
platforms. The next process, on the same database, delivers every event and processes every
webhook exactly once."""

from __future__ import annotations

import pytest

from bench.faults.harness import app_event, seed_channel, seed_mailbox
from bench.faults.processes import (
    SyncdProcess,
    Tap,
    eventually,
    import_done,
    signed_event,
    syncd_env,
)
from bench.faults.report import compare_exports, tally_gmail, tally_slack
from syncd.providers.gmail.sim import GmailSimulator
from syncd.providers.slack.sim import SlackSimulator
from syncd.sim.base import ServerThread

pytestmark = pytest.mark.mongodb
PUSH_TOKEN = "fault-suite-push-token"
N = 12



async def test_events_and_webhooks_in_hand_of_a_process_killed_with_sigkill_are_handled_once_by_the_next(
    mongodb_uri: str,
) -> None:
    slack, gmail = SlackSimulator(), GmailSimulator()
    channel = seed_channel(slack, "durable", 3)
    threads = seed_mailbox(gmail, 2, 2)
    slack_tap, gmail_tap = Tap(slack, "slack"), Tap(gmail, "gmail")
    with ServerThread(slack_tap) as slack_server, ServerThread(gmail_tap) as gmail_server:
        env = syncd_env(mongodb_uri, slack=slack_server.url + "/api", gmail=gmail_server.url)
        first = await SyncdProcess(env, "first").healthy()
        second = None
        try:
            async with first.client() as api:
                slack_integration = (await api.post("/integrations", json={
                    "platform": "slack", "customerId": "cust-1", "credentials": {
                        "botToken": next(iter(slack.valid_tokens)), "signingSecret": slack.signing_secret}})).json()["integration"]
                token = next(t for t, a in gmail.tokens.items() if a == gmail.address)
                gmail_integration = (await api.post("/integrations", json={
                    "platform": "gmail", "customerId": "cust-1", "credentials": {
                        "accessToken": token, "emailAddress": gmail.address, "pushToken": PUSH_TOKEN}})).json()["integration"]
                for integration in (slack_integration, gmail_integration):
                    await eventually(lambda: import_done(api, integration["id"]), "the imports")

                # A send and a Gmail history read that hang at the platforms until the kill.
                send = slack_tap.rule(lambda s: s.endpoint == "chat.postMessage")
                poll = gmail_tap.rule(lambda s: s.endpoint == "/history")
                events = [app_event(i, "created", "slack", channel, f"durable app {i}") for i in range(N)]
                for event in events:
                    body, headers = signed_event(event)
                    assert (await api.post("/events", content=body, headers=headers)).status_code == 202
                users = [slack.ids["alice"], slack.ids["bob"]]
                for i in range(N):
                    delivery = slack.post_user_message(channel, f"durable webhook {i}", users[i % 2])
                    answer = await api.post(f"/webhooks/slack/{slack_integration['id']}", content=delivery.body,
                                            headers=delivery.headers)
                    assert answer.status_code == 200
                for i in range(N // 3):
                    gmail.add_incoming(threads[i % 2], "Person <person@example.org>", "Re: Topic", f"durable mail {i}")
                    body, headers = gmail.push_notification()
                    answer = await api.post(f"/webhooks/gmail/{gmail_integration['id']}?token={PUSH_TOKEN}",
                                            content=body, headers=headers)
                    assert answer.status_code == 200
                await send.wait()
                await poll.wait()
            first.kill()
            send.released.set()
            poll.released.set()

            second = await SyncdProcess(env, "second").healthy()
            async with second.client() as api:
                async def all_sent() -> bool:
                    for event in events:
                        body, headers = signed_event(event)
                        if (await api.post("/events", content=body, headers=headers)).json()["status"] != "sent":
                            return False
                    return True

                async def inbox_drained() -> bool:
                    for integration in (slack_integration, gmail_integration):
                        inbox = (await api.get(f"/integrations/{integration['id']}/status")).json()["inbox"]
                        if inbox["pending"]:
                            return False
                    return True

                await eventually(all_sent, "every event to be sent")
                await eventually(inbox_drained, "every webhook to be processed")
                # The next scheduled Gmail poll reads whatever the killed one did not.
                await eventually(lambda: _has_mail(api, gmail_integration, N // 3), "the mails")
                tally = await tally_slack(api, slack_integration["id"], slack, [channel])
                tally.add(await tally_gmail(api, gmail_integration["id"], gmail))
                bot = [m["text"] for m in slack.truth(channel) if m["user"] == slack.bot_user_id]
                tally.add(compare_exports([e["message"]["text"] for e in events], bot))
                statuses = [(await api.get(f"/integrations/{i['id']}/status")).json()["inbox"]
                            for i in (slack_integration, gmail_integration)]
        finally:
            first.kill()
            if second is not None:
                second.terminate()

    assert (tally.lost, tally.duplicated, tally.wrong) == (0, 0, 0), tally.notes[:10]
    assert statuses[0] == {"pending": 0, "done": N, "failed": 0}
    assert statuses[1]["failed"] == 0 and statuses[1]["done"] == N // 3


async def _has_mail(api, integration: dict, count: int) -> bool:
    chats = (await api.get("/chats", params={"integrationId": integration["id"]})).json()["chats"]
    texts = []
    for chat in chats:
        texts += [(m.get("text") or "").strip()
                  for m in (await api.get(f"/chats/{chat['id']}/messages", params={"limit": 500})).json()["messages"]]
    return all(f"durable mail {i}" in texts for i in range(count))

"""The Slack connector against the Slack simulator, in-process through ``httpx.ASGITransport``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import AuthError, PermanentError, RateLimited, SignatureError
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import load_manifest
from syncd.providers import connector_for
from syncd.providers.slack.sim import SlackSimulator
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

ROOT = Path(__file__).resolve().parents[2]
SLACK = load_manifest(ROOT / "mappings/slack.yaml")
#: The Slack module's connector bound to its manifest, as the registry makes it.
SlackConnector = connector_for(SLACK)
TOKEN = "xoxb-sim-bot-token"


class Clock:
    """One clock for the simulator and the connector, moved by the test."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> SlackSimulator:
    sim = SlackSimulator(clock=clock)
    sim.seed_workspace()
    return sim


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def slack(sim, clock, waits) -> SlackConnector:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return make_connector(sim, clock, RetryPolicy(max_retries=3, sleep=sleep))


def make_connector(sim: SlackSimulator, clock: Clock, policy: RetryPolicy, token: str = TOKEN) -> SlackConnector:
    creds = SlackConnector.Credentials(botToken=token, signingSecret=sim.signing_secret)
    http = SlackConnector.make_http("http://slack.sim/api", creds, policy=policy, timeout_s=5,
                                    transport=httpx.ASGITransport(app=sim))
    ctx = ConnectorContext(http=http, mapping=SLACK.mapping,
                           webhook_url="https://syncd.test/webhooks/slack/i1", clock=clock)
    return SlackConnector(creds, {}, ctx)


def as_request(delivery) -> WebhookRequest:
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    return WebhookRequest("POST", "https://syncd.test/webhooks/slack/i1", headers, {}, delivery.body)


def chat(sim: SlackSimulator, key: str) -> ChatData:
    return ChatData(external_chat_id=sim.ids[key])


async def all_pages(slack: SlackConnector, target: ChatData) -> tuple[list, int]:
    messages, cursor, pages = [], None, 0
    while True:
        page = await slack.fetch_history_page(target, cursor)
        messages += page.messages
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return messages, pages


# -- identity and chats -------------------------------------------------------------------

async def test_identify_names_the_bot_user_and_the_bot_id_as_self(slack, sim):
    users = await slack.identify()
    assert {u.external_user_id for u in users} == {sim.bot_user_id, sim.bot_id}
    assert all(u.is_self for u in users)


async def test_list_chats_gives_real_names_and_kinds_across_pages(slack, sim):
    slack.page_limit = 1
    chats = {c.external_chat_id: c for c in await slack.list_chats()}
    assert len(chats) == 4
    assert (chats[sim.ids["general"]].name, chats[sim.ids["general"]].kind) == ("general", "channel")
    assert (chats[sim.ids["secret"]].name, chats[sim.ids["secret"]].kind) == ("secret-plans", "channel")
    dm = chats[sim.ids["dm_alice"]]
    assert (dm.name, dm.kind, dm.participants) == ("Alice Archer", "dm", [sim.ids["alice"]])
    assert chats[sim.ids["group"]].kind == "group"


async def test_a_wrong_token_is_an_auth_error(sim, clock):
    slack = make_connector(sim, clock, RetryPolicy(max_retries=0), token="xoxb-wrong")
    with pytest.raises(AuthError) as failed:
        await slack.list_chats()
    assert failed.value.code == "invalid_auth"
    assert "xoxb-wrong" not in str(failed.value)


async def test_a_revoked_token_is_an_auth_error(slack, sim):
    sim.revoked_tokens.add(TOKEN)
    with pytest.raises(AuthError) as failed:
        await slack.identify()
    assert failed.value.code == "token_revoked"


# -- history ------------------------------------------------------------------------------

async def test_history_pages_through_cursors_and_includes_thread_replies(slack, sim):
    slack.page_limit = 2
    messages, pages = await all_pages(slack, chat(sim, "general"))
    assert pages == 2
    assert [m.text for m in messages] == [
        "Release plan thread", "Ship Friday", "QA Thursday", "Works for me", "Morning! Standup at 10?", "Good morning",
    ]
    parent = messages[0]
    assert parent.external_thread_id == f"{sim.ids['general']}:{parent.external_message_id.split(':')[1]}"
    assert {m.external_thread_id for m in messages[:3]} == {parent.external_thread_id}
    assert all(m.external_thread_id is None for m in messages[3:])
    assert len({m.external_message_id for m in messages}) == 6


async def test_a_long_thread_is_read_across_reply_pages(slack, sim):
    general = sim.ids["general"]
    parent = sim.add_message(general, "big thread", sim.ids["bob"])
    for i in range(5):
        sim.add_message(general, f"reply {i}", sim.ids["carol"], thread_ts=parent["ts"])
    slack.page_limit = 2
    messages, _ = await all_pages(slack, chat(sim, "general"))
    texts = [m.text for m in messages]
    assert texts[:6] == ["big thread", "reply 0", "reply 1", "reply 2", "reply 3", "reply 4"]


async def test_history_of_an_unknown_channel_is_a_permanent_error(slack):
    with pytest.raises(PermanentError) as failed:
        await slack.fetch_history_page(ChatData(external_chat_id="C0NOPE"), None)
    assert failed.value.code == "channel_not_found"


async def test_a_deleted_thread_parent_is_left_out_but_its_replies_are_kept(slack, sim):
    general = sim.ids["general"]
    parent_ts = next(m["ts"] for m in sim.truth(general) if m["text"] == "Release plan thread")
    sim.delete_message(general, parent_ts)
    messages, _ = await all_pages(slack, chat(sim, "general"))
    texts = [m.text for m in messages]
    assert "Release plan thread" not in texts and "This message was deleted." not in texts
    assert {"Ship Friday", "QA Thursday"} <= set(texts)


# -- rate limits and buggy pagination -----------------------------------------------------

async def test_a_429_is_waited_out_for_its_retry_after_then_succeeds(slack, sim, waits):
    sim.faults.fail_next("conversations.list", "rate_limit", retry_after_s=7)
    chats = await slack.list_chats()
    assert len(chats) == 4
    assert waits == [7]


async def test_a_server_error_is_retried(slack, sim, waits):
    sim.faults.fail_next("conversations.history", "server_error", times=2)
    page = await slack.fetch_history_page(chat(sim, "secret"), None)
    assert [m.text for m in page.messages] == ["The cake is a lie"]
    assert len(waits) == 2


async def test_rate_limits_beyond_the_retry_budget_surface_as_rate_limited(slack, sim):
    sim.faults.fail_next("conversations.list", "rate_limit", times=10, retry_after_s=2)
    with pytest.raises(RateLimited) as limited:
        await slack.list_chats()
    assert limited.value.retry_after == 2


async def test_a_repeated_cursor_stops_with_an_error(slack, sim):
    slack.page_limit = 1
    sim.stuck_cursors.add("conversations.list")
    with pytest.raises(PermanentError, match="repeated"):
        await slack.list_chats()


async def test_a_repeated_history_cursor_stops_with_an_error(slack, sim):
    slack.page_limit = 1
    sim.stuck_cursors.add("conversations.history")
    first = await slack.fetch_history_page(chat(sim, "general"), None)
    with pytest.raises(PermanentError, match="repeated"):
        await slack.fetch_history_page(chat(sim, "general"), first.next_cursor)


# -- export -------------------------------------------------------------------------------

async def test_send_edit_delete_change_the_simulators_truth(slack, sim):
    general = chat(sim, "general")
    sent = await slack.send(OutgoingMessage(chat=general, text="from the app"))
    channel, ts = sent.external_message_id.split(":")
    assert channel == general.external_chat_id
    [posted] = [m for m in sim.truth(channel) if m["ts"] == ts]
    assert (posted["text"], posted["user"], posted["bot_id"]) == ("from the app", sim.bot_user_id, sim.bot_id)

    edited = await slack.edit(OutgoingMessage(chat=general, text="edited in the app",
                                              external_message_id=sent.external_message_id))
    assert edited.external_message_id == sent.external_message_id
    [posted] = [m for m in sim.truth(channel) if m["ts"] == ts]
    assert posted["text"] == "edited in the app" and posted["edited_ts"]

    await slack.delete(OutgoingMessage(chat=general, external_message_id=sent.external_message_id))
    [posted] = [m for m in sim.truth(channel) if m["ts"] == ts]
    assert posted["deleted"] is True
    # A retried delete whose first attempt went through is already done.
    await slack.delete(OutgoingMessage(chat=general, external_message_id=sent.external_message_id))


async def test_a_reply_is_sent_into_its_thread(slack, sim):
    general = chat(sim, "general")
    parent = next(m for m in sim.truth(general.external_chat_id) if m["text"] == "Release plan thread")
    thread_id = f"{general.external_chat_id}:{parent['ts']}"
    sent = await slack.send(OutgoingMessage(chat=general, text="agreed", external_thread_id=thread_id))
    assert sent.external_thread_id == thread_id
    [reply] = [m for m in sim.truth(general.external_chat_id) if m["text"] == "agreed"]
    assert reply["thread_ts"] == parent["ts"]


async def test_editing_someone_elses_message_is_refused(slack, sim):
    general = chat(sim, "general")
    theirs = next(m for m in sim.truth(general.external_chat_id) if m["text"] == "Good morning")
    with pytest.raises(PermanentError) as failed:
        await slack.edit(OutgoingMessage(chat=general, text="hijack",
                                         external_message_id=f"{general.external_chat_id}:{theirs['ts']}"))
    assert failed.value.code == "cant_update_message"


# -- webhooks from the simulator ----------------------------------------------------------

async def test_a_posted_message_arrives_as_a_verified_webhook(slack, sim):
    delivery = sim.post_user_message(sim.ids["general"], "hello syncd", sim.ids["bob"])
    request = as_request(delivery)
    assert slack.accept_webhook(request).delivery_id == delivery.event_id
    [message] = (await slack.parse_webhook(request)).messages
    ts = delivery.payload["event"]["ts"]
    assert message.external_message_id == f"{sim.ids['general']}:{ts}"
    assert (message.text, message.sender.external_user_id, message.from_self) == ("hello syncd", sim.ids["bob"], False)


async def test_a_retried_delivery_keeps_its_event_id(slack, sim, clock):
    delivery = sim.post_user_message(sim.ids["general"], "once", sim.ids["bob"])
    clock.now += 60
    again = sim.retry(delivery, attempt=1)
    assert again.headers["X-Slack-Retry-Num"] == "1"
    assert slack.accept_webhook(as_request(again)).delivery_id == slack.accept_webhook(as_request(delivery)).delivery_id


async def test_thread_replies_edits_and_deletes_arrive_as_webhooks(slack, sim, clock):
    general = sim.ids["general"]
    parent = sim.post_user_message(general, "question?", sim.ids["alice"]).payload["event"]["ts"]
    reply = sim.post_user_message(general, "answer", sim.ids["bob"], thread_ts=parent)
    [message] = (await slack.parse_webhook(as_request(reply))).messages
    assert message.external_thread_id == f"{general}:{parent}"

    clock.now += 5
    [edited] = (await slack.parse_webhook(as_request(sim.edit_message(general, parent, "better question?")))).messages
    assert edited.external_message_id == f"{general}:{parent}"
    assert edited.text == "better question?"
    assert edited.edited_at is not None and edited.edited_at > edited.sent_at

    clock.now += 5
    [deleted] = (await slack.parse_webhook(as_request(sim.delete_message(general, parent)))).messages
    assert deleted.external_message_id == f"{general}:{parent}"
    assert deleted.deleted_at is not None


async def test_the_echo_of_our_own_send_is_marked_from_self(slack, sim):
    echoes = []

    async def on_echo(delivery):
        echoes.append(delivery)

    sim.on_echo = on_echo
    sent = await slack.send(OutgoingMessage(chat=chat(sim, "general"), text="echo me"))
    assert echoes == sim.echoes[-1:]
    [message] = (await slack.parse_webhook(as_request(echoes[0]))).messages
    assert message.external_message_id == sent.external_message_id
    assert message.from_self is True


async def test_a_delivery_signed_too_long_ago_is_refused(slack, sim, clock):
    delivery = sim.post_user_message(sim.ids["general"], "late", sim.ids["bob"])
    clock.now += 301
    with pytest.raises(SignatureError):
        slack.accept_webhook(as_request(delivery))


async def test_the_simulators_url_verification_is_answered(slack, sim):
    accepted = slack.accept_webhook(as_request(sim.url_verification("abc123")))
    assert accepted.delivery_id is None and accepted.answer.body == {"challenge": "abc123"}


# -- polling ------------------------------------------------------------------------------

async def test_a_first_poll_starts_from_now_without_backfill(slack, sim, clock):
    result = await slack.poll(None, [chat(sim, "general")], lookback_s=300)
    assert result.changes.messages == []
    assert result.state == {"*": f"{clock.now:.6f}", sim.ids["general"]: f"{clock.now:.6f}"}


async def test_a_chat_without_its_own_mark_is_read_from_the_first_mark(slack, sim, clock):
    # The first mark is taken before the import lists chats; whatever is posted while the
    # import runs must reach the first poll of a chat that had no mark yet.
    state = (await slack.poll(None, [], lookback_s=0)).state
    clock.now += 5
    general = chat(sim, "general")
    sim.post_user_message(general.external_chat_id, "posted during the import", sim.ids["alice"])
    clock.now += 5
    result = await slack.poll(state, [general], lookback_s=0)
    assert [m.text for m in result.changes.messages] == ["posted during the import"]


async def test_a_poll_finds_new_messages_replies_and_recent_edits_since_the_mark(slack, sim, clock):
    general = chat(sim, "general")
    state = (await slack.poll(None, [general], lookback_s=60)).state
    clock.now += 30
    parent = sim.post_user_message(general.external_chat_id, "new topic", sim.ids["alice"]).payload["event"]["ts"]
    clock.now += 1
    sim.post_user_message(general.external_chat_id, "a reply", sim.ids["bob"], thread_ts=parent)
    clock.now += 1
    result = await slack.poll(state, [general], lookback_s=60)
    assert sorted(m.text for m in result.changes.messages) == ["a reply", "new topic"]
    newest = max(m.external_message_id.split(":")[1] for m in result.changes.messages)
    assert result.state == {"*": state["*"], general.external_chat_id: newest}

    clock.now += 10
    sim.edit_message(general.external_chat_id, parent, "new topic (edited)")
    again = await slack.poll(result.state, [general], lookback_s=60)
    assert "new topic (edited)" in [m.text for m in again.changes.messages]
    assert again.state == result.state


async def test_a_send_carries_the_app_message_id_as_metadata_which_history_shows_only_when_asked(slack, sim):
    general = chat(sim, "general")
    sent = await slack.send(OutgoingMessage(general, text="From the app", app_message_id="app-9"))
    ts = sent.external_message_id.partition(":")[2]
    stored = sim._find(general.external_chat_id, ts)
    assert stored["_metadata"] == {"event_type": "syncd_message", "event_payload": {"id": "app-9"}}
    # Read back through the history (which shows no metadata unless asked), it maps as any
    # message of the bot: same ids and text, nothing of the metadata in it.
    messages, _ = await all_pages(slack, general)
    mine = [m for m in messages if m.text == "From the app"]
    assert len(mine) == 1 and mine[0].external_message_id == sent.external_message_id and mine[0].from_self
    record = {**sim._public(stored, metadata=True), "channel": general.external_chat_id}
    with_metadata = slack.map_as("message", "message", record, {"channel": general.external_chat_id})
    assert with_metadata == mine[0].model_copy(update={"attachments": with_metadata.attachments})


async def test_a_lost_send_is_found_by_its_metadata_and_another_app_message_is_not(slack, sim, clock):
    general = chat(sim, "general")
    sent = await slack.send(OutgoingMessage(general, text="Twice?", app_message_id="app-10"))
    clock.now += 30
    found = await slack.reconcile_send(OutgoingMessage(general, text="Twice?", app_message_id="app-10"))
    assert found is not None and found.external_message_id == sent.external_message_id
    assert found.sent_at == sent.sent_at
    assert await slack.reconcile_send(OutgoingMessage(general, text="Twice?", app_message_id="app-11")) is None

"""The Telegram connector against the Telegram simulator, in-process through ``httpx.ASGITransport``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import (
    AuthError,
    PermanentError,
    ProviderError,
    RateLimited,
    SignatureError,
)
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import load_manifest
from syncd.providers import connector_for
from syncd.providers.telegram.sim import DEFAULT_TOKEN, TelegramSimulator
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

ROOT = Path(__file__).resolve().parents[2]
LOADED = load_manifest(ROOT / "mappings/telegram.yaml")
TelegramConnector = connector_for(LOADED)
SECRET = "sim-Secret_token-1"
URL = "https://syncd.test/webhooks/telegram/i1"


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
def sim(clock) -> TelegramSimulator:
    sim = TelegramSimulator(clock=clock)
    sim.seed()
    return sim


@pytest.fixture
def waits() -> list[float]:
    return []


def make_connector(sim, clock, *, public: bool = True, token: str = DEFAULT_TOKEN, waits: list[float] | None = None,
                   max_retries: int = 3) -> TelegramConnector:
    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)

    creds = TelegramConnector.Credentials(botToken=token, secretToken=SECRET)
    policy = RetryPolicy(max_retries=max_retries, sleep=sleep)
    http = TelegramConnector.make_http("http://telegram.sim", creds, policy=policy, timeout_s=5,
                                       transport=httpx.ASGITransport(app=sim))
    ctx = ConnectorContext(http=http, mapping=LOADED.mapping, webhook_url=URL,
                           public_webhooks=public, clock=clock)
    return TelegramConnector(creds, {}, ctx)


@pytest.fixture
def tg(sim, clock, waits) -> TelegramConnector:
    return make_connector(sim, clock, waits=waits)


@pytest.fixture
def polling(sim, clock) -> TelegramConnector:
    """A connector of a syncd with no public URL: it polls getUpdates."""
    return make_connector(sim, clock, public=False)


def as_request(delivery) -> WebhookRequest:
    return WebhookRequest("POST", URL, {k.lower(): v for k, v in delivery.headers.items()}, {}, delivery.body)


def out(chat_id: int, text: str | None = None, **kw) -> OutgoingMessage:
    return OutgoingMessage(chat=ChatData(external_chat_id=str(chat_id)), text=text, **kw)


def assert_no_token(error: BaseException) -> None:
    text = f"{error} {error!r} {error.args}"
    assert DEFAULT_TOKEN not in text and DEFAULT_TOKEN.partition(":")[2] not in text


# -- identity and chats -------------------------------------------------------------------

async def test_identify_is_get_me_the_bot_is_self(tg, sim):
    [me] = await tg.identify()
    assert (me.external_user_id, me.display_name, me.is_self) == (str(sim.bot.id), "Sync Bot", True)


async def test_a_bot_has_no_chat_list_and_no_history(tg, sim):
    assert TelegramConnector.has_history is False
    assert await tg.list_chats() == []
    page = await tg.fetch_history_page(ChatData(external_chat_id=str(sim.ids["group"])), None)
    assert (page.messages, page.next_cursor) == ([], None)


async def test_a_revoked_token_is_an_auth_error_that_does_not_show_the_token(sim, clock):
    sim.bots.pop(DEFAULT_TOKEN)
    tg = make_connector(sim, clock)
    with pytest.raises(AuthError) as failed:
        await tg.identify()
    assert str(failed.value) == "identify: telegram error 401: Unauthorized"
    assert_no_token(failed.value)


# -- export ---------------------------------------------------------------------------------

async def test_send_returns_the_composed_id_and_the_simulator_keeps_the_message(tg, sim):
    group = sim.ids["supergroup"]
    result = await tg.send(out(group, "hello support"))
    assert result.external_message_id == f"{group}:1"
    assert result.sent_at is not None and result.sent_at.timestamp() == 1_700_000_000
    [kept] = sim.truth(group)
    assert (kept["text"], kept["from"]["id"]) == ("hello support", sim.bot.id)


async def test_a_reply_is_sent_as_reply_parameters_and_threads_on_the_parent(tg, sim):
    group = sim.ids["group"]
    sim.user_message(group, sim.ids["bob"], "question?")
    result = await tg.send(out(group, "answer", external_thread_id=f"{group}:1"))
    assert result.external_thread_id == f"{group}:1"
    assert sim.truth(group)[1]["reply_to_message"]["message_id"] == 1
    assert sim.requests[-1][1]["reply_parameters"] == {"message_id": 1}


async def test_send_to_a_channel_posts_as_the_channel(tg, sim):
    channel = sim.ids["channel"]
    result = await tg.send(out(channel, "news"))
    assert result.external_message_id == f"{channel}:1"
    assert sim.truth(channel)[0]["sender_chat"]["id"] == channel


async def test_chat_ids_beyond_float_precision_stay_exact(tg, sim):
    huge = -(2**53 + 1)  # a float would make it ...992
    sim.add_supergroup("Huge", chat_id=huge)
    result = await tg.send(out(huge, "exact"))
    assert result.external_message_id == "-9007199254740993:1"
    changes = await tg.parse_webhook(as_request(sim.user_message(huge, sim.ids["bob"], "back")))
    assert changes.messages[0].external_message_id == "-9007199254740993:2"
    assert changes.chats[0].external_chat_id == "-9007199254740993"


async def test_edit_changes_the_text_and_a_repeated_edit_is_done_already(tg, sim):
    group = sim.ids["group"]
    sent = await tg.send(out(group, "draft"))
    sim.clock.now += 60
    edited = await tg.edit(out(group, "final", external_message_id=sent.external_message_id))
    assert edited.external_message_id == sent.external_message_id
    assert edited.edited_at.timestamp() == 1_700_000_060
    assert sim.truth(group)[0]["text"] == "final"
    again = await tg.edit(out(group, "final", external_message_id=sent.external_message_id))
    assert again.external_message_id == sent.external_message_id


async def test_editing_someone_elses_message_is_refused(tg, sim):
    group = sim.ids["group"]
    sim.user_message(group, sim.ids["bob"], "mine")
    with pytest.raises(PermanentError, match="message can't be edited") as failed:
        await tg.edit(out(group, "yours now", external_message_id=f"{group}:1"))
    assert_no_token(failed.value)


async def test_delete_removes_the_message_and_a_repeated_delete_is_done_already(tg, sim):
    group = sim.ids["group"]
    sent = await tg.send(out(group, "oops"))
    await tg.delete(out(group, external_message_id=sent.external_message_id))
    assert sim.truth(group) == []
    await tg.delete(out(group, external_message_id=sent.external_message_id))


async def test_a_message_older_than_48_hours_cannot_be_deleted(tg, sim):
    group = sim.ids["group"]
    sent = await tg.send(out(group, "old news"))
    sim.clock.now += 48 * 3600 + 1
    with pytest.raises(PermanentError, match="message can't be deleted") as failed:
        await tg.delete(out(group, external_message_id=sent.external_message_id))
    assert_no_token(failed.value)
    assert len(sim.truth(group)) == 1


async def test_sending_to_an_unknown_chat_is_permanent_and_hides_the_token(tg, sim):
    with pytest.raises(PermanentError) as failed:
        await tg.send(out(-100999, "anyone?"))
    assert str(failed.value) == "send: telegram error 400: Bad Request: chat not found"
    assert_no_token(failed.value)


async def test_an_html_only_message_is_refused_with_a_clear_reason(tg, sim):
    with pytest.raises(PermanentError, match="needs message text"):
        await tg.send(OutgoingMessage(chat=ChatData(external_chat_id=str(sim.ids["group"])), html="<b>hi</b>"))


async def test_a_429_is_waited_out_for_its_retry_after_and_sent_once(tg, sim, waits):
    sim.faults.fail_next("sendMessage", "rate_limit", retry_after_s=7)
    await tg.send(out(sim.ids["group"], "after the flood"))
    assert waits == [7]
    assert [m["text"] for m in sim.truth(sim.ids["group"])] == ["after the flood"]


async def test_a_server_error_is_retried(tg, sim, waits):
    sim.faults.fail_next("sendMessage", "server_error", status=502)
    await tg.send(out(sim.ids["group"], "eventually"))
    assert len(waits) == 1 and len(sim.truth(sim.ids["group"])) == 1


async def test_spent_retries_raise_without_the_token(sim, clock):
    tg = make_connector(sim, clock, max_retries=1)
    sim.faults.fail_next("getMe", "rate_limit", times=2, retry_after_s=3)
    with pytest.raises(RateLimited) as failed:
        await tg.identify()
    assert failed.value.retry_after == 3
    assert_no_token(failed.value)


async def test_no_error_of_any_kind_shows_the_token(sim, clock):
    tg = make_connector(sim, clock, max_retries=0)
    group = sim.ids["group"]
    failing = [
        tg.send(out(group, "x" * 5000)),
        tg.send(out(group, "reply", external_thread_id=f"{group}:77")),
        tg.edit(out(group, "x", external_message_id=f"{group}:77")),
        tg.delete(out(-1, external_message_id="-1:1")),
    ]
    sim.faults.fail_next("getMe", "server_error")
    failing.append(tg.identify())
    for call in failing:
        with pytest.raises(ProviderError) as failed:
            await call
        assert_no_token(failed.value)


# -- webhooks -------------------------------------------------------------------------------

async def test_deliveries_carry_the_secret_registered_by_maintain(tg, sim):
    await tg.maintain(None)
    delivery = sim.user_message(sim.ids["dm_alice"], sim.ids["alice"], "hi bot")
    assert delivery.headers["X-Telegram-Bot-Api-Secret-Token"] == SECRET
    accepted = tg.accept_webhook(as_request(delivery))
    assert accepted.delivery_id == str(delivery.update_id)


async def test_a_forged_secret_is_refused(tg, sim):
    await tg.maintain(None)
    delivery = sim.user_message(sim.ids["dm_alice"], sim.ids["alice"], "hi bot")
    request = as_request(delivery)
    request.headers["x-telegram-bot-api-secret-token"] = SECRET + "x"
    with pytest.raises(SignatureError):
        tg.accept_webhook(request)


async def test_a_channel_post_and_its_edit_map_onto_one_message(tg, sim):
    channel = sim.ids["channel"]
    post = await tg.parse_webhook(as_request(sim.channel_post(channel, "launch day")))
    sim.clock.now += 30
    edit = await tg.parse_webhook(as_request(sim.edit_channel_post(channel, 1, "launch day!")))
    [first], [second] = post.messages, edit.messages
    assert first.external_message_id == second.external_message_id == f"{channel}:1"
    assert (first.sender.external_user_id, first.sender.name) == (str(channel), "Announcements")
    assert (second.text, second.edited_at.timestamp()) == ("launch day!", 1_700_000_030)
    assert post.chats == [ChatData(external_chat_id=str(channel), name="Announcements", kind="channel")]


async def test_group_chats_are_groups_and_people_are_named(tg, sim):
    for key, kind in (("group", "group"), ("supergroup", "group")):
        changes = await tg.parse_webhook(as_request(sim.user_message(sim.ids[key], sim.ids["alice"], "hey")))
        assert changes.chats[0].kind == kind
        assert changes.messages[0].sender.name == "Alice Archer"
    bob = await tg.parse_webhook(as_request(sim.user_message(sim.ids["group"], sim.ids["bob"], "yo")))
    assert bob.messages[0].sender.name == "Bob"


async def test_a_service_message_names_the_chat_but_is_no_message(tg, sim):
    group = sim.ids["group"]
    delivery = sim.user_message(group, sim.ids["alice"], None, new_chat_title="Ops team (renamed)")
    changes = await tg.parse_webhook(as_request(delivery))
    assert changes.messages == []
    assert changes.chats[0].external_chat_id == str(group)


async def test_the_bots_own_message_is_flagged_from_self(tg, sim):
    group = sim.ids["group"]
    await tg.send(out(group, "from the bot"))
    changes = await tg.parse_webhook(as_request(sim.message_update(group, 1)))
    assert changes.messages[0].from_self is True


# -- maintain and poll -----------------------------------------------------------------------

async def test_maintain_with_a_public_url_registers_the_webhook_with_the_secret(tg, sim):
    state = await tg.maintain(None)
    webhook = sim.webhook_of()
    assert (webhook["url"], webhook["secret_token"]) == (URL, SECRET)
    assert webhook["allowed_updates"] == ["message", "edited_message", "channel_post", "edited_channel_post"]
    assert state == {"mode": "webhook", "url": URL}


async def test_with_a_public_url_poll_never_calls_get_updates(tg, sim):
    await tg.maintain(None)
    sim.user_message(sim.ids["group"], sim.ids["bob"], "via webhook")
    state = (await tg.poll(None, [], 0)).state
    polled = await tg.poll(state, [], 300)
    assert polled.changes.messages == [] and polled.state == state
    assert sim.faults.calls["getUpdates"] == 0 and sim.conflicts == 0


async def test_unsubscribe_removes_our_webhook(tg, sim):
    state = await tg.maintain(None)
    await tg.unsubscribe(state)
    assert sim.webhook_of() is None


async def test_unsubscribe_leaves_a_webhook_someone_else_set_since(tg, sim):
    state = await tg.maintain(None)
    sim.bot.webhook = {**sim.webhook_of(), "url": "https://elsewhere.example/hook"}  # set since, by someone else
    await tg.unsubscribe(state)
    assert sim.webhook_of()["url"] == "https://elsewhere.example/hook"


async def test_maintain_without_a_public_url_deletes_the_webhook(polling, sim, tg):
    await tg.maintain(None)
    assert await polling.maintain(None) == {"mode": "polling"}
    assert sim.webhook_of() is None


async def test_polling_reads_each_update_once_and_confirms_by_the_next_offset(polling, sim):
    group = sim.ids["group"]
    state = (await polling.poll(None, [], 0)).state
    assert sim.faults.calls["getUpdates"] == 0  # the first mark reads nothing
    for text in ("one", "two"):
        sim.user_message(group, sim.ids["bob"], text)
    first = await polling.poll(state, [], 300)
    assert [m.text for m in first.changes.messages] == ["one", "two"]
    assert sim.requests[-1][1]["timeout"] == 0

    # The engine did not store first.state (say its ingest failed): the batch comes again.
    again = await polling.poll(state, [], 300)
    assert [m.text for m in again.changes.messages] == ["one", "two"]

    sim.user_message(group, sim.ids["bob"], "three")
    second = await polling.poll(first.state, [], 300)
    assert [m.text for m in second.changes.messages] == ["three"]
    assert len(sim.pending()) == 1  # "one" and "two" are confirmed and gone
    third = await polling.poll(second.state, [], 300)
    assert third.changes.messages == [] and third.state == second.state
    assert sim.pending() == []


async def test_polling_deletes_a_leftover_webhook_first_so_no_409_is_hit(polling, sim, tg):
    await tg.maintain(None)  # an earlier deployment registered a webhook
    sim.bot.webhook["secret_token"] = "left-over"
    await polling.poll({"offset": None}, [], 0)
    assert sim.webhook_of() is None and sim.conflicts == 0


async def test_a_webhook_set_behind_our_back_fails_one_poll_then_is_deleted(polling, sim, tg):
    await polling.poll({"offset": None}, [], 0)
    await tg.maintain(None)
    with pytest.raises(PermanentError) as failed:
        await polling.poll({"offset": None}, [], 0)
    assert failed.value.status == 409 and sim.conflicts == 1
    assert_no_token(failed.value)
    await polling.poll({"offset": None}, [], 0)
    assert sim.conflicts == 1 and sim.webhook_of() is None


async def test_a_poll_takes_one_batch_of_at_most_100_updates(polling, sim):
    for i in range(130):
        sim.user_message(sim.ids["group"], sim.ids["bob"], f"m{i}")
    first = await polling.poll({"offset": None}, [], 0)
    second = await polling.poll(first.state, [], 0)
    assert (len(first.changes.messages), len(second.changes.messages)) == (100, 30)
    assert second.changes.messages[-1].text == "m129"


async def test_an_offset_older_than_six_days_is_not_sent(polling, sim, clock):
    sim.user_message(sim.ids["group"], sim.ids["bob"], "old")
    first = await polling.poll({"offset": None}, [], 0)
    await polling.poll(first.state, [], 0)
    clock.now += 7 * 24 * 3600
    sim.user_message(sim.ids["group"], sim.ids["bob"], "after a quiet week")
    polled = await polling.poll(first.state, [], 0)
    assert "offset" not in sim.requests[-1][1]
    assert [m.text for m in polled.changes.messages] == ["after a quiet week"]

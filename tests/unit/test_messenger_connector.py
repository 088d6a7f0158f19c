"""The Messenger connector against the Messenger simulator, in-process through
``httpx.ASGITransport``: chats, paging, the 20-message detail window, sending and its 24-hour
window, throttling in Meta's forms, webhooks built by the simulator, and polling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd import providers
from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import AuthError, PermanentError, RateLimited, TransientError
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping
from syncd.providers.messenger.sim import MessengerSimulator
from syncd.providers.meta.pages import OutsideWindow
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

MessengerConnector = providers.bound("messenger")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "EAAG-sim-page-token"
DAY = 24 * 3600


class Clock:
    """One clock for the simulator and the connector, moved by the test."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> MessengerSimulator:
    sim = MessengerSimulator(valid_tokens=[TOKEN], clock=clock)
    sim.add_person("7001", "Ann Ames")
    sim.add_person("7002", "Bo Berg")
    hour_ago = int((clock() - 3600) * 1000)
    sim.add_message("7001", "Hello bakery", at_ms=hour_ago)
    sim.add_message("7001", "Hi Ann, how can we help?", from_account=True, at_ms=hour_ago + 60_000)
    sim.add_message("7002", "Open on Sunday?", at_ms=hour_ago + 120_000)
    return sim


@pytest.fixture
def waits() -> list[float]:
    return []


def make(sim: MessengerSimulator, clock: Clock, *, waits: list[float] | None = None, token: str = TOKEN,
         settings: dict[str, Any] | None = None, retries: int = 3) -> MessengerConnector:
    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)

    creds = MessengerConnector.Credentials(pageAccessToken=token, pageId=sim.account_id, appSecret=sim.app_secret,
                                           verifyToken=sim.verify_token)
    http = MessengerConnector.make_http("http://meta.sim/v21.0", creds, policy=RetryPolicy(max_retries=retries,
                                        sleep=sleep), timeout_s=5, transport=httpx.ASGITransport(app=sim))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/messenger.yaml"),
                           webhook_url="https://syncd.test/webhooks/messenger/i1", clock=clock)
    return MessengerConnector(creds, settings or {}, ctx)


@pytest.fixture
def messenger(sim, clock, waits) -> MessengerConnector:
    return make(sim, clock, waits=waits)


def as_request(delivery) -> WebhookRequest:
    return WebhookRequest("POST", "https://syncd.test/webhooks/messenger/i1",
                          {k.lower(): v for k, v in delivery.headers.items()}, {}, delivery.body)


async def webhook(connector: MessengerConnector, delivery):
    request = as_request(delivery)
    assert connector.accept_webhook(request).delivery_id
    return await connector.parse_webhook(request)


def chat(user_id: str) -> ChatData:
    return ChatData(external_chat_id=user_id)


async def history(connector: MessengerConnector, user_id: str) -> tuple[list, int]:
    messages, cursor, pages = [], None, 0
    while True:
        page = await connector.fetch_history_page(chat(user_id), cursor)
        messages += page.messages
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return messages, pages


# -- identity and chats --------------------------------------------------------------------

async def test_identify_names_the_page_as_its_own_identity(messenger, sim):
    [me] = await messenger.identify()
    assert (me.external_user_id, me.display_name, me.is_self) == (sim.account_id, "Sim Bakery", True)


async def test_a_rejected_token_is_an_auth_error_without_the_token_in_it(sim, clock):
    with pytest.raises(AuthError) as caught:
        await make(sim, clock, token="EAAG-revoked").identify()
    assert "EAAG-revoked" not in str(caught.value)


async def test_list_chats_follows_every_page_and_names_each_person(sim, clock):
    for n in range(7):
        sim.add_person(f"80{n}", f"Person {n}")
        sim.add_message(f"80{n}", f"hi {n}")
    connector = make(sim, clock)
    connector.page_limit = 3
    chats = await connector.list_chats()
    assert len(chats) == 9 and sim.faults.calls["conversations"] == 3
    assert chats[0].external_chat_id == "806"  # newest conversation first
    by_id = {c.external_chat_id: c for c in chats}
    assert (by_id["7001"].name, by_id["7001"].kind, by_id["7001"].participants) == ("Ann Ames", "dm", ["7001"])
    assert by_id["7001"].last_message_at is not None


async def test_a_paging_next_url_of_another_host_is_followed_on_the_configured_root():
    seen: list[httpx.Request] = []
    pages = [
        {"data": [{"id": "t_1", "participants": {"data": [{"name": "A", "id": "1"}, {"name": "P", "id": "9"}]}}],
         "paging": {"cursors": {"after": "QVFI"}, "next": "https://graph.facebook.com/v21.0/9/conversations?after=QVFI"}},
        {"data": [{"id": "t_2", "participants": {"data": [{"name": "B", "id": "2"}, {"name": "P", "id": "9"}]}}],
         "paging": {"cursors": {"after": "QVFJ"}}},
    ]

    def graph(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages[len(seen) - 1])

    creds = MessengerConnector.Credentials(pageAccessToken="EAAG-x", pageId="9", appSecret="s", verifyToken="v")
    http = MessengerConnector.make_http("https://proxy.test/graph", creds, policy=RetryPolicy(max_retries=0),
                                        timeout_s=5, transport=httpx.MockTransport(graph))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/messenger.yaml"), webhook_url="x")
    chats = await MessengerConnector(creds, {}, ctx).list_chats()
    assert [c.name for c in chats] == ["A", "B"]
    # The bearer token goes to the operator's root only, never to the host paging.next names.
    assert str(seen[1].url) == "https://proxy.test/graph/9/conversations?after=QVFI"


async def test_a_repeated_paging_next_stops_the_listing():
    page = {"data": [], "paging": {"cursors": {"after": "A"}, "next": "https://graph.test/v21.0/9/conversations?after=A"}}
    creds = MessengerConnector.Credentials(pageAccessToken="EAAG-x", pageId="9", appSecret="s", verifyToken="v")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=page))
    http = MessengerConnector.make_http("https://graph.test/v21.0", creds, policy=RetryPolicy(max_retries=0),
                                        timeout_s=5, transport=transport)
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/messenger.yaml"), webhook_url="x")
    with pytest.raises(PermanentError, match="repeated"):
        await MessengerConnector(creds, {}, ctx).list_chats()


# -- history and the 20-message window -----------------------------------------------------

async def test_history_maps_both_directions(messenger, sim):
    messages, pages = await history(messenger, "7001")
    assert pages == 1
    assert [(m.text, m.from_self, m.sender.external_user_id) for m in messages] == [
        ("Hi Ann, how can we help?", True, sim.account_id), ("Hello bakery", False, "7001")]
    assert [m.external_message_id for m in messages] == [t["mid"] for t in reversed(sim.truth("7001"))]
    assert messages[1].sender.name == "Ann Ames" and messages[1].sent_at is not None


async def test_only_the_20_newest_messages_are_imported_and_the_rest_is_skipped_not_failed(sim, clock):
    sim.add_person("7100", "Long Talker")
    for n in range(45):
        sim.add_message("7100", f"message {n}", from_account=n % 2 == 1)
    connector = make(sim, clock)
    connector.page_limit = 6
    messages, pages = await history(connector, "7100")
    assert [m.text for m in messages] == [f"message {n}" for n in range(44, 24, -1)]
    # 4 pages of details, the page crossing the window, one refused look-up: nothing more.
    assert pages == 4 and sim.faults.calls["messages"] == 4 and sim.faults.calls["node"] == 1


async def test_a_conversation_of_30_with_the_default_page_size_is_one_page_of_20(sim, clock):
    sim.add_person("7100", "Long Talker")
    for n in range(30):
        sim.add_message("7100", f"message {n}")
    first = await make(sim, clock).fetch_history_page(chat("7100"), None)
    assert len(first.messages) == 20 and first.next_cursor is None


async def test_history_resumes_from_a_saved_cursor_in_a_new_process(sim, clock):
    sim.add_person("7100", "Long Talker")
    for n in range(12):
        sim.add_message("7100", f"message {n}")
    first = make(sim, clock)
    first.page_limit = 5
    page = await first.fetch_history_page(chat("7100"), None)
    assert page.next_cursor and "|" in page.next_cursor and "http" not in page.next_cursor
    restarted = make(sim, clock)
    restarted.page_limit = 5
    rest = await restarted.fetch_history_page(chat("7100"), page.next_cursor)
    assert [m.text for m in page.messages + rest.messages] == [f"message {n}" for n in range(11, 1, -1)]


async def test_a_person_without_a_conversation_has_an_empty_history(messenger):
    assert (await messenger.fetch_history_page(chat("999"), None)).messages == []


# -- sending -------------------------------------------------------------------------------

async def test_send_returns_the_mid_the_echo_carries(messenger, sim):
    result = await messenger.send(OutgoingMessage(chat=chat("7001"), text="Fresh bread at 8"))
    sent = sim.truth("7001")[-1]
    assert (result.external_message_id, sent["text"], sent["from_account"]) == (sent["mid"], "Fresh bread at 8", True)
    [echo] = sim.echoes
    item = echo.payload["entry"][0]["messaging"][0]
    assert item["message"]["mid"] == result.external_message_id and item["message"]["is_echo"] is True
    assert sim.requests[-1][2]["messaging_type"] == "RESPONSE"


async def test_an_echo_of_a_sent_message_maps_to_the_same_id_as_our_own(messenger, sim):
    result = await messenger.send(OutgoingMessage(chat=chat("7001"), text="echo me"))
    [m] = (await webhook(messenger, sim.echoes[-1])).messages
    assert (m.external_message_id, m.external_chat_id, m.from_self, m.text) == (
        result.external_message_id, "7001", True, "echo me")


async def test_sending_outside_the_24_hour_window_is_refused_permanently(messenger, sim, clock):
    clock.advance(DAY + 60)
    with pytest.raises(OutsideWindow) as caught:
        await messenger.send(OutgoingMessage(chat=chat("7001"), text="too late"))
    assert isinstance(caught.value, PermanentError) and caught.value.code == "10"
    assert [t["text"] for t in sim.truth("7001")][-1] != "too late"


async def test_with_human_agent_allowed_a_closed_window_is_retried_with_the_tag(sim, clock):
    connector = make(sim, clock, settings={"humanAgentTag": True})
    clock.advance(3 * DAY)
    result = await connector.send(OutgoingMessage(chat=chat("7001"), text="a person answering"))
    sent = sim.truth("7001")[-1]
    assert (sent["mid"], sent["tag"]) == (result.external_message_id, "HUMAN_AGENT")
    clock.advance(5 * DAY)  # 8 days: beyond the tag's 7 days too
    with pytest.raises(OutsideWindow):
        await connector.send(OutgoingMessage(chat=chat("7001"), text="much too late"))


async def test_only_text_can_be_sent(messenger):
    with pytest.raises(PermanentError, match="only text"):
        await messenger.send(OutgoingMessage(chat=chat("7001"), text=None))


async def test_pages_cannot_edit_or_delete():
    assert (MessengerConnector.can_edit, MessengerConnector.can_delete, MessengerConnector.has_history) == (
        False, False, True)


@pytest.mark.parametrize(("status", "code"), [(200, 613), (400, 4), (400, 32), (429, 17)])
async def test_throttling_in_any_of_metas_forms_is_rate_limited_with_metas_wait(sim, clock, status, code):
    connector = make(sim, clock, retries=0)
    sim.throttle_next("send", code=code, status=status, minutes=2)
    with pytest.raises(RateLimited) as caught:
        await connector.send(OutgoingMessage(chat=chat("7001"), text="after the wait"))
    assert (caught.value.code, caught.value.retry_after) == (str(code), 120.0)
    assert "after the wait" not in [t["text"] for t in sim.truth("7001")]
    await connector.send(OutgoingMessage(chat=chat("7001"), text="after the wait"))
    assert [t["text"] for t in sim.truth("7001")].count("after the wait") == 1


async def test_a_short_retry_after_is_waited_out_and_the_message_sent_once(messenger, sim, waits):
    sim.faults.fail_next("send", "rate_limit", retry_after_s=1, status=429)
    result = await messenger.send(OutgoingMessage(chat=chat("7001"), text="after the wait"))
    assert result.external_message_id == sim.truth("7001")[-1]["mid"]
    assert [t["text"] for t in sim.truth("7001")].count("after the wait") == 1
    assert waits == [1.0]


async def test_a_server_error_is_retried(messenger, sim, waits):
    sim.faults.fail_next("conversations", "server_error", times=2)
    assert len(await messenger.list_chats()) == 2
    assert len(waits) == 2


async def test_server_errors_beyond_the_retry_budget_surface_as_transient(sim, clock):
    sim.faults.fail_next("node", "server_error", times=5)
    with pytest.raises(TransientError):
        await make(sim, clock, retries=1).identify()


# -- webhooks the simulator builds ---------------------------------------------------------

async def test_a_message_edit_updates_the_text_with_the_edit_time(messenger, sim, clock):
    mid = sim.truth("7001")[0]["mid"]
    clock.advance(30)
    [m] = (await webhook(messenger, sim.edit(mid, "Hello bakery!!"))).messages
    assert (m.external_message_id, m.text, m.extra["numEdit"]) == (mid, "Hello bakery!!", 1)
    assert m.edited_at is not None and m.sent_at is None


async def test_an_unsend_is_a_tombstone(messenger, sim):
    mid = sim.truth("7002")[0]["mid"]
    [m] = (await webhook(messenger, sim.unsend(mid))).messages
    assert (m.external_message_id, m.external_chat_id) == (mid, "7002")
    assert m.deleted_at is not None and m.text is None


async def test_a_new_persons_message_brings_their_named_chat(messenger, sim):
    changes = await webhook(messenger, sim.user_message("7300", "First time here", name="Cy Cole"))
    [m] = changes.messages
    assert (m.external_chat_id, m.text, m.from_self) == ("7300", "First time here", False)
    assert [(c.external_chat_id, c.name) for c in changes.chats] == [("7300", "Cy Cole")]
    again = await webhook(messenger, sim.user_message("7300", "Me again"))
    assert again.chats == []  # named once per process


async def test_a_reply_and_an_attachment_are_kept(messenger, sim):
    quoted = sim.truth("7001")[1]["mid"]
    delivery = sim.user_message("7001", "this one", reply_to=quoted,
                                attachments=[{"type": "image", "url": "https://cdn.test/a.jpg"}])
    [m] = (await webhook(messenger, delivery)).messages
    assert m.extra["replyTo"] == quoted and m.extra["attachmentTypes"] == ["image"]
    assert [a.url for a in m.attachments] == ["https://cdn.test/a.jpg"]


async def test_a_delivery_without_mids_marks_the_pages_messages_up_to_the_watermark(messenger, sim, clock):
    clock.advance(5)
    later = await messenger.send(OutgoingMessage(chat=chat("7001"), text="later"))
    earlier = sim.truth("7001")[1]
    changes = await webhook(messenger, sim.delivery("7001", watermark_ms=earlier["created_ms"] + 1000))
    assert [(m.external_message_id, m.delivery_state) for m in changes.messages] == [(earlier["mid"], "delivered")]
    assert later.external_message_id not in {m.external_message_id for m in changes.messages}


async def test_a_delivery_with_mids_marks_exactly_those(messenger, sim):
    result = await messenger.send(OutgoingMessage(chat=chat("7001"), text="ping"))
    changes = await webhook(messenger, sim.delivery("7001", [result.external_message_id]))
    assert [(m.external_message_id, m.delivery_state) for m in changes.messages] == [
        (result.external_message_id, "delivered")]


async def test_a_read_watermark_marks_every_page_message_before_it_read(messenger, sim):
    result = await messenger.send(OutgoingMessage(chat=chat("7001"), text="read me"))
    changes = await webhook(messenger, sim.read("7001"))
    assert {m.external_message_id for m in changes.messages} == {
        t["mid"] for t in sim.truth("7001") if t["from_account"]}
    assert {m.delivery_state for m in changes.messages} == {"read"}
    assert result.external_message_id in {m.external_message_id for m in changes.messages}


async def test_a_throttled_watermark_lookup_fails_the_delivery_so_it_is_retried(sim, clock):
    connector = make(sim, clock, retries=0)
    delivery = sim.read("7001")
    sim.throttle_next("messages", code=613, status=200)
    with pytest.raises(RateLimited):
        await webhook(connector, delivery)
    changes = await webhook(connector, delivery)  # the inbox's next attempt
    assert [m.delivery_state for m in changes.messages] == ["read"]


async def test_a_page_inbox_reply_arrives_as_an_echo_only(messenger, sim):
    [m] = (await webhook(messenger, sim.page_message("7002", "Yes, 9 to 1"))).messages
    assert (m.from_self, m.text, m.sender.external_user_id) == (True, "Yes, 9 to 1", sim.account_id)


# -- polling -------------------------------------------------------------------------------

async def test_poll_starts_at_now_then_reads_conversations_updated_since(messenger, sim, clock):
    first = await messenger.poll(None, [], lookback_s=0)
    assert first.changes.messages == [] and sim.faults.calls["conversations"] == 0
    clock.advance(60)
    sim.user_message("7002", "Are you there?")
    second = await messenger.poll(first.state, [], lookback_s=0)
    assert [m.text for m in second.changes.messages] == ["Are you there?"]
    assert [c.external_chat_id for c in second.changes.chats] == ["7002"]
    assert second.state["updatedMs"] > first.state["updatedMs"]
    clock.advance(60)
    third = await messenger.poll(second.state, [], lookback_s=0)
    # updated_time has second precision, so the mark itself is read again (a merge, no
    # duplicate); nothing older is, and the listing stops at the first older conversation.
    assert {m.external_message_id for m in third.changes.messages} == {
        m.external_message_id for m in second.changes.messages}
    assert sim.faults.calls["messages"] == 2 and sim.faults.calls["conversations"] == 2


async def test_a_poll_look_back_rereads_recent_messages(messenger, sim, clock):
    state = (await messenger.poll(None, [], lookback_s=0)).state
    sim.user_message("7001", "just before the mark", at_ms=state["updatedMs"] - 10_000)
    again = await messenger.poll(state, [], lookback_s=60)
    assert "just before the mark" in [m.text for m in again.changes.messages]


# -- credentials and OAuth -----------------------------------------------------------------

def test_credentials_never_print_secrets_and_keep_big_ids_exact():
    creds = MessengerConnector.Credentials.model_validate(
        {"pageAccessToken": "EAAG-secret", "pageId": 2**60 + 7, "appSecret": "app-secret", "verifyToken": "vt"})
    assert creds.page_id == str(2**60 + 7)
    assert "EAAG-secret" not in repr(creds) and "app-secret" not in repr(creds)


def test_credentials_missing_the_app_secret_are_invalid():
    with pytest.raises(ValueError) as caught:
        MessengerConnector.Credentials.model_validate({"pageAccessToken": "EAAG-secret", "pageId": "1",
                                                       "verifyToken": "vt"})
    assert "appSecret" in str(caught.value) and "EAAG-secret" not in str(caught.value)


async def test_the_oauth_flow_ends_with_a_user_token_traded_for_the_page_token_on_first_use(sim, clock):
    spec = MessengerConnector.oauth
    assert (spec.base_url_key, spec.authorize_url, spec.token_url) == ("meta_www", "/dialog/oauth",
                                                                       "{meta}/oauth/access_token")
    assert spec.scopes == ("pages_messaging", "pages_manage_metadata", "pages_read_engagement")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://meta.sim/v21.0") as client:
        dialog = await client.get(spec.authorize_url, params={
            "client_id": sim.app_id, "redirect_uri": "https://app.test/cb", "state": "s1",
            "scope": ",".join(spec.scopes)})
        assert dialog.status_code == 302
        callback = httpx.URL(dialog.headers["location"])
        assert callback.params["state"] == "s1"
        exchange = {"client_id": sim.app_id, "client_secret": sim.app_secret, "redirect_uri": "https://app.test/cb",
                    "code": callback.params["code"]}
        token = (await client.post("/oauth/access_token", data=exchange)).json()
        assert token["token_type"] == "bearer" and token["expires_in"] > 0
        reused = await client.post("/oauth/access_token", data=exchange)
        assert reused.status_code == 400 and reused.json()["error"]["code"] == 100
    made = MessengerConnector.credentials_from_oauth(token, client_id=sim.app_id, client_secret=sim.app_secret)
    assert made == {"pageAccessToken": token["access_token"], "tokenKind": "user", "appSecret": sim.app_secret}
    prepared, _ = MessengerConnector.prepare_credentials({**made, "verifyToken": "vt"}, {"pageId": sim.account_id})

    saved: list[dict] = []

    async def on_credentials(credentials: dict) -> None:
        saved.append(credentials)

    creds = MessengerConnector.Credentials.model_validate(prepared)
    http = MessengerConnector.make_http("http://meta.sim", creds, policy=RetryPolicy(max_retries=0), timeout_s=5,
                                        transport=httpx.ASGITransport(app=sim))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/messenger.yaml"), webhook_url="x",
                           clock=clock, on_credentials=on_credentials)
    connector = MessengerConnector(creds, {}, ctx)
    assert len(await connector.list_chats()) == 2  # refused with the user token; works after the trade
    [stored] = saved
    assert (stored["pageAccessToken"], stored["tokenKind"], stored["pageId"]) == (sim.page_token(), "page",
                                                                                 sim.account_id)
    await connector.list_chats()
    assert len(saved) == 1


async def test_a_user_token_is_refused_where_a_page_token_is_needed(sim):
    sim.user_tokens.add("EAAG-user")
    sim.valid_tokens.add("EAAG-user")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://meta.sim/v21.0",
                                 headers={"authorization": "Bearer EAAG-user"}) as client:
        assert (await client.get(f"/{sim.account_id}")).status_code == 200
        refused = await client.get(f"/{sim.account_id}/conversations")
    assert refused.json()["error"]["code"] == 190 and "Page Access Token" in refused.json()["error"]["message"]


async def _finish(sim: MessengerSimulator, user_token: str) -> dict:
    from syncd.kit.http import ProviderHttp

    http = ProviderHttp("http://meta.sim/v21.0", transport=httpx.ASGITransport(app=sim))
    try:
        return await MessengerConnector.finish_oauth(
            {"pageAccessToken": user_token, "tokenKind": "user", "appSecret": sim.app_secret}, http)
    finally:
        await http.aclose()


async def test_finishing_a_connect_takes_the_users_only_page_and_its_token(sim):
    sim.user_tokens.add("EAAG-user")
    sim.valid_tokens.add("EAAG-user")
    finished = await _finish(sim, "EAAG-user")
    assert finished == {"pageAccessToken": sim.page_token(), "tokenKind": "page", "pageId": sim.account_id,
                        "appSecret": sim.app_secret}


async def test_with_several_pages_the_user_token_is_kept_for_settings_to_choose(sim):
    sim.user_tokens.add("EAAG-user")
    sim.valid_tokens.add("EAAG-user")
    sim.other_pages.append({"name": "Other Page", "id": "555", "access_token": "EAAG-other"})
    finished = await _finish(sim, "EAAG-user")
    assert (finished["tokenKind"], finished["pageAccessToken"], "pageId" in finished) == ("user", "EAAG-user", False)


async def test_finishing_with_a_refused_token_is_an_auth_error(sim):
    with pytest.raises(AuthError):
        await _finish(sim, "EAAG-unknown")

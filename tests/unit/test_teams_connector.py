"""The Teams connector against the Graph simulator, in-process through httpx.ASGITransport:
chats and channels, paging, export, polling, tokens and errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import AuthError, PermanentError, TransientError
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping, mappings_dir
from syncd.providers.teams.connector import (
    TeamsConnector,
    TeamsCredentials,
    compose,
    locate,
    split_message_id,
)
from syncd.providers.teams.sim import TeamsSimulator
from syncd.universal import ChatData, OutgoingMessage

GRAPH = "https://graph.microsoft.com/v1.0"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> TeamsSimulator:
    return TeamsSimulator(clock=clock)


@pytest.fixture
def ids(sim) -> dict[str, str]:
    return sim.seed()


def make(sim: TeamsSimulator, clock: Clock, *, sleeps: Sleeps | None = None, max_retries: int = 3,
         saved: list[dict[str, Any]] | None = None, settings: dict[str, Any] | None = None, **creds: Any) -> TeamsConnector:
    values = {"tenantId": sim.tenant_id, "clientId": sim.client[0], "clientSecret": sim.client[1],
              "refreshToken": "sim-graph-refresh", "accessToken": "sim-graph-token",
              "expiresAt": clock() + 3000, "clientState": "client-state-0123456789", **creds}
    credentials = TeamsCredentials.model_validate({k: v for k, v in values.items() if v is not None})
    http = TeamsConnector.make_http(GRAPH, credentials, timeout_s=5, transport=httpx.ASGITransport(sim),
                                    policy=RetryPolicy(max_retries=max_retries, sleep=Sleeps() if sleeps is None else sleeps))

    async def on_credentials(new: dict[str, Any]) -> None:
        if saved is not None:
            saved.append(new)

    ctx = ConnectorContext(http=http, mapping=load_mapping(mappings_dir() / "teams.yaml"),
                           webhook_url="https://syncd.example/webhooks/teams/int-1", clock=clock,
                           on_credentials=on_credentials)
    return TeamsConnector(credentials, settings or {}, ctx)


@pytest.fixture
async def teams(sim, clock):
    connector = make(sim, clock)
    yield connector
    await connector.close()


# -- ids ------------------------------------------------------------------------------------------

def test_composed_message_ids_split_on_the_last_colon():
    chat = "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"
    channel = "teams/fbe2bf47-16c8-47cf-b4a5-4b9b187c508b/channels/19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"
    for external_chat_id in (chat, channel):
        assert split_message_id(compose(external_chat_id, "1616964509832")) == (external_chat_id, "1616964509832")
    assert split_message_id("1616964509832") == (None, "1616964509832")
    assert locate(channel).path == ("/teams/fbe2bf47-16c8-47cf-b4a5-4b9b187c508b/channels/"
                                    "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2")
    assert locate(chat).path == f"/chats/{chat}" and not locate(chat).channel
    with pytest.raises(PermanentError):
        locate("teams/only-a-team")


def test_credentials_need_a_token_or_a_refresh_grant_and_never_print_secrets():
    with pytest.raises(ValueError, match="accessToken, or tenantId, clientId, clientSecret and refreshToken"):
        TeamsCredentials.model_validate({"tenantId": "t", "clientId": "c"})
    creds = TeamsCredentials.model_validate({"clientId": "c", "clientSecret": "s3cret", "refreshToken": "r3fresh"})
    assert creds.tenant_id == "common" and creds.can_refresh
    assert "s3cret" not in repr(creds) and "r3fresh" not in repr(creds)


def test_a_client_state_is_generated_into_the_credentials_unless_settings_carry_one():
    creds, settings = TeamsConnector.prepare_credentials({"accessToken": "t"}, {})
    assert len(creds["clientState"]) >= 32 and "clientState" not in settings
    other, _ = TeamsConnector.prepare_credentials({"accessToken": "t"}, {})
    assert other["clientState"] != creds["clientState"]
    kept, settings = TeamsConnector.prepare_credentials({"accessToken": "t"}, {"clientState": "mine-0123456789abc"})
    assert "clientState" not in kept and settings == {"clientState": "mine-0123456789abc"}


# -- identity and chats ---------------------------------------------------------------------------

async def test_identify_is_the_signed_in_user(teams, sim):
    [me] = await teams.identify()
    assert (me.external_user_id, me.external_email, me.display_name, me.is_self) == (
        sim.me, "agent@contoso.example", "Sync Agent", True)


async def test_list_chats_names_every_kind_and_pages_through_next_links(teams, sim, ids):
    teams.page_size = 1  # one chat per /me/chats page
    chats = {c.external_chat_id: c for c in await teams.list_chats()}
    assert (chats[ids["dm"]].name, chats[ids["dm"]].kind) == ("Megan Bowen", "dm")
    assert (chats[ids["group"]].name, chats[ids["group"]].kind) == ("Project Falcon", "group")
    assert chats[ids["untitled"]].name == "Alex Wilber, Megan Bowen"  # no topic: the others' names
    assert set(chats[ids["group"]].participants) == {sim.me, ids["alex"], ids["lee"]}
    assert chats[ids["dm"]].last_message_at is not None
    general = chats[ids["general"]]
    assert (general.name, general.kind) == ("Contoso / General", "channel")
    assert ids["general"] == f"teams/{ids['team']}/channels/{ids['general'].rsplit('/', 1)[1]}"
    assert sim.faults.calls["chats.list"] == 3


async def test_a_page_size_above_graphs_maximum_is_refused(teams, ids):
    teams.page_size = 51
    with pytest.raises(PermanentError, match="Must be between 1 and 50"):
        await teams.list_chats()


# -- history --------------------------------------------------------------------------------------

async def test_history_follows_next_links_across_more_than_fifty_messages(teams, sim, ids):
    sent = [sim.post(ids["dm"], ids["megan"], f"message {i}", content_type="text") for i in range(118)]
    chat = ChatData(external_chat_id=ids["dm"])
    cursor, pages, seen = None, 0, []
    while True:
        page = await teams.fetch_history_page(chat, cursor)
        pages += 1
        seen += [m.external_message_id for m in page.messages]
        if page.next_cursor is None:
            break
        assert page.next_cursor.startswith(GRAPH + "/chats/") and "$skiptoken" in parse_qs(urlsplit(page.next_cursor).query)
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == len(set(seen)) == 120
    assert {compose(ids["dm"], m["id"]) for m in sent} <= set(seen)


async def test_history_maps_html_bodies_senders_and_skips_system_events(teams, sim, ids):
    page = await teams.fetch_history_page(ChatData(external_chat_id=ids["dm"]), None)
    ours, theirs = page.messages  # newest first
    assert (ours.html, ours.text) == ("<p>Hi <b>Megan</b> &amp; welcome</p>", "Hi Megan & welcome")
    assert ours.from_self and ours.sender.external_user_id == sim.me
    assert (theirs.text, theirs.html, theirs.sender.name) == ("Hello world", None, "Megan Bowen")
    group = await teams.fetch_history_page(ChatData(external_chat_id=ids["group"]), None)
    assert [m.text for m in group.messages] == ["Kick-off at 10"]


async def test_channel_history_brings_each_root_post_with_its_replies_as_one_thread(teams, sim, ids):
    page = await teams.fetch_history_page(ChatData(external_chat_id=ids["general"]), None)
    thread = compose(ids["general"], ids["root"])
    by_text = {m.text: m for m in page.messages}
    assert set(by_text) == {"Release plan", "Ship Friday", "QA Thursday"}
    assert {m.external_thread_id for m in page.messages} == {thread}
    assert by_text["Release plan"].subject == "Q3 release"
    assert by_text["Ship Friday"].extra["replyToId"] == ids["root"]


async def test_a_chat_that_is_gone_has_no_more_history(teams):
    page = await teams.fetch_history_page(ChatData(external_chat_id="19:gone@thread.v2"), None)
    assert (page.messages, page.next_cursor) == ([], None)


async def test_a_next_link_to_another_host_is_not_followed(teams, ids):
    chat = ChatData(external_chat_id=ids["dm"])
    with pytest.raises(PermanentError, match="outside the Graph root"):
        await teams.fetch_history_page(chat, "https://evil.example/v1.0/chats/x/messages?$skiptoken=abc")


# -- export ---------------------------------------------------------------------------------------

async def test_send_to_a_chat_posts_html_and_returns_the_composed_id(teams, sim, ids):
    chat = ChatData(external_chat_id=ids["group"], kind="group")
    result = await teams.send(OutgoingMessage(chat=chat, text="Agenda", html="<p>Agenda</p>"))
    stored = sim.truth(ids["group"])[-1]
    assert result.external_message_id == compose(ids["group"], stored["id"])
    assert stored["body"] == {"contentType": "html", "content": "<p>Agenda</p>"}
    assert stored["from"]["user"]["id"] == sim.me and result.sent_at is not None
    await teams.send(OutgoingMessage(chat=chat, text="plain"))
    assert sim.truth(ids["group"])[-1]["body"] == {"contentType": "text", "content": "plain"}


async def test_a_reply_in_a_channel_thread_goes_to_the_replies_of_its_root(teams, sim, ids):
    chat = ChatData(external_chat_id=ids["general"], kind="channel")
    thread = compose(ids["general"], ids["root"])
    result = await teams.send(OutgoingMessage(chat=chat, text="Agreed", external_thread_id=thread))
    reply = sim.truth(ids["general"])[3]
    assert (reply["replyToId"], reply["body"]["content"]) == (ids["root"], "Agreed")
    assert result.external_thread_id == thread
    root = await teams.send(OutgoingMessage(chat=chat, text="New topic"))
    assert root.external_thread_id == root.external_message_id  # a root post opens its own thread


async def test_edit_and_delete_change_the_message_at_graph(teams, sim, ids, clock):
    chat = ChatData(external_chat_id=ids["general"], kind="channel")
    thread = compose(ids["general"], ids["root"])
    sent = await teams.send(OutgoingMessage(chat=chat, text="Draft", external_thread_id=thread))
    clock.now += 60
    edited = await teams.edit(OutgoingMessage(chat=chat, text="Final", external_message_id=sent.external_message_id,
                                              external_thread_id=thread))
    _, message_id = split_message_id(sent.external_message_id)
    truth = next(m for m in sim.truth(ids["general"]) if m["id"] == message_id)
    assert truth["body"]["content"] == "Final" and truth["lastEditedDateTime"]
    assert edited.edited_at is not None and edited.edited_at > edited.sent_at  # Graph's own edit time
    out = OutgoingMessage(chat=chat, external_message_id=sent.external_message_id, external_thread_id=thread)
    await teams.delete(out)
    truth = next(m for m in sim.truth(ids["general"]) if m["id"] == message_id)
    assert truth["deletedDateTime"] is not None
    sim.hard_delete(ids["general"], message_id)
    await teams.delete(out)  # already gone: done


async def test_editing_someone_elses_message_is_a_permanent_error(teams, sim, ids):
    theirs = sim.truth(ids["dm"])[0]
    with pytest.raises(PermanentError, match="403"):
        await teams.edit(OutgoingMessage(chat=ChatData(external_chat_id=ids["dm"]), text="x",
                                         external_message_id=compose(ids["dm"], theirs["id"])))


async def test_an_id_of_another_chat_is_refused_before_any_call(teams, sim, ids):
    with pytest.raises(PermanentError, match="another chat"):
        await teams.delete(OutgoingMessage(chat=ChatData(external_chat_id=ids["dm"]),
                                           external_message_id=compose(ids["group"], "1")))


# -- polling --------------------------------------------------------------------------------------

async def test_poll_starts_from_now_then_brings_new_edited_and_deleted_messages(teams, sim, ids, clock):
    clock.now += 5  # the seeded history is older than the first mark
    first = await teams.poll(None, [], 300)
    assert first.changes.messages == [] and set(first.state) == {"*"}
    chats = [c for c in await teams.list_chats() if c.external_chat_id in (ids["dm"], ids["general"])]
    clock.now += 600
    new = sim.post(ids["dm"], ids["megan"], "Are you there?", content_type="text")
    edited = sim.edit(ids["dm"], sim.truth(ids["dm"])[0]["id"], "Hello world, edited")
    gone = sim.soft_delete(ids["dm"], sim.truth(ids["dm"])[1]["id"])
    reply = sim.post(ids["general"], ids["lee"], "Late reply", content_type="text", reply_to=ids["root"])
    sim.edit(ids["general"], ids["root"], "<p>Release plan v2</p>")
    result = await teams.poll(first.state, chats, 0)
    by_id = {m.external_message_id: m for m in result.changes.messages}
    assert by_id[compose(ids["dm"], new["id"])].text == "Are you there?"
    assert by_id[compose(ids["dm"], edited["id"])].edited_at is not None
    assert by_id[compose(ids["dm"], gone["id"])].deleted_at is not None
    assert by_id[compose(ids["general"], ids["root"])].text == "Release plan v2"
    assert by_id[compose(ids["general"], reply["id"])].external_thread_id == compose(ids["general"], ids["root"])
    assert len(by_id) == 5
    assert result.state[ids["dm"]] == new["createdDateTime"] or result.state[ids["dm"]] >= new["createdDateTime"]
    again = await teams.poll(result.state, chats, 0)
    assert again.changes.messages == []


async def test_poll_finds_a_new_chat_and_names_it(teams, sim, ids, clock):
    clock.now += 5
    state = (await teams.poll(None, [], 0)).state
    clock.now += 60
    lee = sim.add_chat([ids["lee"]])
    sim.post(lee, ids["lee"], "New DM", content_type="text")
    known = [ChatData(external_chat_id=ids["dm"])]
    result = await teams.poll(state, known, 0)
    assert [(c.external_chat_id, c.name, c.kind) for c in result.changes.chats] == [(lee, "Lee Gu", "dm")]
    assert [m.text for m in result.changes.messages] == ["New DM"]


async def test_poll_asks_graph_for_changes_after_the_mark_minus_the_lookback(teams, sim, ids, clock):
    state = (await teams.poll(None, [], 0)).state
    seen: list[httpx.Request] = []
    transport = teams.http.client.wire

    class Spy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return await transport.handle_async_request(request)

    teams.http.client.wire = Spy()
    await teams.poll(state, [ChatData(external_chat_id=ids["dm"])], 300)
    [listed] = [r for r in seen if r.url.path == f"/v1.0/chats/{ids['dm']}/messages"]
    assert listed.url.params["$orderby"] == "lastModifiedDateTime desc"
    assert listed.url.params["$filter"] == "lastModifiedDateTime gt 2027-01-15T07:55:00.000Z"


# -- tokens ---------------------------------------------------------------------------------------

async def test_a_token_about_to_expire_is_refreshed_first_and_the_rotated_grant_stored(sim, clock, ids):
    saved: list[dict[str, Any]] = []
    teams = make(sim, clock, saved=saved, expiresAt=clock() + 120)
    sim.revoke_used_refresh_tokens = True  # proves the rotated refresh token is the one used next
    await teams.identify()
    assert sim.faults.calls["token"] == 1 and sim.faults.calls["me"] == 1
    [first] = saved
    assert first["refreshToken"] != "sim-graph-refresh" and first["refreshToken"] in sim.refresh_tokens
    assert first["accessToken"] in sim.tokens and first["expiresAt"] == int(clock() + 3599)
    assert first["clientState"] == "client-state-0123456789" and first["clientSecret"] == sim.client[1]
    clock.now += 3599 - 60  # inside the margin again
    await teams.identify()
    assert sim.faults.calls["token"] == 2 and saved[1]["refreshToken"] != first["refreshToken"]
    await teams.close()


async def test_a_401_refreshes_once_and_retries(sim, clock, ids):
    saved: list[dict[str, Any]] = []
    teams = make(sim, clock, saved=saved)
    sim.expire_token("sim-graph-token")
    chats = await teams.list_chats()
    assert len(chats) == 4 and sim.faults.calls["token"] == 1 and len(saved) == 1
    await teams.list_chats()
    assert sim.faults.calls["token"] == 1
    await teams.close()


async def test_credentials_without_an_access_token_refresh_before_the_first_call(sim, clock):
    teams = make(sim, clock, accessToken=None, expiresAt=None)
    [me] = await teams.identify()
    assert me.external_user_id == sim.me and sim.faults.calls["token"] == 1
    await teams.close()


async def test_a_refused_refresh_is_an_auth_error_without_secrets(sim, clock):
    teams = make(sim, clock, refreshToken="0.revoked-refresh")
    sim.expire_token("sim-graph-token")
    with pytest.raises(AuthError) as caught:
        await teams.identify()
    assert "invalid_grant" in str(caught.value)
    assert not any(s in str(caught.value) for s in ("0.revoked-refresh", sim.client[1], "sim-graph-token"))
    await teams.close()


async def test_a_bare_expired_access_token_is_an_auth_error(sim, clock):
    teams = make(sim, clock, refreshToken=None, clientId=None, clientSecret=None)
    sim.expire_token("sim-graph-token")
    with pytest.raises(AuthError, match="401 InvalidAuthenticationToken"):
        await teams.identify()
    assert sim.faults.calls["token"] == 0
    await teams.close()


async def test_the_login_root_comes_from_the_environment(sim, clock, monkeypatch):
    monkeypatch.setenv("SYNCD_MICROSOFT_LOGIN_BASE_URL", "https://login.sim.example/")
    seen: list[str] = []
    teams = make(sim, clock, accessToken=None, expiresAt=None)
    transport = teams.http.client.wire

    class Spy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return await transport.handle_async_request(request)

    teams.http.client.wire = Spy()
    await teams.identify()
    assert seen[0] == f"https://login.sim.example/{sim.tenant_id}/oauth2/v2.0/token"
    await teams.close()


async def test_the_oauth_connect_flow_yields_credentials_for_the_users_tenant(sim):
    spec = TeamsConnector.oauth
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="https://login.microsoftonline.com") as c:
        answer = await c.get(spec.authorize_url, params={
            "client_id": sim.client[0], "redirect_uri": "https://syncd.example/oauth/teams", "state": "st-1",
            "scope": " ".join(spec.scopes), "response_type": "code", **dict(spec.authorize_params)})
        assert answer.status_code == 302
        back = parse_qs(urlsplit(answer.headers["location"]).query)
        assert back["state"] == ["st-1"]
        token = (await c.post(spec.token_url, data={
            "grant_type": "authorization_code", "code": back["code"][0], "client_id": sim.client[0],
            "client_secret": sim.client[1], "redirect_uri": "https://syncd.example/oauth/teams"})).json()
    creds = TeamsConnector.credentials_from_oauth(token, client_id=sim.client[0], client_secret=sim.client[1])
    assert creds["tenantId"] == sim.tenant_id and creds["refreshToken"] == token["refresh_token"]
    assert len(creds["clientState"]) >= 32
    TeamsCredentials.model_validate(creds)


# -- errors ---------------------------------------------------------------------------------------

async def test_a_rate_limit_is_waited_out_for_its_retry_after(sim, clock, ids):
    sleeps = Sleeps()
    teams = make(sim, clock, sleeps=sleeps)
    sim.faults.fail_next("messages.list", "rate_limit", retry_after_s=7)
    page = await teams.fetch_history_page(ChatData(external_chat_id=ids["dm"]), None)
    assert len(page.messages) == 2 and sleeps == [7]
    await teams.close()


async def test_server_errors_become_transient_once_retries_are_spent(sim, clock, ids):
    teams = make(sim, clock, max_retries=2)
    sim.faults.fail_next("me", "server_error", times=5)
    with pytest.raises(TransientError, match="503 serviceNotAvailable"):
        await teams.identify()
    assert sim.faults.calls["me"] == 3
    await teams.close()


async def test_attachments_are_kept_as_metadata_and_a_quoted_message_is_not_a_file(teams, sim, ids):
    sim.post(ids["dm"], ids["megan"], '<p>See the plan</p><attachment id="a1"></attachment>', attachments=[
        {"id": "a1", "contentType": "reference", "name": "plan.docx", "content": None, "thumbnailUrl": None,
         "contentUrl": "https://contoso.sharepoint.com/sites/x/Shared%20Documents/plan.docx"},
        {"id": "1616964509832", "contentType": "messageReference", "name": None, "contentUrl": None,
         "content": '{"messageId":"1616964509832"}', "thumbnailUrl": None}])
    newest = (await teams.fetch_history_page(ChatData(external_chat_id=ids["dm"]), None)).messages[0]
    assert newest.text == "See the plan"
    assert [(a.name, a.mime_type, a.url, a.external_id) for a in newest.attachments] == [
        ("plan.docx", "reference", "https://contoso.sharepoint.com/sites/x/Shared%20Documents/plan.docx", "a1")]

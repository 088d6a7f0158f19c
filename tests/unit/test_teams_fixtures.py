"""Microsoft Graph's documented payloads and vectors, through the Teams connector and its mapping.

Every payload is a real sample (``tests/fixtures/teams.json``, each item names its source);
Graph's answers are served with ``httpx.MockTransport`` exactly as documented.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import RateLimited, SignatureError
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping
from syncd.providers.teams.connector import TeamsConnector, TeamsCredentials, locate
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = json.loads((ROOT / "tests/fixtures/teams.json").read_text())
HANDSHAKE, WRONG_STATE = FIXTURES["signature_vectors"]
GRAPH = "https://graph.microsoft.com/v1.0"
ME = "1fb8890f-423e-4154-8fbf-db6809bc8756"


def sample(kind: str, contains: str = "") -> dict[str, Any]:
    return copy.deepcopy(next(s for s in FIXTURES["samples"] if s["kind"] == kind and contains in s["description"]))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def connector(handle: Callable[[httpx.Request], httpx.Response] | None = None, *, client_state: str = "secretClientValue",
              max_retries: int = 0, sleeps: Sleeps | None = None) -> TeamsConnector:
    def default(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1.0/me":
            return httpx.Response(200, json={"id": ME, "displayName": "Robin", "mail": None,
                                             "userPrincipalName": "Robin@Contoso.example"})
        return (handle or (lambda r: httpx.Response(404, json={"error": {"code": "NotFound", "message": "x"}})))(request)

    creds = TeamsCredentials(access_token="eyJ-test-token", client_state=client_state)
    policy = RetryPolicy(max_retries=max_retries, sleep=Sleeps() if sleeps is None else sleeps)
    http = TeamsConnector.make_http(GRAPH, creds, policy=policy,
                                    timeout_s=5, transport=httpx.MockTransport(default))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/teams.yaml"),
                           webhook_url="https://syncd.test/webhooks/teams/i1", clock=lambda: 1_700_000_000.0)
    return TeamsConnector(creds, {}, ctx)


def delivery(payload: dict[str, Any], query: dict[str, str] | None = None) -> WebhookRequest:
    body = json.dumps(payload).encode() if payload is not None else b""
    return WebhookRequest("POST", "https://syncd.test/webhooks/teams/i1", {"content-type": "application/json"},
                          query or {}, body)


# -- verification ---------------------------------------------------------------------------------

def test_the_validation_handshake_echoes_the_url_decoded_token_as_text_plain():
    # What the HTTP layer hands the connector: the query string of Graph's URL, form-decoded.
    query = {k: v[0] for k, v in parse_qs(urlsplit(HANDSHAKE["url"]).query).items()}
    assert query == HANDSHAKE["params"]
    accepted = connector().accept_webhook(delivery(None, query))
    assert accepted.delivery_id is None  # nothing to store
    assert accepted.answer.status_code == HANDSHAKE["expected_status"]
    assert accepted.answer.media_type == HANDSHAKE["expected_content_type"]
    assert accepted.answer.body == HANDSHAKE["expected"]


def test_a_notification_whose_client_state_differs_in_case_is_refused():
    with pytest.raises(SignatureError, match="clientState"):
        connector(client_state=WRONG_STATE["expected"]).accept_webhook(delivery(WRONG_STATE["body"]))


def test_the_same_notification_with_the_right_client_state_is_accepted_with_202():
    body = copy.deepcopy(WRONG_STATE["body"])
    body["value"][0]["clientState"] = WRONG_STATE["expected"]
    accepted = connector(client_state=WRONG_STATE["expected"]).accept_webhook(delivery(body))
    assert accepted.delivery_id and accepted.delivery_id.startswith("sha256:")
    assert accepted.answer.status_code == 202


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"value": []}', b'{"value": [1]}', b'{"other": true}'])
def test_a_delivery_that_is_not_a_notification_batch_is_refused(body):
    request = WebhookRequest("POST", "https://syncd.test/x", {}, {}, body)
    with pytest.raises(SignatureError):
        connector().accept_webhook(request)


def test_without_a_client_state_every_notification_is_refused():
    teams = connector(client_state=None)  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="no clientState"):
        teams.accept_webhook(delivery(sample("webhook", "WITHOUT resource data")["payload"]))


# -- chats ----------------------------------------------------------------------------------------

async def test_the_documented_chat_list_maps_every_chat_kind_and_name():
    payload = sample("chat_list")["payload"]
    teams = connector(lambda r: httpx.Response(200, json=payload) if r.url.path == "/v1.0/me/chats"
                      else httpx.Response(403, json={"error": {"code": "Forbidden", "message": "no teams scope"}}))
    chats = await teams.list_chats()
    assert [(c.external_chat_id, c.name, c.kind) for c in chats] == [
        ("19:meeting_MjdhNjM4YzUtYzExZi00OTFkLTkzZTAtNTVlNmZmMDhkNGU2@thread.v2", "Meeting chat sample", "group"),
        ("19:561082c0f3f847a58069deb8eb300807@thread.v2", "Group chat sample", "group"),
        # A 1:1 chat has no topic; without members expanded it has no name either.
        ("19:d74fc2ed-cb0e-4288-a219-b5c71abaf2aa_8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca@unq.gbl.spaces", None, "dm"),
    ]
    assert all(c.participants == [] and c.last_message_at is None for c in chats)


# -- history --------------------------------------------------------------------------------------

def history_connector(seen: list[httpx.Request]) -> tuple[TeamsConnector, dict[str, Any]]:
    payload = sample("history_page")["payload"]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=payload)

    return connector(handle), payload


async def test_the_documented_history_page_maps_messages_skips_system_events_and_keeps_the_next_link():
    seen: list[httpx.Request] = []
    teams, payload = history_connector(seen)
    chat = ChatData(external_chat_id="19:2da4c29f6d7041eca70b638b43d45437@thread.v2")
    page = await teams.fetch_history_page(chat, None)

    assert seen[0].url.path == "/v1.0/chats/19:2da4c29f6d7041eca70b638b43d45437@thread.v2/messages"
    assert seen[0].url.params["$top"] == "50"
    assert page.next_cursor == payload["@odata.nextLink"]
    text, image = page.messages  # the systemEventMessage (and its malformed date) is skipped
    assert text.external_chat_id == chat.external_chat_id
    assert text.external_message_id == f"{chat.external_chat_id}:1616964509832"
    assert text.external_thread_id is None  # chats have no threads
    assert (text.text, text.html) == ("Hello world", None)
    assert (text.sender.external_user_id, text.sender.name) == ("8ea0e38b-efb3-4757-924a-5f94061cf8c2", "Robin Kline")
    assert text.sent_at == utc(2021, 3, 28, 20, 48, 29, 832000)
    assert (text.edited_at, text.deleted_at, text.attachments) == (None, None, None)
    assert text.extra == {"importance": "normal"}
    assert image.external_message_id == f"{chat.external_chat_id}:1615971548136"
    assert image.html.startswith("<div><div><div><span><img height=\"63\"")
    assert image.text is None  # an image without alt text has no readable text
    assert image.sent_at == utc(2021, 3, 17, 8, 59, 8, 136000)


async def test_the_next_page_is_requested_verbatim_from_the_next_link():
    seen: list[httpx.Request] = []
    teams, payload = history_connector(seen)
    chat = ChatData(external_chat_id="19:2da4c29f6d7041eca70b638b43d45437@thread.v2")
    payload["@odata.nextLink"] = payload["@odata.nextLink"] + "2"  # so the cursor does not repeat
    await teams.fetch_history_page(chat, sample("history_page")["payload"]["@odata.nextLink"])
    sent = seen[0].url
    documented = parse_qs(urlsplit(sample("history_page")["payload"]["@odata.nextLink"]).query)
    assert sent.params["$skiptoken"] == documented["$skiptoken"][0]
    assert sent.params["$top"] == "2" and sent.host == "graph.microsoft.com"


def test_a_malformed_documented_timestamp_is_repaired_not_fatal():
    system = sample("history_page")["payload"]["value"][2]
    system["messageType"] = "message"  # mapped as if it were content
    mapped = connector()._map(system, locate("19:2da4c29f6d7041eca70b638b43d45437@thread.v2"))
    assert mapped.sent_at == utc(2021, 3, 17, 6, 47, 5, 123000)
    assert mapped.sender.external_user_id is None  # "from": null


# -- notifications --------------------------------------------------------------------------------

MESSAGE = sample("history_page")["payload"]["value"][0]


def fetch_connector(seen: list[httpx.Request], client_state: str, answer: dict[str, Any] | None = None,
                    status: int = 200) -> TeamsConnector:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith("/v1.0/chats/") and request.url.path.count("/") == 3:
            return httpx.Response(200, json={"id": request.url.path.split("/")[3], "topic": "Support", "chatType": "group",
                                             "members": []})
        if status != 200:
            return httpx.Response(status, json={"error": {"code": "NotFound", "message": "gone"}})
        return httpx.Response(200, json=answer or {**MESSAGE, "id": "1612289765949"})

    return connector(handle, client_state=client_state)


@pytest.mark.parametrize("contains", ["WITH resource data", "WITHOUT resource data"])
async def test_a_documented_change_notification_fetches_the_message_by_its_resource(contains):
    payload = sample("webhook", contains)["payload"]
    seen: list[httpx.Request] = []
    teams = fetch_connector(seen, payload["value"][0]["clientState"])
    request = delivery(payload)
    assert teams.accept_webhook(request).delivery_id is not None
    changes = await teams.parse_webhook(request)
    chat = "19:8ea0e38b-efb3-4757-924a-5f94061cf8c2_97f62344-57dc-409c-88ad-c4af14158ff5@unq.gbl.spaces"
    fetched = [r for r in seen if r.url.path.endswith("/messages/1612289765949")]
    assert fetched[0].url.path == f"/v1.0/chats/{chat}/messages/1612289765949"
    [message] = changes.messages
    assert message.external_message_id == f"{chat}:1612289765949" and message.text == "Hello world"
    assert [(c.external_chat_id, c.name) for c in changes.chats] == [(chat, "Support")]
    assert not changes.poll_requested and not changes.resync_requested


async def test_a_notification_for_a_message_graph_no_longer_has_becomes_a_tombstone():
    payload = sample("webhook", "WITHOUT resource data")["payload"]
    teams = fetch_connector([], payload["value"][0]["clientState"], status=404)
    [gone] = (await teams.parse_webhook(delivery(payload))).messages
    assert gone.external_message_id.endswith("@unq.gbl.spaces:1612289765949")
    assert gone.deleted_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)


async def test_an_updated_notification_without_a_version_is_not_merged_with_a_later_identical_one():
    payload = sample("webhook", "WITHOUT resource data")["payload"]  # changeType "updated"
    teams = connector()
    first = teams.accept_webhook(delivery(payload)).delivery_id
    teams.ctx.clock = lambda: 1_700_000_060.0  # the same bytes, a minute later: a second edit
    assert teams.accept_webhook(delivery(payload)).delivery_id != first
    payload["value"][0]["changeType"] = "created"
    created = teams.accept_webhook(delivery(payload)).delivery_id
    teams.ctx.clock = lambda: 1_700_000_120.0
    assert teams.accept_webhook(delivery(payload)).delivery_id == created  # a replay of a create


async def test_the_documented_reauthorization_lifecycle_event_renews_the_subscription():
    payload = sample("webhook", "Lifecycle notification")["payload"]
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "10493aa0-4d29-4df5-bc0c-ef742cc6cd7f",
                                         "expirationDateTime": "2023-11-14T23:11:20.000Z"})

    teams = connector(handle)
    changes = await teams.parse_webhook(delivery(payload))
    assert (seen[0].method, seen[0].url.path) == ("PATCH", "/v1.0/subscriptions/10493aa0-4d29-4df5-bc0c-ef742cc6cd7f")
    # Renewed for 58 minutes from the connector's clock (Graph allows 60 for chat messages).
    assert json.loads(seen[0].content) == {"expirationDateTime": "2023-11-14T23:11:20.000Z"}
    assert changes.messages == [] and not changes.poll_requested


@pytest.mark.parametrize(("event", "poll", "resync"), [("subscriptionRemoved", True, False), ("missed", False, True)])
async def test_other_lifecycle_events_ask_for_a_poll_or_a_resync(event, poll, resync):
    payload = sample("webhook", "Lifecycle notification")["payload"]
    payload["value"][0]["lifecycleEvent"] = event
    changes = await connector().parse_webhook(delivery(payload))
    assert (changes.poll_requested, changes.resync_requested, changes.messages) == (poll, resync, [])


# -- errors ---------------------------------------------------------------------------------------

async def test_the_documented_429_is_waited_out_for_its_retry_after_whatever_its_error_code():
    throttled = sample("send_response")
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(throttled["http_status"], headers=throttled["headers"], json=throttled["payload"])
        return httpx.Response(201, json={**MESSAGE, "id": "1700000000000"})

    sleeps = Sleeps()
    teams = connector(handle, max_retries=2, sleeps=sleeps)
    result = await teams.send(OutgoingMessage(chat=ChatData(external_chat_id="19:abc@thread.v2"), text="hi"))
    assert sleeps == [10.0] and result.external_message_id == "19:abc@thread.v2:1700000000000"


async def test_a_429_that_outlasts_the_retries_is_rate_limited_with_its_retry_after():
    throttled = sample("send_response")
    teams = connector(lambda r: httpx.Response(429, headers=throttled["headers"], json=throttled["payload"]))
    with pytest.raises(RateLimited) as caught:
        await teams.list_chats()
    assert caught.value.retry_after == 10.0 and caught.value.status == 429

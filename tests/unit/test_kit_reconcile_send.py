"""The manifest's ``reconcileSend``: a send whose answer was lost is looked for with a declared
request; the record that matches what the send carried becomes the send's result, through the
send's own ``result`` mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import ManifestConnector
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import ManifestError, check_references
from syncd.kit.manifest import Manifest
from syncd.mapping import Mapping
from syncd.universal import ChatData, OutgoingMessage

MANIFEST: dict[str, Any] = {
    "platform": "chatter",
    "api": {"root": "https://chatter.test"},
    "requests": {
        "send": {"method": "POST", "path": "/send", "result": "sent"},
        "reconcileSend": [
            {"when": [{"path": "externalThreadId", "present": True}],
             "path": "/threads/{message.externalThreadId}", "params": {"after": "{since}"},
             "records": "items", "match": [{"path": "meta.ref", "equals": "{message.appMessageId}"}]},
            {"path": "/rooms/{chat.externalChatId}/messages", "params": {"after": "{since}"},
             "records": "items", "paginator": {"type": "cursor", "path": "next", "param": "page"},
             "match": [{"path": "meta.ref", "equals": "{message.appMessageId}"}],
             "answer": {"message": {"id": "{record.id}", "at": "{record.at}"}, "room": "{chat.externalChatId}"},
             "windowS": 60, "timeFormat": "iso8601"},
        ],
    },
    "mapping": {"send": {"text": {"path": "text"}, "meta.ref": {"path": "appMessageId"}},
                "sections": {"sent": {"externalMessageId": {"template": "{room}/{message.id}", "required": True},
                                      "sentAt": {"path": "message.at", "transform": "epoch_ms"}}}},
}
PAGES = {
    None: {"items": [{"id": "m1", "at": 1000, "meta": {"ref": "other"}}, {"id": "m2", "at": 2000}], "next": "p2"},
    "p2": {"items": [{"id": "m3", "at": 3000, "meta": {"ref": "app-7"}}], "next": None},
}


def build(seen: list[httpx.Request], manifest: dict[str, Any] = MANIFEST) -> ManifestConnector:
    spec = Manifest.model_validate(manifest)
    bound = ManifestConnector.bind(spec)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith("/threads/"):
            # Shaped like the send's own answer: the record itself is read by the result mapping.
            return httpx.Response(200, json={"items": [{"room": "room-1", "message": {"id": "t1", "at": 500},
                                                        "meta": {"ref": "app-7"}}]})
        return httpx.Response(200, json=PAGES[request.url.params.get("page")])

    creds = bound.Credentials()
    http = bound.make_http("https://chatter.test", creds, policy=RetryPolicy(max_retries=0), timeout_s=5,
                           transport=httpx.MockTransport(answer))
    ctx = ConnectorContext(http=http, mapping=Mapping("chatter", spec.mapping, "chatter.yaml"),
                           webhook_url="https://syncd.test/webhooks/chatter/i1", clock=lambda: 10_000.0)
    return bound(creds, {}, ctx)


def outgoing(app_id: str | None, thread: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(ChatData(external_chat_id="room-1"), text="hi", app_message_id=app_id,
                           external_thread_id=thread, registered_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))


async def test_the_record_carrying_the_app_message_id_becomes_the_send_result_through_the_result_mapping():
    seen: list[httpx.Request] = []
    found = await build(seen).reconcile_send(outgoing("app-7"))

    assert found is not None
    assert found.external_message_id == "room-1/m3"  # on the second page
    assert found.sent_at == datetime.fromtimestamp(3, tz=UTC)
    assert [r.url.path for r in seen] == ["/rooms/room-1/messages"] * 2
    # Searched from the first attempt's registration, less the window, written as declared.
    assert seen[0].url.params["after"] == "2026-01-01T11:59:00Z"


async def test_no_matching_record_means_not_found_so_the_message_is_sent_again():
    seen: list[httpx.Request] = []
    assert await build(seen).reconcile_send(outgoing("app-never-sent")) is None
    assert len(seen) == 2  # every page was read


async def test_a_message_with_nothing_to_recognise_it_by_is_not_searched_and_never_matches_a_bare_record():
    seen: list[httpx.Request] = []
    assert await build(seen).reconcile_send(outgoing(None)) is None
    assert seen == []  # m2 has no meta.ref: a missing app id must not match it


async def test_the_first_search_whose_when_the_message_passes_is_used_and_the_answer_defaults_to_the_record():
    seen: list[httpx.Request] = []
    found = await build(seen).reconcile_send(outgoing("app-7", thread="th-1"))

    assert [r.url.path for r in seen] == ["/threads/th-1"]
    assert seen[0].url.params["after"] == str(int(datetime(2026, 1, 1, 11, 55, tzinfo=UTC).timestamp()))
    assert found is not None and found.external_message_id == "room-1/t1"


async def test_a_platform_without_a_declared_search_reports_not_found():
    manifest = {**MANIFEST, "requests": {"send": MANIFEST["requests"]["send"]}}
    seen: list[httpx.Request] = []
    assert await build(seen, manifest).reconcile_send(outgoing("app-7")) is None
    assert seen == []


def test_a_search_must_compare_something_the_send_carried():
    bad = {**MANIFEST, "requests": {**MANIFEST["requests"], "reconcileSend": [
        {"path": "/x", "match": [{"path": "meta.ref", "present": True}]}]}}
    with pytest.raises(ValidationError, match="needs a condition with equals"):
        Manifest.model_validate(bad)
    with pytest.raises(ValidationError):
        Manifest.model_validate({**MANIFEST, "requests": {**MANIFEST["requests"], "reconcileSend": [{"path": "/x"}]}})


def test_a_search_needs_the_send_result_mapping_that_reads_what_it_found():
    manifest = Manifest.model_validate({**MANIFEST, "requests": {**MANIFEST["requests"],
                                                                 "send": {"method": "POST", "path": "/send"}}})
    with pytest.raises(ManifestError, match="requests.send.result"):
        check_references(manifest, "chatter.yaml")

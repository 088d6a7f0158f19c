"""A paginator with ``stopOnEmpty``: an event log that names a next page after its last one is
read until a page selects no records (before ``where``), not forever."""

from __future__ import annotations

from typing import Any

import httpx

from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import ManifestConnector
from syncd.kit.http import RetryPolicy
from syncd.kit.manifest import Manifest
from syncd.mapping import Mapping
from syncd.universal import ChatData

ROOT = "https://log.test/v1"


def manifest(stop_on_empty: bool) -> dict[str, Any]:
    paginator = {"type": "next_url", "path": "paging.next", "stopOnEmpty": stop_on_empty}
    return {
        "platform": "eventlog",
        "capabilities": {"history": True},
        "api": {"root": ROOT},
        "credentials": {"key": {"secret": True}},
        "requests": {"history": {"path": "/events", "records": "items", "paginator": paginator,
                                 "where": [{"path": "kind", "equals": "message"}]}},
        "mapping": {"message": {"externalChatId": {"const": "log"},
                                "externalMessageId": {"path": "id", "required": True}}},
    }


def build(stop_on_empty: bool, seen: list[str]) -> ManifestConnector:
    # Every page names a next one; page 2 holds only records ``where`` drops; page 3 is empty and
    # names itself again; page 6 is empty and names page 4.
    pages = {"/v1/events": [{"id": "e1", "kind": "message"}], "/v1/events/p2": [{"id": "n1", "kind": "notice"}],
             "/v1/events/p3": [], "/v1/events/p4": [{"id": "e4", "kind": "message"}]}
    after = {"/v1/events": "p2", "/v1/events/p2": "p3", "/v1/events/p3": "p3", "/v1/events/p4": "p5",
             "/v1/events/p6": "p4"}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        path = request.url.path
        return httpx.Response(200, json={"items": pages.get(path, []),
                                         "paging": {"next": f"{ROOT}/events/{after.get(path, 'end')}"}})

    loaded = Manifest.model_validate(manifest(stop_on_empty))
    bound = ManifestConnector.bind(loaded)
    creds = bound.Credentials(key="k")
    http = bound.make_http(ROOT, creds, policy=RetryPolicy(max_retries=0), timeout_s=5,
                           transport=httpx.MockTransport(answer))
    ctx = ConnectorContext(http=http, mapping=Mapping("eventlog", loaded.mapping, "eventlog.yaml"),
                           webhook_url="https://syncd.test/webhooks/eventlog/i1", clock=lambda: 0.0)
    return bound(creds, {}, ctx)


async def test_a_page_without_records_is_the_last_though_the_answer_names_a_next_one():
    seen: list[str] = []
    connector = build(True, seen)
    chat = ChatData(external_chat_id="log")
    first = await connector.fetch_history_page(chat, None)
    assert [m.external_message_id for m in first.messages] == ["e1"]
    # Records that ``where`` drops still make a page that is not the end.
    second = await connector.fetch_history_page(chat, first.next_cursor)
    assert second.messages == [] and second.next_cursor == f"{ROOT}/events/p3"
    last = await connector.fetch_history_page(chat, second.next_cursor)
    assert last.messages == [] and last.next_cursor is None
    assert seen == ["/v1/events", "/v1/events/p2", "/v1/events/p3"]


async def test_without_it_an_empty_page_still_leads_to_the_next():
    connector = build(False, [])
    page = await connector.fetch_history_page(ChatData(external_chat_id="log"), f"{ROOT}/events/p6")
    assert page.messages == [] and page.next_cursor == f"{ROOT}/events/p4"

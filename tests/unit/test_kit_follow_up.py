"""``followUp`` on a webhook event rule: per record, a named request once the delivery is
stored and another once storing it failed for good (a reply confirmed or handed back)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import ManifestConnector
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import load_manifest
from syncd.mapping import Mapping, MappingError

MANIFEST = """platform: replies
capabilities: {webhooks: true}
api: {root: "https://replies.test"}
requests:
  named:
    done: {method: POST, path: "/done/{record.id}", body: {ok: "{record.id}"}}
    back: {method: POST, path: "/back/{record.id}"}
webhook:
  verify: [{type: token, header: X-T, value: "t"}]
  events:
    - records: "replies[]"
      as: message
      followUp: {stored: done, failed: back}
mapping:
  message:
    externalChatId: {path: chat, required: true}
    externalMessageId: {path: id, required: true}
"""


def _connector(tmp_path: Path, seen: list[str]) -> ManifestConnector:
    (tmp_path / "replies.yaml").write_text(MANIFEST)
    loaded = load_manifest(tmp_path / "replies.yaml")
    cls = ManifestConnector.bind(loaded.manifest)
    creds = cls.Credentials.model_validate({})

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path} {request.content.decode()}")
        return httpx.Response(201, json={})

    http = cls.make_http("https://replies.test", creds, policy=RetryPolicy(), timeout_s=5,
                         transport=httpx.MockTransport(answer))
    ctx = ConnectorContext(http=http, mapping=Mapping("replies", loaded.manifest.mapping, "replies"),
                           webhook_url="https://x/y")
    return cls(creds, {}, ctx)


@pytest.mark.parametrize(("stored", "path"), [(True, "/done/r1"), (False, "/back/r1")])
async def test_each_mapped_record_is_followed_up_by_the_named_request(tmp_path, stored, path):
    seen: list[str] = []
    connector = _connector(tmp_path, seen)
    changes = connector.changes_of({"replies": [{"id": "r1", "chat": "c1"}]})
    assert [m.external_message_id for m in changes.messages] == ["r1"] and len(changes.follow_ups) == 1
    await connector.follow_up(changes.follow_ups, stored=stored)
    assert [s.split(" ")[0] for s in seen] == [path]
    if stored:
        assert seen[0].endswith('{"ok":"r1"}')


def test_a_follow_up_naming_an_undeclared_request_is_refused_at_load(tmp_path):
    (tmp_path / "replies.yaml").write_text(MANIFEST.replace("failed: back", "failed: nowhere"))
    with pytest.raises(MappingError, match="followUp.failed"):
        load_manifest(tmp_path / "replies.yaml")

"""Kit parts for a platform that lives at a URL it hands over and speaks another platform's
payloads: ``api.rootCredential``, ``mappingFrom``, negative list indexes in paths, and plugin
URLs masked in logs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import AuthError
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import load_manifest
from syncd.kit.manifest import Manifest
from syncd.kit.templates import lookup
from syncd.logs import REDACTED, redact_secrets
from syncd.mapping import MappingError

BASE = """platform: base
capabilities: {webhooks: false}
api: {root: "https://base.test"}
mapping:
  message:
    externalChatId: {path: chat, required: true}
    externalMessageId: {path: id, required: true}
    text: {path: body}
  sections:
    extraSection:
      externalChatId: {path: chat}
"""

CHILD = """platform: child
mappingFrom: base
capabilities: {webhooks: false}
api: {root: "https://child.test"}
mapping:
  message:
    text: {path: content.text}
  sections:
    own:
      externalChatId: {path: room}
"""


def test_mapping_from_merges_sections_field_by_field(tmp_path: Path):
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "child.yaml").write_text(CHILD)
    loaded = load_manifest(tmp_path / "child.yaml")
    message = loaded.manifest.mapping.message
    assert message["externalMessageId"].path == "id"  # inherited
    assert message["text"].path == "content.text"  # replaced whole
    assert set(loaded.manifest.mapping.sections) == {"extraSection", "own"}


def test_mapping_from_an_unknown_manifest_names_the_file_and_the_key(tmp_path: Path):
    (tmp_path / "child.yaml").write_text(CHILD.replace("mappingFrom: base", "mappingFrom: nowhere"))
    with pytest.raises(MappingError, match="mappingFrom"):
        load_manifest(tmp_path / "child.yaml")


ROOTED = Manifest.model_validate({
    "platform": "rooted", "api": {"root": "https://documented.test/api", "rootCredential": "apiUrl"},
    "credentials": {"apiUrl": {"required": False}, "token": {"secret": True, "required": False}},
    "auth": {"type": "header", "header": "Authorization", "value": "Token {credentials.token}"},
    "requests": {"listChats": {"path": "/chats/", "records": "results", "map": "chat"}},
    "mapping": {"chat": {"externalChatId": {"path": "id", "required": True}}},
})


def _connector(credentials: dict, seen: list[str]) -> ManifestConnector:
    from syncd.kit.connector import ConnectorContext
    from syncd.mapping import Mapping

    cls = ManifestConnector.bind(ROOTED)
    creds = cls.Credentials.model_validate(credentials)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"results": [{"id": "c1"}]})

    http = cls.make_http("https://configured.test/api", creds, policy=RetryPolicy(), timeout_s=5,
                         transport=httpx.MockTransport(answer))
    ctx = ConnectorContext(http=http, mapping=Mapping("rooted", ROOTED.mapping, "rooted"), webhook_url="https://x/y")
    return cls(creds, {}, ctx)


async def test_the_root_credential_is_the_api_root_once_it_is_set():
    seen: list[str] = []
    connector = _connector({"apiUrl": "https://stack.example/api/v1/", "token": "t"}, seen)
    chats = await connector.list_chats()
    assert [c.external_chat_id for c in chats] == ["c1"] and seen == ["https://stack.example/api/v1/chats/"]


async def test_without_the_root_credential_nothing_is_requested_and_the_refusal_is_an_auth_error():
    seen: list[str] = []
    connector = _connector({}, seen)
    with pytest.raises(AuthError, match="apiUrl"):
        await connector.list_chats()
    assert seen == []


def test_a_negative_index_reads_from_the_end_of_a_list():
    doc = {"results": [{"t": 3}, {"t": 2}, {"t": 1}]}
    assert lookup(doc, "results.-1.t") == 1 and lookup(doc, "results.-4.t") is None and lookup(doc, "results.0.t") == 3


def test_a_plugin_urls_secret_segment_is_masked_in_logs():
    event = redact_secrets(None, "info", {"event": "called https://h/plugins/p/i123/SeCrEt-segment_x/contacts/"})
    assert "SeCrEt" not in event["event"] and f"/plugins/p/i123/{REDACTED}/contacts/" in event["event"]

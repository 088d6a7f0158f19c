"""The mapping engine: the file schema, load-time validation, rule evaluation, transforms."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.kit.loader import load_all, load_manifest
from syncd.mapping import MappingError, load_mapping, mappings_dir
from syncd.universal import ChatData, MessageData, OutgoingMessage

GOOD = """
platform: demo
mapping:
  message:
    externalChatId: {path: [channel, ctx.channel]}
    externalMessageId: {template: "{ctx.channel}:{ts}", required: true}
    sentAt: {path: ts, transform: slack_ts}
    editedAt: {path: edited.ts, transform: slack_ts}
    sender.externalUserId: {path: [user, bot_id]}
    sender.email: {path: headers.from, transform: email_address}
    sender.name: {path: headers.from, transform: email_name}
    fromSelf: {path: bot_id, transform: present}
    text: {path: text}
    extra.kind: {const: chat}
  chat:
    externalChatId: {path: id, required: true}
    name: {path: [name, user], default: unnamed}
    kind: {cases: [{when: is_im, value: dm}, {when: type, equals: mpim, value: group}], default: channel}
    participants: {path: members}
  send:
    channel: {path: externalChatId}
    text: {path: text}
    thread: {template: "{externalThreadId}"}
  sections:
    webhook:
      deliveryId: {path: event_id}
"""


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def mapping(tmp_path):
    return load_mapping(write(tmp_path, GOOD))


def test_a_message_maps_paths_templates_transforms_and_context(mapping):
    raw = {"ts": "1355517523.000005", "text": "Hello world", "user": "U1",
           "headers": {"from": "Guilherme Dias <Email@Domain.com>"}, "edited": {"ts": "1355517600.000000"}}
    message = mapping.message(raw, {"channel": "C1"})
    assert isinstance(message, MessageData)
    assert message.external_chat_id == "C1"  # the ctx fallback of the path list
    assert message.external_message_id == "C1:1355517523.000005"
    assert message.sent_at == datetime(2012, 12, 14, 20, 38, 43, 5, tzinfo=UTC)
    assert message.edited_at == datetime(2012, 12, 14, 20, 40, tzinfo=UTC)
    assert message.sender.external_user_id == "U1"
    assert message.sender.email == "email@domain.com"
    assert message.sender.name == "Guilherme Dias"
    assert message.from_self is False
    assert message.extra == {"kind": "chat"}


def test_a_missing_value_is_not_said_rather_than_erased(mapping):
    message = mapping.message({"ts": "1.0"}, {"channel": "C1"})
    assert message.text is None and message.edited_at is None and message.sender.external_user_id is None


def test_a_missing_required_value_names_the_file_and_field(mapping):
    with pytest.raises(MappingError) as err:
        mapping.message({"text": "no ts"}, {"channel": "C1"})
    assert err.value.field == "mapping.message.externalMessageId"
    assert "demo.yaml" in str(err.value) and "required" in str(err.value)


def test_a_value_a_transform_cannot_convert_is_a_mapping_error(mapping):
    with pytest.raises(MappingError, match="message.sentAt: cannot convert"):
        mapping.message({"ts": "not-a-number"}, {"channel": "C1"})


def test_a_payload_that_is_not_an_object_is_a_mapping_error(mapping):
    with pytest.raises(MappingError, match="expected an object"):
        mapping.message(["a", "list"], {"channel": "C1"})  # type: ignore[arg-type]


def test_cases_defaults_and_fallback_paths_shape_a_chat(mapping):
    assert mapping.chat({"id": "D1", "is_im": True, "user": "U2"}) == ChatData(
        external_chat_id="D1", name="U2", kind="dm")
    assert mapping.chat({"id": "G1", "type": "mpim", "members": ["a", "b"]}).kind == "group"
    assert mapping.chat({"id": "C1"}) == ChatData(external_chat_id="C1", name="unnamed", kind="channel")


def test_an_outgoing_message_renders_the_platform_request(mapping):
    out = OutgoingMessage(chat=ChatData(external_chat_id="C1"), text="hi", external_thread_id="171.1")
    assert mapping.outgoing("send", out) == {"channel": "C1", "text": "hi", "thread": "171.1"}
    no_thread = OutgoingMessage(chat=ChatData(external_chat_id="C1"), text="hi")
    assert mapping.outgoing("send", no_thread) == {"channel": "C1", "text": "hi"}


def test_free_sections_are_read_by_name(mapping):
    assert mapping.section("webhook", {"event_id": "Ev1"}) == {"deliveryId": "Ev1"}
    with pytest.raises(MappingError, match="no such section"):
        mapping.section("nope", {})


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("platform: demo\nmapping:\n  message:\n    textt: {path: text}\n", "mapping.message.textt", "unknown field 'textt'"),
        ("platform: demo\nmapping:\n  message:\n    sender.nick: {path: a}\n", "mapping.message.sender.nick", "unknown field 'nick'"),
        ("platform: demo\nmapping:\n  message:\n    text: {path: a, transform: shout}\n", "mapping.message.text", "unknown transform 'shout'"),
        ("platform: demo\nmapping:\n  message:\n    text: {path: a, const: b}\n", "mapping.message.text", "exactly one of"),
        ("platform: demo\nmapping:\n  message:\n    text: {}\n", "mapping.message.text", "exactly one of"),
        ("platform: demo\nmapping:\n  message:\n    text: {path: a, colour: red}\n", "mapping.message.text.colour", "Extra inputs"),
        ("platform: demo\nmapping:\n  send:\n    channel: {path: externalChannel}\n", "mapping.send.channel", "unknown source 'externalChannel'"),
        ("platform: demo\nmapping:\n  mesage:\n    text: {path: a}\n", "mapping.mesage", "Extra inputs"),
        ("platform: demo\nmapping:\n  chat: [1, 2]\n", "mapping.chat", "valid dictionary"),
        ("- just\n- a list\n", "-", "mapping of sections"),
        ("platform: demo\nmapping: {message: {text: {path: [unclosed}}\n", "-", "not valid YAML"),
    ],
)
def test_a_wrong_mapping_file_fails_at_load_with_file_field_and_problem(tmp_path, text, field, problem):
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert err.value.file == str(path)
    assert err.value.field == field
    assert problem in err.value.problem


def test_a_manifest_must_be_named_for_its_platform(tmp_path):
    write(tmp_path, "platform: other\n", name="demo.yaml")
    with pytest.raises(MappingError, match="the file is named 'demo'"):
        load_manifest(tmp_path / "demo.yaml")


def test_a_platform_name_is_lower_case(tmp_path):
    with pytest.raises(MappingError) as err:
        load_manifest(write(tmp_path, "platform: Demo Platform\n"))
    assert err.value.field == "platform" and "pattern" in err.value.problem


def test_a_missing_mapping_file_is_a_clear_error(tmp_path):
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")


def test_the_shipped_manifests_load_and_cover_every_platform():
    loaded = load_all()
    assert {"slack", "gmail"} <= set(loaded)
    assert mappings_dir().is_dir()


def test_an_extra_folder_adds_manifests_to_the_built_in_ones(tmp_path):
    write(tmp_path, GOOD)
    loaded = load_all(extra=tmp_path)
    assert "demo" in loaded and "slack" in loaded and loaded["demo"].custom


@pytest.mark.parametrize(
    ("transform", "value", "expected"),
    [
        ("epoch_ms", "1700000000123", datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)),
        ("epoch_s", 1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("iso8601", "2021-02-26T19:13:55.749Z", datetime(2021, 2, 26, 19, 13, 55, 749000, tzinfo=UTC)),
        ("rfc2822_date", "Fri, 26 Feb 2021 19:13:55 +0100", datetime(2021, 2, 26, 18, 13, 55, tzinfo=UTC)),
        ("email_list", "A <a@X.com>, b@y.org", ["a@x.com", "b@y.org"]),
        ("email_address", "nobody", "nobody"),
        ("first", ["x", "y"], "x"),
        ("nonempty", "", None),
        ("lower", "ABC", "abc"),
        ("int", "42", 42),
    ],
)
def test_transforms(tmp_path, transform, value, expected):
    text = f"platform: demo\nmapping:\n  sections:\n    extras_probe:\n      out: {{path: v, transform: {transform}}}\n"
    mapping = load_mapping(write(tmp_path, text))
    assert mapping.section("extras_probe", {"v": value}).get("out") == expected

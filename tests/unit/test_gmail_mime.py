"""Gmail message resources: MIME payload decoding and the mapping of their headers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping, mappings_dir
from syncd.providers.gmail.connector import GmailConnector, GmailCredentials
from syncd.providers.mime import b64_decode, decode_payload, header_dict
from syncd.universal import ChatData


def data(raw: bytes, *, pad: bool = True) -> str:
    encoded = base64.urlsafe_b64encode(raw).decode()
    return encoded if pad else encoded.rstrip("=")


def text_part(mime: str, raw: bytes, charset: str = "UTF-8", part_id: str = "0", **body) -> dict:
    return {
        "partId": part_id, "mimeType": mime, "filename": "",
        "headers": [{"name": "Content-Type", "value": f'{mime}; charset="{charset}"'},
                    {"name": "Content-Transfer-Encoding", "value": "quoted-printable"}],
        "body": {"size": len(raw), "data": data(raw, **body)},
    }


def alternative(text: bytes, html: bytes, part_id: str = "", charset: str = "UTF-8") -> dict:
    prefix = f"{part_id}." if part_id else ""
    return {
        "partId": part_id, "mimeType": "multipart/alternative", "filename": "",
        "headers": [{"name": "Content-Type", "value": 'multipart/alternative; boundary="000000000000b1"'}],
        "body": {"size": 0},
        "parts": [text_part("text/plain", text, charset, f"{prefix}0"), text_part("text/html", html, charset, f"{prefix}1")],
    }


def test_multipart_alternative_gives_text_and_html():
    body = decode_payload(alternative(b"Hello there\r\n", b'<div dir="ltr">Hello there</div>\r\n'))
    assert body.text == "Hello there\r\n"
    assert body.html == '<div dir="ltr">Hello there</div>\r\n'
    assert body.attachments == []


def test_nested_multipart_mixed_gives_bodies_and_attachment_metadata():
    payload = {
        "partId": "", "mimeType": "multipart/mixed", "filename": "", "headers": [], "body": {"size": 0},
        "parts": [
            alternative(b"See attached.", b"<p>See attached.</p>", part_id="0"),
            {"partId": "1", "mimeType": "application/pdf", "filename": "Q3 report.pdf",
             "headers": [{"name": "Content-Disposition", "value": 'attachment; filename="Q3 report.pdf"'}],
             "body": {"attachmentId": "ANGjdJ8wZ3l", "size": 48213}},
        ],
    }
    body = decode_payload(payload)
    assert (body.text, body.html) == ("See attached.", "<p>See attached.</p>")
    assert body.attachments == [
        {"name": "Q3 report.pdf", "mimeType": "application/pdf", "size": 48213, "externalId": "ANGjdJ8wZ3l"}
    ]


@pytest.mark.parametrize("charset", ["ISO-8859-1", "windows-1252", "iso-2022-jp"])
def test_bodies_are_decoded_in_their_declared_charset(charset):
    words = "Olá, até amanhã" if charset != "iso-2022-jp" else "こんにちは"
    body = decode_payload(text_part("text/plain", words.encode(charset), charset, part_id=""))
    assert body.text == words


def test_an_unknown_charset_falls_back_to_utf8():
    body = decode_payload(text_part("text/plain", "naïve".encode(), "x-unheard-of", part_id=""))
    assert body.text == "naïve"


def test_body_data_without_padding_decodes():
    raw = "Ünïcode needs padding".encode()
    assert data(raw, pad=False) != data(raw)
    assert decode_payload(text_part("text/plain", raw, pad=False)).text == "Ünïcode needs padding"
    assert b64_decode("YWJj ZA\n") == b"abcd"


def test_not_base64_is_a_clear_error():
    with pytest.raises(ValueError, match="not valid base64"):
        b64_decode("%%%")


def test_header_names_are_lowercased_and_encoded_words_decoded():
    headers = header_dict([
        {"name": "Subject", "value": "=?UTF-8?B?UmVsYXTDs3JpbyBtZW5zYWw=?="},
        {"name": "Received", "value": "first"}, {"name": "Received", "value": "second"},
        {"name": "Message-ID", "value": "<CAF=abc@mail.gmail.com>"},
    ])
    assert headers == {"subject": "Relatório mensal", "received": "first", "message-id": "<CAF=abc@mail.gmail.com>"}


# -- whole message resources through the connector and mappings/gmail.yaml ----------------

def resource(from_: str, *, labels=("INBOX",), internal_date: str | None = "1709460000000", date: str | None = None) -> dict:
    headers = [{"name": "From", "value": from_}, {"name": "To", "value": "Me <me@example.com>"},
               {"name": "Subject", "value": "Proposta"}, {"name": "Message-ID", "value": "<m1@mail.example>"},
               {"name": "References", "value": "<m0@mail.example>"}]
    if date:
        headers.append({"name": "Date", "value": date})
    message = {"id": "18e0a1", "threadId": "18e0a0", "labelIds": list(labels), "snippet": "Oi",
               "payload": {**alternative(b"Oi", b"<b>Oi</b>"), "headers": headers}}
    if internal_date:
        message["internalDate"] = internal_date
    return message


async def mapped(message: dict):
    thread = {"id": "18e0a0", "historyId": "99", "messages": [message]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=thread))
    credentials = GmailCredentials(access_token="t", email_address="me@example.com")
    http = GmailConnector.make_http("http://gmail.sim", credentials, policy=RetryPolicy(max_retries=0),
                                    timeout_s=5, transport=transport)
    ctx = ConnectorContext(http=http, mapping=load_mapping(mappings_dir() / "gmail.yaml"), webhook_url="",
                           clock=lambda: 1_700_000_000.0)
    gmail = GmailConnector(credentials, {}, ctx)
    [out] = (await gmail.fetch_history_page(ChatData(external_chat_id="18e0a0"), None)).messages
    await gmail.close()
    return out


@pytest.mark.parametrize(
    "from_, email, name",
    [
        ("Guilherme Dias <email@domain.com>", "email@domain.com", "Guilherme Dias"),
        ('"Dias, Guilherme" <Email@Domain.COM>', "email@domain.com", "Dias, Guilherme"),
        ("EMAIL@domain.com", "email@domain.com", None),
    ],
)
async def test_the_sender_is_parsed_from_the_from_header_with_a_lowercased_address(from_, email, name):
    message = await mapped(resource(from_))
    assert (message.sender.email, message.sender.external_user_id, message.sender.name) == (email, email, name)


async def test_ids_subject_bodies_and_reply_headers_are_mapped():
    message = await mapped(resource("Guilherme Dias <email@domain.com>"))
    assert (message.external_message_id, message.external_chat_id) == ("18e0a1", "18e0a0")
    assert (message.subject, message.text, message.html) == ("Proposta", "Oi", "<b>Oi</b>")
    assert message.extra["rfcMessageId"] == "<m1@mail.example>"
    assert message.extra["references"] == "<m0@mail.example>"
    assert message.sent_at == datetime(2024, 3, 3, 10, 0, tzinfo=UTC)
    assert not message.from_self and message.deleted_at is None


async def test_sent_at_falls_back_to_the_date_header():
    message = await mapped(resource("a@b.com", internal_date=None, date="Sun, 3 Mar 2024 07:00:00 -0300"))
    assert message.sent_at == datetime(2024, 3, 3, 10, 0, tzinfo=UTC)


async def test_the_sent_label_marks_our_own_message_and_trash_a_deletion():
    assert (await mapped(resource("me@example.com", labels=("SENT",)))).from_self
    trashed = await mapped(resource("a@b.com", labels=("TRASH",)))
    assert trashed.deleted_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)

"""Decoding of email bodies: Gmail's parsed MIME payloads (``format=full`` message resources),
and raw RFC 5322 emails (IMAP).

Gmail hands each MIME part back as ``{mimeType, filename, headers, body: {data|attachmentId,
size}, parts}``, with ``body.data`` base64url-encoded in the part's own charset (Gmail does
not transcode). These helpers turn that tree into text, html and attachment metadata; they
know nothing about the universal model (that is the mapping's job).
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.header
import email.message
import email.policy
from dataclasses import dataclass, field
from typing import Any, cast


def b64_decode(data: str | bytes) -> bytes:
    """Decode base64 in either alphabet (standard or URL-safe), with or without padding.

    Google's own encoders differ (Gmail bodies are URL-safe, Pub/Sub data is standard) and
    some strip the ``=`` padding; a strict decoder would lose messages.
    """
    text = data.decode("ascii") if isinstance(data, bytes) else data
    text = "".join(text.split()).replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64: {exc}") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def decode_header_value(value: str) -> str:
    """Header text with RFC 2047 encoded words (``=?utf-8?b?...?=``) decoded."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
        return value


def header_dict(headers: list[dict[str, str]] | None) -> dict[str, str]:
    """``[{name, value}]`` -> ``{lower-cased name: decoded value}``; the first occurrence wins
    (trace headers such as ``Received`` repeat; the ones we map do not)."""
    out: dict[str, str] = {}
    for header in headers or []:
        name = str(header.get("name", "")).lower()
        if name and name not in out:
            out[name] = decode_header_value(str(header.get("value", "")))
    return out


def _charset(part: dict[str, Any]) -> str:
    content_type = header_dict(part.get("headers")).get("content-type")
    if content_type:
        holder = email.message.Message()
        holder["content-type"] = content_type
        charset = holder.get_content_charset()
        if charset:
            return charset
    return "utf-8"


def _text_of(part: dict[str, Any]) -> str | None:
    data = (part.get("body") or {}).get("data")
    if data is None:
        return None
    raw = b64_decode(data)
    charset = _charset(part)
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know; UTF-8 is the best guess
        return raw.decode("utf-8", errors="replace")


@dataclass
class Body:
    """What a message says: the first text/plain and text/html bodies, and attachments."""

    text: str | None = None
    html: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)


def decode_payload(payload: dict[str, Any] | None) -> Body:
    """Walk a Gmail payload tree (any nesting of multiparts) into a ``Body``."""
    body = Body()
    if payload:
        _walk(payload, body)
    return body


def _walk(part: dict[str, Any], body: Body) -> None:
    mime = str(part.get("mimeType") or "").lower()
    part_body = part.get("body") or {}
    if part.get("filename") or part_body.get("attachmentId"):
        body.attachments.append(
            {
                "name": part.get("filename") or None,
                "mimeType": mime or None,
                "size": part_body.get("size"),
                "externalId": part_body.get("attachmentId"),
            }
        )
        return
    if mime.startswith("multipart/") or part.get("parts"):
        for child in part.get("parts") or []:
            _walk(child, body)
        return
    if mime == "text/plain" and body.text is None:
        body.text = _text_of(part)
    elif mime == "text/html" and body.html is None:
        body.html = _text_of(part)


# --------------------------------------------------------------------------------------
# raw RFC 5322 emails (IMAP ``BODY[]``, SMTP)

#: Headers kept from a raw email, lower-cased; the rest (trace headers) are not mapped.
RAW_HEADERS = ("from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to", "references")


@dataclass
class RawEmail:
    """A raw email decoded: headers (decoded, lower-cased names), bodies and attachments."""

    headers: dict[str, str]
    body: Body


def parse_raw(raw: bytes) -> RawEmail:
    """Decode a whole email with the standard ``email`` package: encoded-word headers, any
    charset, nested multiparts; attachments are described, not kept."""
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    headers: dict[str, str] = {}
    for name in RAW_HEADERS:
        value = parsed.get(name)
        if value is not None:
            headers[name] = _unfold(decode_header_value(str(value)))
    body = Body()
    _walk_raw(parsed, body)
    return RawEmail(headers, body)


def _unfold(value: str) -> str:
    return " ".join(value.split()) if "\n" in value or "\r" in value else value.strip()


def _walk_raw(part: email.message.Message, body: Body) -> None:
    if part.is_multipart():
        for child in cast(list[email.message.Message], part.get_payload()):  # multipart: the parts
            _walk_raw(child, body)
        return
    mime = part.get_content_type()
    filename = part.get_filename()
    disposition = (part.get("content-disposition") or "").split(";")[0].strip().lower()
    if filename or disposition == "attachment" or not mime.startswith("text/"):
        payload = part.get_payload(decode=True) or b""
        body.attachments.append({
            "name": decode_header_value(filename) if filename else None,
            "mimeType": mime,
            "size": len(payload),
            "externalId": part.get("content-id", "").strip("<> ") or None,
        })
        return
    if mime == "text/plain" and body.text is None:
        body.text = _raw_text(part)
    elif mime == "text/html" and body.html is None:
        body.html = _raw_text(part)


def _raw_text(part: email.message.Message) -> str:
    payload = cast(bytes, part.get_payload(decode=True) or b"")  # not multipart: the bytes
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know; UTF-8 is the best guess
        return payload.decode("utf-8", errors="replace")

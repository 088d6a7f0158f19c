"""What a platform signs, built from a delivery as a manifest's payload template says: the raw
body and its digest as bytes, the sorted form, the public URL it was sent to (with or without
its default port), and the query as received."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from syncd.kit import templates
from syncd.kit.errors import SignatureError
from syncd.universal import WebhookRequest

#: Payload elements that are bytes, not text: the raw body, and its raw SHA-256 digest (a
#: scheme that signs the digest's 32 bytes rather than its hex).
_RAW = re.compile(r"\{(body|bodySha256)\}")


def request_values(request: WebhookRequest) -> dict[str, str]:
    """What payload templates read of the request itself: ``urlQuery`` (``?`` and the query
    exactly as received, or nothing; after ``{webhookUrl}`` it makes the public URL that was
    called) and ``querySorted`` (the query's parameters sorted by name, form-encoded)."""
    if request.raw_query is not None:
        query = request.raw_query
    else:
        query = urlsplit(request.url).query if "?" in request.url else ""
    return {"urlQuery": f"?{query}" if query else "", "querySorted": urlencode(sorted(request.query.items()))}


@lru_cache(maxsize=256)
def _pieces(template: str) -> tuple[tuple[str, ...], bool]:
    """``template`` split once into literal text and raw element names (alternating), and
    whether it reads the request's own query."""
    return tuple(_RAW.split(template)), "{urlQuery}" in template or "{querySorted}" in template


def payload_bytes(template: str, request: WebhookRequest, scope: dict[str, Any]) -> bytes:
    """The signed bytes: ``template`` rendered, with ``{body}`` as the raw body's bytes and
    ``{bodySha256}`` as its raw SHA-256 digest."""
    pieces, reads_query = _pieces(template)
    if reads_query:
        scope = {**request_values(request), **scope}
    out: list[bytes] = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(request.body if piece == "body" else hashlib.sha256(request.body).digest())
            continue
        rendered = templates.render(piece, scope) if piece else ""
        if rendered is None:
            raise SignatureError("a part of the signed payload is missing")
        out.append(rendered.encode() if isinstance(rendered, str) else str(rendered).encode())
    return b"".join(out)


def is_form(request: WebhookRequest) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def form_sorted(request: WebhookRequest) -> str:
    """A form body as signers concatenate it: names sorted, each name's values sorted without
    repeats, ``name + value`` each; empty for a body that is not a form."""
    if not is_form(request):
        return ""
    pairs = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return "".join(k + v for k, v in sorted(set(pairs)))


def public_url(webhook_url: str | None, request: WebhookRequest) -> str | None:
    """The URL the platform was given (the integration's public webhook URL) with the query the
    delivery arrived with: what a platform that signs its URL signed, whatever proxy is between."""
    if not webhook_url:
        return None
    query = urlsplit(request.url).query if request.query else ""
    return webhook_url + (f"?{query}" if query else "")


def port_toggled(url: str) -> str:
    """``url`` with its scheme's default port removed if written, added if not."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None or parts.hostname is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = parts.netloc[: len(parts.netloc) - len(host)]
    if parts.port == default:
        netloc = userinfo + host.rsplit(":", 1)[0]
    elif parts.port is None:
        netloc = f"{userinfo}{host}:{default}"
    else:
        return url
    return urlunsplit(parts._replace(netloc=netloc))

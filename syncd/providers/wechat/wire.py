"""WeChat's wire formats: the sorted-SHA-1 signatures, safe-mode AES and the XML bodies.

Safe mode (WXBizMsgCrypt): the AES key is the base64 of the 43-character EncodingAESKey plus
``=``; AES-256-CBC with the key's first 16 bytes as IV; the plaintext is 16 random bytes, the
message length (4 bytes, big-endian), the message and the appId, PKCS#7-padded to a multiple of
32 bytes (not 16). Used by the connector and, for building deliveries, by the simulator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
_BLOCK = 32


class WireError(ValueError):
    """A body or ciphertext that is not what WeChat sends (the message never names secrets)."""


def signature(*parts: str) -> str:
    """SHA-1 hex of the parts sorted and joined (``signature`` and ``msg_signature``)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signed(presented: str | None, *parts: str) -> bool:
    return bool(presented) and hmac.compare_digest(signature(*parts), str(presented).lower())


def aes_key(encoding_aes_key: str) -> bytes:
    if not _KEY.match(encoding_aes_key or ""):
        raise WireError("the EncodingAESKey is not 43 letters and digits")
    return base64.b64decode(encoding_aes_key + "=")


def _cipher(key: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(encoding_aes_key: str, app_id: str, message: bytes, random16: bytes | None = None) -> str:
    """The base64 ``Encrypt`` value of ``message`` for ``app_id``."""
    plain = (random16 or os.urandom(16)) + struct.pack(">I", len(message)) + message + app_id.encode()
    pad = _BLOCK - len(plain) % _BLOCK
    encryptor = _cipher(aes_key(encoding_aes_key)).encryptor()
    return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()


def decrypt(encoding_aes_key: str, encrypted: str) -> tuple[bytes, str]:
    """``(message, appId)`` of a base64 ``Encrypt`` value."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("Encrypt is not base64") from None
    if not raw or len(raw) % 16:
        raise WireError("Encrypt is not whole AES blocks")
    decryptor = _cipher(aes_key(encoding_aes_key)).decryptor()
    plain = decryptor.update(raw) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= _BLOCK or len(plain) < 20 + pad:
        raise WireError("Encrypt does not decrypt with this EncodingAESKey")
    plain = plain[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise WireError("Encrypt does not decrypt with this EncodingAESKey")
    return plain[20:20 + length], plain[20 + length:].decode("utf-8", "replace")


def parse_xml(body: bytes) -> dict[str, Any]:
    """The ``<xml>`` document's children as a dict (text, or a dict for nested elements)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise WireError("the body declares a DTD")  # WeChat never does; entities are an attack
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise WireError("the body is not XML") from None
    if root.tag != "xml":
        raise WireError("the body is not an <xml> document")
    return _children(root)


def _children(node: ElementTree.Element) -> dict[str, Any]:
    return {child.tag: _children(child) if len(child) else (child.text or "") for child in node}


def build_xml(fields: dict[str, Any]) -> bytes:
    """An ``<xml>`` document as WeChat writes it: numbers bare, text in CDATA."""
    parts = []
    for name, value in fields.items():
        text = str(value) if isinstance(value, int) else "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"
        parts.append(f"<{escape(name)}>{text}</{escape(name)}>")
    return ("<xml>" + "".join(parts) + "</xml>").encode()

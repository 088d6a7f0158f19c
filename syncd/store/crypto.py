"""The key that encrypts integrations' credentials at rest (``SYNCD_SECRET_KEY``)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import structlog
from cryptography.fernet import Fernet, MultiFernet

log = structlog.get_logger("syncd.store")


def _fernet(secret_key: Any) -> Fernet | MultiFernet:
    if secret_key is None:
        log.warning("no secret key configured: stored credentials become unreadable "
                    "once this process exits")
        return Fernet(Fernet.generate_key())
    if hasattr(secret_key, "get_secret_value"):
        secret_key = secret_key.get_secret_value()
    # A comma-separated list rotates keys: the first encrypts, every one decrypts, so old
    # credentials stay readable until they are written again with the new key.
    keys = [k.strip() for k in secret_key.split(",") if k.strip()]
    if not keys:
        raise ValueError("SYNCD_SECRET_KEY is empty")
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.encode()).digest())) for k in keys])

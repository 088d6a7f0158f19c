"""Platform connectors: one module per platform, transport quirks only.

Connectors never import the store or the engine, nor each other; they receive what they need
(credentials, an HTTP client, their mapping) and return universal data (``base.py``).
"""

from __future__ import annotations

import importlib

from syncd.providers.base import Connector

#: platform name -> module under ``syncd.providers`` that defines ``CONNECTOR``.
PLATFORMS: dict[str, str] = {
    "slack": "slack",
    "gmail": "gmail",
    "teams": "teams",
    "whatsapp": "whatsapp",
    "messenger": "messenger",
    "instagram": "instagram",
    "telegram": "telegram",
}


def connector_class(platform: str) -> type[Connector]:
    """The connector class of ``platform``; ``KeyError`` for an unknown platform."""
    module = importlib.import_module(f"syncd.providers.{PLATFORMS[platform]}")
    return module.CONNECTOR

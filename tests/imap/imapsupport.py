"""An imap connector built as the engine builds one, for tests that drive it directly, and
another mail client of the same mailbox."""

from __future__ import annotations

import imaplib
import ssl
from typing import Any

from syncd.kit.connector import ConnectorContext
from syncd.kit.http import ProviderHttp
from syncd.mapping import load_mapping, mappings_dir
from syncd.providers.imap.connector import ImapConnector
from syncd.providers.imap.credentials import ImapCredentials


def make_connector(credentials: dict[str, Any], settings: dict[str, Any] | None = None) -> ImapConnector:
    creds = ImapCredentials.model_validate(credentials)
    ctx = ConnectorContext(http=ProviderHttp("imap://test"), mapping=load_mapping(mappings_dir() / "imap.yaml"),
                           webhook_url="")
    return ImapConnector(creds, settings or {}, ctx)


def imap_client(account) -> imaplib.IMAP4:
    """Another mail client of the same mailbox."""
    conn = imaplib.IMAP4("127.0.0.1", account.servers.dovecot.imap_port)
    conn.starttls(ssl.create_default_context(cafile=account.servers.cert))
    conn.login(account.email, account.password)
    return conn


def expunge(account, folder: str, message_id: str) -> None:
    conn = imap_client(account)
    try:
        conn.select(f'"{folder}"')
        _, data = conn.uid("SEARCH", None, "HEADER", "Message-ID", message_id)
        uids = data[0].split()
        assert uids, f"{message_id} is not in {folder}"
        conn.uid("STORE", b",".join(uids), "+FLAGS", "(\\Deleted)")
        conn.expunge()
    finally:
        conn.logout()

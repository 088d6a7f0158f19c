"""One real Dovecot and one SMTP submission server for the whole session; a fresh mailbox
user per test. Missing server binaries fail the tests with the command that installs them."""

from __future__ import annotations

import email.policy
import email.utils
import shutil
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from imapsupport import make_connector
from mailservers import Dovecot, Submission, start_dovecot, start_submission


@dataclass
class Servers:
    dovecot: Dovecot
    smtp: Submission
    smtp_port: int
    cert: str


@pytest.fixture(scope="session")
def servers():
    # Not under pytest's tmp_path: its folders are private to root, and Dovecot's own
    # unprivileged processes must reach theirs.
    root = Path(tempfile.mkdtemp(prefix="syncd-dovecot-"))
    root.chmod(0o755)
    dovecot = start_dovecot(root)
    try:
        controller, handler = start_submission(dovecot, root)
        try:
            yield Servers(dovecot, handler, controller.port, str(root / "cert.pem"))
        finally:
            controller.stop()
    finally:
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _trust_the_test_certificate(servers, monkeypatch):
    """The servers' self-signed certificate is the only CA the TLS clients trust here."""
    monkeypatch.setenv("SSL_CERT_FILE", servers.cert)


@dataclass
class Account:
    servers: Servers
    email: str
    password: str

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        return {"email": self.email, "password": self.password, "imapHost": "127.0.0.1",
                "imapPort": self.servers.dovecot.imap_port, "imapSecurity": "starttls",
                "smtpHost": "127.0.0.1", "smtpPort": self.servers.smtp_port, "smtpSecurity": "starttls",
                **overrides}

    def receive(self, sender: str, subject: str, body: str = "hello", *, message_id: str | None = None,
                in_reply_to: str | None = None, references: str | None = None, to: str | None = None,
                date: str | None = None, raw: bytes | None = None) -> str:
        """Mail from outside, delivered into this mailbox over LMTP; its Message-ID."""
        if raw is None:
            mail = EmailMessage()
            mail["From"] = sender
            mail["To"] = to or self.email
            mail["Subject"] = subject
            mail["Date"] = date or email.utils.formatdate()
            mail["Message-ID"] = message_id or email.utils.make_msgid(domain="outside.test")
            if in_reply_to:
                mail["In-Reply-To"] = in_reply_to
            if references:
                mail["References"] = references
            mail.set_content(body)
            raw = mail.as_bytes(policy=email.policy.SMTP)
            message_id = mail["Message-ID"]
        self.servers.dovecot.deliver(raw, email.utils.parseaddr(sender)[1] or "x@outside.test", [self.email])
        return message_id or ""

    def file_in(self, folder: str, raw: bytes) -> None:
        """Put an email into one of this mailbox's folders as a mail client would (doveadm)."""
        self.servers.dovecot.doveadm_save(self.email, folder, raw)


@pytest.fixture
def account(servers) -> Account:
    address, password = servers.dovecot.add_user()
    return Account(servers, address, password)


@pytest.fixture
async def connector(account):
    made = make_connector(account.credentials())
    yield made
    await made.close()

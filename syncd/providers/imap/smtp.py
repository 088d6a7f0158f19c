"""SMTP submission: implicit TLS, STARTTLS or plain (only when asked for), SMTP AUTH whenever
the server offers it, and the server's answers turned into the kit's error types (4xx is
worth retrying, 5xx is not). The client is the standard library's ``smtplib``, run in a
worker thread."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage

from syncd.kit.errors import AuthError, PermanentError, ProviderError, TransientError
from syncd.providers.imap.credentials import ImapCredentials
from syncd.providers.imap.transport import TIMEOUT_S, scrub, tls_context, unreachable


class Smtp:
    def __init__(self, credentials: ImapCredentials, *, context: Callable[[], ssl.SSLContext] = tls_context,
                 timeout_s: float = TIMEOUT_S):
        self.credentials = credentials
        self.context = context
        self.timeout_s = timeout_s

    async def check(self) -> None:
        """Connect and log in, sending nothing: proves the SMTP settings work."""
        await asyncio.to_thread(self._session, None, [])

    async def send(self, mail: EmailMessage, recipients: list[str]) -> None:
        await asyncio.to_thread(self._session, mail, recipients)

    def _session(self, mail: EmailMessage | None, recipients: list[str]) -> None:
        c = self.credentials
        host, port = c.smtp_host, int(c.smtp_port or 587)
        try:
            client = self._connect(host, port)
        except (OSError, smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected) as exc:
            raise unreachable("SMTP", host, port, exc) from None
        try:
            with client:
                self._authenticate(client)
                if mail is not None:
                    client.send_message(mail, from_addr=c.email, to_addrs=recipients)
        except ProviderError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = TransientError if codes and all(400 <= code < 500 for code in codes) else PermanentError
            raise error(f"SMTP refused the recipients: {', '.join(sorted(exc.recipients))}",
                        status=codes[0] if codes else None) from None
        except smtplib.SMTPResponseException as exc:
            raise self._answer_error(exc) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"SMTP session with {host}:{port} failed: {type(exc).__name__}") from None

    def _connect(self, host: str, port: int) -> smtplib.SMTP:
        security = self.credentials.smtp_security
        if security == "ssl":
            return smtplib.SMTP_SSL(host, port, timeout=self.timeout_s, context=self.context())
        client = smtplib.SMTP(host, port, timeout=self.timeout_s)
        if security == "starttls":
            client.ehlo()
            if not client.has_extn("starttls"):
                client.close()
                raise PermanentError(f"SMTP server {host}:{port} does not offer STARTTLS (smtpSecurity is starttls)")
            client.starttls(context=self.context())
        return client

    def _authenticate(self, client: smtplib.SMTP) -> None:
        client.ehlo_or_helo_if_needed()
        if not client.has_extn("auth"):
            return  # a relay that takes mail without logging in
        c = self.credentials
        try:
            client.login(c.login, c.password)
        except smtplib.SMTPAuthenticationError as exc:
            text = scrub(_text(exc.smtp_error), c.password)
            raise AuthError(f"SMTP login failed for {c.login}: {exc.smtp_code} {text}", status=exc.smtp_code,
                            code="login_failed") from None

    def _answer_error(self, exc: smtplib.SMTPResponseException) -> ProviderError:
        text = scrub(_text(exc.smtp_error), self.credentials.password)
        if 400 <= exc.smtp_code < 500:
            return TransientError(f"SMTP server answered {exc.smtp_code}: {text}", status=exc.smtp_code)
        return PermanentError(f"SMTP server answered {exc.smtp_code}: {text}", status=exc.smtp_code)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

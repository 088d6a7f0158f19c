"""IMAP connections: opening them (implicit TLS, STARTTLS or plain when asked for), logging
in, a small pool per integration, and turning what can fail into the kit's error types.

The client is the standard library's ``imaplib``; every command runs in a worker thread so
the event loop never blocks. Error texts never carry the password: the server's own words are
scrubbed before they go into an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from syncd.kit.errors import AuthError, PermanentError, TransientError
from syncd.providers.imap.credentials import ImapCredentials

T = TypeVar("T")
#: Connections one integration keeps open at most (servers cap them: Gmail allows 15).
POOL_SIZE = 3
TIMEOUT_S = 30.0


def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text[:300]


def _server_text(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


def unreachable(what: str, host: str, port: int, exc: BaseException) -> TransientError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    if isinstance(exc, ssl.SSLError):
        reason = f"TLS failed ({exc.reason or 'handshake'})"
    return TransientError(f"cannot reach the {what} server {host}:{port}: {reason}", code="unreachable")


class ImapPool:
    """Logged-in IMAP connections of one mailbox, each used by one command at a time."""

    def __init__(self, credentials: ImapCredentials, *, size: int = POOL_SIZE,
                 context: Callable[[], ssl.SSLContext] = tls_context, timeout_s: float = TIMEOUT_S):
        self.credentials = credentials
        self.context = context
        self.timeout_s = timeout_s
        self._idle: list[imaplib.IMAP4] = []
        self._slots = asyncio.Semaphore(size)
        self.capabilities: frozenset[str] = frozenset()

    async def run(self, command: Callable[[imaplib.IMAP4], T]) -> T:
        """Run ``command(connection)`` in a thread on a pooled connection. A connection that
        failed is dropped; a pooled one that was lost (the server closed it while idle, or
        ended the session after a UIDVALIDITY change) is replaced once, at once."""
        async with self._slots:
            for reused in (True, False):
                conn = self._idle.pop() if reused and self._idle else None
                if conn is None:
                    reused = False
                    conn = await asyncio.to_thread(self._open)
                try:
                    result = await asyncio.to_thread(self._guarded, command, conn)
                except TransientError:
                    await asyncio.to_thread(_logout, conn)
                    if reused:
                        continue
                    raise
                except BaseException:
                    await asyncio.to_thread(_logout, conn)
                    raise
                self._idle.append(conn)
                return result
            raise AssertionError("unreachable")

    def _guarded(self, command: Callable[[imaplib.IMAP4], T], conn: imaplib.IMAP4) -> T:
        try:
            return command(conn)
        except (imaplib.IMAP4.abort, OSError) as exc:
            raise TransientError(f"IMAP connection lost: {scrub(_server_text(exc), self.credentials.password)}") from None
        except imaplib.IMAP4.error as exc:
            raise PermanentError(f"IMAP command failed: {scrub(_server_text(exc), self.credentials.password)}") from None

    def _open(self) -> imaplib.IMAP4:
        c = self.credentials
        host, port = c.imap_host, int(c.imap_port or 993)
        try:
            if c.imap_security == "ssl":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, ssl_context=self.context(), timeout=self.timeout_s)
            else:
                conn = imaplib.IMAP4(host, port, timeout=self.timeout_s)
                if c.imap_security == "starttls":
                    conn.starttls(self.context())
        except imaplib.IMAP4.error as exc:  # e.g. the server offers no STARTTLS
            raise PermanentError(f"IMAP server {host}:{port}: {scrub(_server_text(exc), c.password)}") from None
        except (TimeoutError, OSError) as exc:
            raise unreachable("IMAP", host, port, exc) from None
        try:
            conn.login(c.login, c.password)
        except imaplib.IMAP4.error as exc:
            _logout(conn)
            raise AuthError(f"IMAP login failed for {c.login}: {scrub(_server_text(exc), c.password, c.login)}",
                            code="login_failed") from None
        except OSError as exc:
            _logout(conn)
            raise unreachable("IMAP", host, port, exc) from None
        self.capabilities = frozenset(str(cap).upper() for cap in conn.capabilities)
        return conn

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await asyncio.to_thread(_logout, conn)


def _logout(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except Exception:
        with contextlib.suppress(Exception):
            conn.shutdown()


def check(typ: str, data: list[Any], what: str) -> list[Any]:
    """``data`` of an OK answer; a NO or BAD answer is a ``PermanentError``."""
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise PermanentError(f"IMAP {what} failed: {text[:200]}")
    return data

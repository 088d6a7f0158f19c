"""IMAP IDLE (RFC 2177) on a connection of its own: the mailbox's listener.

The connection EXAMINEs INBOX and idles; whenever the server reports that the folder changed
(``EXISTS``: new mail, ``EXPUNGE``/``VANISHED``: mail removed, ``FETCH``: flags changed) the
listener says so and the engine polls, which reads what changed. IDLE is ended with ``DONE``
and issued again every ``RENEW_S``: RFC 2177 lets a server drop a client that has idled for 30
minutes, so a client re-issues it before 29.

This is asyncio (not ``imaplib`` in a thread like the pool) because the connection waits for
the server for minutes at a time and must end at once when the integration is paused, deleted
or the daemon stops: a cancelled task closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Callable

from syncd.kit.connector import ListenerUnavailable, Listening
from syncd.kit.errors import AuthError, PermanentError, TransientError
from syncd.providers.imap.credentials import ImapCredentials
from syncd.providers.imap.folders import quote
from syncd.providers.imap.transport import TIMEOUT_S, scrub, tls_context, unreachable

#: IDLE is re-issued after this long (RFC 2177: before 29 minutes).
RENEW_S = 25 * 60.0
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_CHANGE = re.compile(rb"^\* (?:\d+ (?:EXISTS|EXPUNGE|FETCH)\b|VANISHED\b)", re.IGNORECASE)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class IdleConnection:
    """One logged-in IMAP connection that does nothing but IDLE."""

    def __init__(self, credentials: ImapCredentials, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.credentials = credentials
        self.reader = reader
        self.writer = writer
        self._tags = 0
        self.capabilities: frozenset[str] = frozenset()
        #: IDLE commands issued on this connection (one more at every renewal).
        self.issued = 0

    @classmethod
    async def open(cls, credentials: ImapCredentials,
                   context: Callable[[], ssl.SSLContext] = tls_context) -> IdleConnection:
        """Connected (TLS as the credentials say) and logged in; errors as the pool's."""
        host, port = credentials.imap_host, int(credentials.imap_port or 993)
        implicit = credentials.imap_security == "ssl"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=context() if implicit else None, server_hostname=host if implicit else None),
                TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            raise unreachable("IMAP", host, port, exc) from None
        sock = writer.get_extra_info("socket")
        if sock is not None:  # a peer that vanished without a word is noticed by the kernel
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn = cls(credentials, reader, writer)
        try:
            greeting = await conn.read()
            if not greeting.upper().startswith((b"* OK", b"* PREAUTH")):
                raise TransientError(f"IMAP server {host}:{port} refused the connection: {conn.text(greeting)}")
            if credentials.imap_security == "starttls":
                await conn.command("STARTTLS")
                try:
                    await writer.start_tls(context(), server_hostname=host)
                except (ssl.SSLError, OSError) as exc:
                    raise unreachable("IMAP", host, port, exc) from None
            await conn.login()
        except BaseException:
            await conn.close()
            raise
        return conn

    # -- the protocol ----------------------------------------------------------------------
    def text(self, line: bytes) -> str:
        return scrub(line.decode("utf-8", "replace").strip(), self.credentials.password)

    async def read(self) -> bytes:
        """One response line, with any literal it carries."""
        line = await self.reader.readline()
        if not line.endswith(b"\n"):
            raise TransientError("IMAP connection closed by the server")
        while (literal := _LITERAL.search(line)) is not None:
            line += await self.reader.readexactly(int(literal.group(1)))
            line += await self.reader.readline()
        return line

    async def command(self, text: str, *, secret: bool = False) -> list[bytes]:
        """Run a command; its untagged answers. NO or BAD is a ``PermanentError``."""
        self._tags += 1
        tag = f"S{self._tags}".encode()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        await self.writer.drain()
        untagged: list[bytes] = []
        while True:
            line = await asyncio.wait_for(self.read(), TIMEOUT_S)
            if line.startswith(tag + b" "):
                if line[len(tag) + 1:].upper().startswith(b"OK"):
                    return untagged
                what = "LOGIN" if secret else text.split(" ", 1)[0]
                raise PermanentError(f"IMAP {what} failed: {self.text(line[len(tag) + 1:])}")
            if line.upper().startswith(b"* BYE"):
                raise TransientError(f"IMAP server ended the session: {self.text(line)}")
            untagged.append(line)

    async def login(self) -> None:
        c = self.credentials
        try:
            await self.command(f"LOGIN {_quoted(c.login)} {_quoted(c.password)}", secret=True)
        except PermanentError as exc:
            raise AuthError(f"IMAP login failed for {c.login}: {scrub(str(exc), c.login)}",
                            code="login_failed") from None
        for line in await self.command("CAPABILITY"):
            if line.upper().startswith(b"* CAPABILITY"):
                self.capabilities = frozenset(line.decode("ascii", "replace").upper().split()[2:])

    async def idle(self, folder: str, signals: Listening, renew_s: float = RENEW_S) -> None:
        """EXAMINE ``folder`` and idle on it until the connection drops, re-issuing IDLE
        every ``renew_s``; ``signals.up()`` once idling, ``signals.changed()`` per change."""
        if "IDLE" not in self.capabilities:
            raise ListenerUnavailable("the IMAP server does not offer IDLE")
        await self.command(f"EXAMINE {quote(folder)}")
        first = True
        while True:
            await self._idle_once(signals, renew_s, first)
            first = False

    async def _idle_once(self, signals: Listening, renew_s: float, first: bool) -> None:
        self._tags += 1
        self.issued += 1
        tag = f"S{self._tags}".encode()
        self.writer.write(tag + b" IDLE\r\n")
        await self.writer.drain()
        # DONE is written by a timer, so the read below never has to be interrupted; a server
        # that does not answer it in time is gone.
        renew = asyncio.get_running_loop().call_later(renew_s, self._done)
        try:
            while True:
                line = await asyncio.wait_for(self.read(), renew_s + TIMEOUT_S)
                if line.startswith(b"+"):
                    if first:
                        signals.up()
                elif line.startswith(tag + b" "):
                    if not line[len(tag) + 1:].upper().startswith(b"OK"):
                        raise PermanentError(f"IMAP IDLE failed: {self.text(line[len(tag) + 1:])}")
                    return
                elif line.upper().startswith(b"* BYE"):
                    raise TransientError(f"IMAP server ended the session: {self.text(line)}")
                elif _CHANGE.match(line):
                    signals.changed()
        finally:
            renew.cancel()

    def _done(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"DONE\r\n")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

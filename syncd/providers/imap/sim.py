"""A small in-process mail server for the demo: enough IMAP4rev1 (with IDLE, UIDPLUS, MOVE,
UNSELECT and SPECIAL-USE) and SMTP submission for the imap connector, on loopback ports,
without TLS. The tests run against a real Dovecot (``tests/imap``); this only keeps ``syncd
demo`` runnable where no mail server is installed.

It is not a ``Trial`` (no ``SIMULATOR``): it serves sockets, not an ASGI app, so ``syncd sim``
cannot serve it. One account; folders INBOX, Sent (``\\Sent``) and Trash. Mail submitted over
SMTP to the account is delivered into its INBOX; mail to anyone else is kept in ``outgoing``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.parser
import email.utils
import re
import time
from dataclasses import dataclass, field

CAPABILITIES = "IMAP4rev1 IDLE UIDPLUS MOVE UNSELECT SPECIAL-USE"
_TOKEN = re.compile(rb'\s*(?:"((?:[^"\\]|\\.)*)"|\(([^)]*)\)|\{(\d+)\+?\}$|([^\s()]+))')
_FIELDS = re.compile(rb"HEADER\.FIELDS \(([^)]*)", re.IGNORECASE)


@dataclass
class Stored:
    uid: int
    raw: bytes
    internal: float
    flags: set[str] = field(default_factory=set)


@dataclass
class Folder:
    name: str
    special: str = ""
    uidvalidity: int = 1
    uidnext: int = 1
    mails: list[Stored] = field(default_factory=list)

    def add(self, raw: bytes, flags: set[str] | None = None) -> Stored:
        stored = Stored(self.uidnext, raw, time.time(), flags or set())
        self.uidnext += 1
        self.mails.append(stored)
        return stored


def _uids(spec: str, folder: Folder) -> list[int]:
    present = [m.uid for m in folder.mails]
    top = max(present, default=0)
    out: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition(":")
        a = top if low == "*" else int(low)
        b = a if not high else (top if high == "*" else int(high))
        out.update(u for u in present if min(a, b) <= u <= max(a, b))
    return sorted(out)


def _header_fields(raw: bytes, names: list[bytes]) -> bytes:
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    wanted = {n.lower() for n in names}
    kept = [line for line in head.split(b"\r\n") if line.split(b":", 1)[0].strip().lower() in wanted]
    return b"".join(line + b"\r\n" for line in kept) + b"\r\n"


class MailServerSimulator:
    def __init__(self, address: str = "support@demo.test", password: str = "demo-Pa55word") -> None:
        self.address, self.password = address, password
        self.folders = {f.name: f for f in (Folder("INBOX"), Folder("Sent", "\\Sent"), Folder("Trash", "\\Trash"))}
        #: Mail submitted to others: (recipients, raw).
        self.outgoing: list[tuple[list[str], bytes]] = []
        self._idlers: set[_ImapSession] = set()
        self._servers: list[asyncio.Server] = []
        self.imap_port = self.smtp_port = 0

    # -- what the demo does ---------------------------------------------------------------
    async def start(self) -> None:
        imap = await asyncio.start_server(lambda r, w: _ImapSession(self, r, w).run(), "127.0.0.1", 0)
        smtp = await asyncio.start_server(lambda r, w: _smtp(self, r, w), "127.0.0.1", 0)
        self._servers = [imap, smtp]
        self.imap_port = imap.sockets[0].getsockname()[1]
        self.smtp_port = smtp.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for idler in list(self._idlers):
            idler.writer.close()
        for server in self._servers:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def credentials(self) -> dict[str, object]:
        return {"email": self.address, "password": self.password, "imapHost": "127.0.0.1",
                "imapPort": self.imap_port, "imapSecurity": "none", "smtpHost": "127.0.0.1",
                "smtpPort": self.smtp_port, "smtpSecurity": "none"}

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Mail arrives in ``folder``; sessions idling on it hear of it at once."""
        self.folders[folder].add(raw)
        self._notify(folder, f"* {len(self.folders[folder].mails)} EXISTS")

    def expunge(self, folder: str, message_id: str) -> None:
        box = self.folders[folder]
        for seq, mail in reversed(list(enumerate(box.mails, 1))):
            if header(mail.raw, "Message-ID").strip() == f"<{message_id}>":
                del box.mails[seq - 1]
                self._notify(folder, f"* {seq} EXPUNGE")

    def _notify(self, folder: str, line: str) -> None:
        for idler in list(self._idlers):
            if idler.selected is self.folders[folder]:
                idler.writer.write(line.encode() + b"\r\n")


class _ImapSession:
    def __init__(self, sim: MailServerSimulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.sim, self.reader, self.writer = sim, reader, writer
        self.selected: Folder | None = None
        self.rest = b""  # the current command's arguments as sent

    def say(self, line: str | bytes) -> None:
        self.writer.write((line.encode() if isinstance(line, str) else line) + b"\r\n")

    async def run(self) -> None:
        self.say(f"* OK [CAPABILITY {CAPABILITIES}] syncd demo mail server ready")
        try:
            while (line := await self.reader.readline()).endswith(b"\n"):
                if not await self.command(line.rstrip(b"\r\n")):
                    break
                await self.writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.sim._idlers.discard(self)
            self.writer.close()

    async def args(self, rest: bytes) -> list[bytes]:
        """The arguments of a command; a literal is read after a continuation."""
        out: list[bytes] = []
        while rest.strip():
            match = _TOKEN.match(rest)
            if match is None:
                break
            quoted, listed, literal, atom = match.groups()
            if literal is not None:
                self.say("+ Ready")
                await self.writer.drain()
                out.append(await self.reader.readexactly(int(literal)))
                rest = (await self.reader.readline()).rstrip(b"\r\n")
                continue
            out.append(re.sub(rb"\\(.)", rb"\1", quoted) if quoted is not None else
                       listed if listed is not None else atom)
            rest = rest[match.end():]
        return out

    async def command(self, line: bytes) -> bool:
        tag, _, rest = line.partition(b" ")
        name, _, rest = rest.partition(b" ")
        verb = name.decode(errors="replace").upper()
        if verb == "UID":
            name, _, rest = rest.partition(b" ")
            verb = "UID " + name.decode(errors="replace").upper()
        t = tag.decode(errors="replace")
        self.rest = rest
        args = await self.args(rest)
        handler = getattr(self, "do_" + verb.replace(" ", "_"), None)
        if handler is None:
            self.say(f"{t} BAD unknown command {verb}")
            return True
        try:
            answer = await handler(t, args)
        except (ValueError, IndexError, KeyError) as exc:
            self.say(f"{t} BAD {type(exc).__name__}")
            return True
        self.say(f"{t} {answer}")
        return verb != "LOGOUT"

    # -- commands ---------------------------------------------------------------------------
    async def do_CAPABILITY(self, t: str, a: list[bytes]) -> str:
        self.say(f"* CAPABILITY {CAPABILITIES}")
        return "OK CAPABILITY completed"

    async def do_LOGIN(self, t: str, a: list[bytes]) -> str:
        if [x.decode() for x in a] == [self.sim.address, self.sim.password]:
            return "OK LOGIN completed"
        return "NO [AUTHENTICATIONFAILED] Authentication failed."

    async def do_NOOP(self, t: str, a: list[bytes]) -> str:
        return "OK NOOP completed"

    async def do_LOGOUT(self, t: str, a: list[bytes]) -> str:
        self.say("* BYE logging out")
        return "OK LOGOUT completed"

    async def do_LIST(self, t: str, a: list[bytes]) -> str:
        for f in self.sim.folders.values():
            self.say(f'* LIST (\\HasNoChildren{" " + f.special if f.special else ""}) "/" "{f.name}"')
        return "OK LIST completed"

    async def do_STATUS(self, t: str, a: list[bytes]) -> str:
        f = self.sim.folders[a[0].decode()]
        self.say(f'* STATUS "{f.name}" (UIDVALIDITY {f.uidvalidity} UIDNEXT {f.uidnext} MESSAGES {len(f.mails)})')
        return "OK STATUS completed"

    async def do_SELECT(self, t: str, a: list[bytes], mode: str = "READ-WRITE") -> str:
        f = self.selected = self.sim.folders[a[0].decode()]
        self.say(f"* {len(f.mails)} EXISTS")
        self.say(f"* OK [UIDVALIDITY {f.uidvalidity}] UIDs valid")
        self.say(f"* OK [UIDNEXT {f.uidnext}] Predicted next UID")
        return f"OK [{mode}] selected"

    async def do_EXAMINE(self, t: str, a: list[bytes]) -> str:
        return await self.do_SELECT(t, a, "READ-ONLY")

    async def do_UNSELECT(self, t: str, a: list[bytes]) -> str:
        self.selected = None
        return "OK UNSELECT completed"

    async def do_UID_SEARCH(self, t: str, a: list[bytes]) -> str:
        assert self.selected is not None
        self.say("* SEARCH " + " ".join(str(m.uid) for m in self.selected.mails))
        return "OK SEARCH completed"

    async def do_UID_FETCH(self, t: str, a: list[bytes]) -> str:
        f = self.selected
        assert f is not None
        fields = _FIELDS.search(self.rest)
        for uid in _uids(a[0].decode(), f):
            seq, mail = next((i, m) for i, m in enumerate(f.mails, 1) if m.uid == uid)
            date = time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(mail.internal))
            if fields:
                section, data = b"BODY[HEADER.FIELDS (" + fields.group(1) + b")]", _header_fields(
                    mail.raw, fields.group(1).split())
            else:
                section, data = b"BODY[]", mail.raw
            head = f'* {seq} FETCH (UID {uid} INTERNALDATE "{date}" '.encode() + section
            self.writer.write(head + b" {%d}\r\n" % len(data) + data + b")\r\n")
        return "OK FETCH completed"

    async def do_APPEND(self, t: str, a: list[bytes]) -> str:
        f = self.sim.folders[a[0].decode()]
        stored = f.add(a[-1], {flag.decode() for flag in a[1].split()} if len(a) > 2 else set())
        return f"OK [APPENDUID {f.uidvalidity} {stored.uid}] APPEND completed"

    async def do_UID_STORE(self, t: str, a: list[bytes]) -> str:
        assert self.selected is not None
        for uid in _uids(a[0].decode(), self.selected):
            next(m for m in self.selected.mails if m.uid == uid).flags.update(x.decode() for x in a[2].split())
        return "OK STORE completed"

    async def do_UID_EXPUNGE(self, t: str, a: list[bytes]) -> str:
        f = self.selected
        assert f is not None
        chosen = set(_uids(a[0].decode(), f))
        for seq, mail in reversed(list(enumerate(f.mails, 1))):
            if mail.uid in chosen and "\\Deleted" in mail.flags:
                del f.mails[seq - 1]
                self.say(f"* {seq} EXPUNGE")
        return "OK EXPUNGE completed"

    async def do_UID_MOVE(self, t: str, a: list[bytes]) -> str:
        f, target = self.selected, self.sim.folders[a[1].decode()]
        assert f is not None
        for uid in _uids(a[0].decode(), f):
            mail = next(m for m in f.mails if m.uid == uid)
            target.add(mail.raw, set(mail.flags))
            f.mails.remove(mail)
        return "OK MOVE completed"

    async def do_IDLE(self, t: str, a: list[bytes]) -> str:
        self.sim._idlers.add(self)
        self.say("+ idling")
        await self.writer.drain()
        try:
            while (line := await self.reader.readline()) and line.strip().upper() != b"DONE":
                pass
        finally:
            self.sim._idlers.discard(self)
        return "OK IDLE terminated"


async def _smtp(sim: MailServerSimulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """SMTP submission: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""
    def say(text: str) -> None:
        writer.write(text.encode() + b"\r\n")

    say("220 syncd demo mail server ESMTP")
    rcpt: list[str] = []
    authed = False
    try:
        while (line := await reader.readline()).endswith(b"\n"):
            verb, _, rest = line.decode(errors="replace").strip().partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                writer.write(b"250-demo.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == "AUTH":
                _, _, blob = rest.partition(" ")
                parts = base64.b64decode(blob or "").split(b"\0")
                authed = [p.decode() for p in parts[1:]] == [sim.address, sim.password]
                say("235 2.7.0 Authentication successful" if authed else "535 5.7.8 Authentication failed")
            elif verb == "MAIL":
                rcpt = []
                say("250 2.1.0 Ok" if authed else "530 5.7.0 Authentication required")
            elif verb == "RCPT":
                rcpt.append(email.utils.parseaddr(rest.partition(":")[2])[1])
                say("250 2.1.5 Ok")
            elif verb == "DATA":
                say("354 End data with <CR><LF>.<CR><LF>")
                raw = await reader.readuntil(b"\r\n.\r\n")
                raw = raw[:-5].replace(b"\r\n..", b"\r\n.") + b"\r\n"
                mine = [r for r in rcpt if r.lower() == sim.address]
                if mine:
                    sim.deliver(raw)
                if len(mine) < len(rcpt):
                    sim.outgoing.append(([r for r in rcpt if r not in mine], raw))
                say("250 2.0.0 Ok: queued")
            elif verb in ("RSET", "NOOP"):
                say("250 2.0.0 Ok")
            elif verb == "QUIT":
                say("221 2.0.0 Bye")
                break
            else:
                say("502 5.5.2 Command not recognized")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def header(raw: bytes, name: str) -> str:
    return str(email.parser.BytesHeaderParser().parsebytes(raw).get(name, ""))

"""IMAP commands on one connection (run in a worker thread): folders, their state, UIDs, and
FETCH answers parsed into ``(uid, attributes, literal)``."""

from __future__ import annotations

import imaplib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.providers.imap.transport import check

_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<sep>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
_STATUS = re.compile(rb"\((?P<items>[^)]*)\)\s*$")
_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
#: Headers read for threading and chat names, for every email of every folder.
THREAD_HEADERS = "MESSAGE-ID IN-REPLY-TO REFERENCES SUBJECT FROM TO CC DATE"
#: UIDs asked for in one FETCH: a UID range, so the command stays short.
UID_BATCH = 500


@dataclass(frozen=True)
class Folder:
    name: str
    flags: frozenset[str]


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int
    messages: int


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def list_folders(conn: imaplib.IMAP4) -> list[Folder]:
    folders = []
    for line in check(*conn.list(), "LIST"):
        if isinstance(line, tuple):  # a name sent as a literal
            head, literal = line
            match = _LIST.match(head.rstrip() + b' ""')
            name = literal.decode("utf-8", "replace") if match else None
        else:
            match = _LIST.match(line or b"")
            name = _unquote(match.group("name")) if match else None
        if match and name:
            flags = frozenset(f.decode().lower() for f in match.group("flags").split())
            if "\\noselect" not in flags and "\\nonexistent" not in flags:
                folders.append(Folder(name, flags))
    return folders


def status(conn: imaplib.IMAP4, folder: str) -> FolderState:
    # STATUS of the selected folder answers that session's view, which lags until the next
    # command: leave the folder first.
    if conn.state == "SELECTED":
        if "UNSELECT" in conn.capabilities:
            conn.unselect()
        else:
            conn.noop()
    data = check(*conn.status(quote(folder), "(UIDVALIDITY UIDNEXT MESSAGES)"), f"STATUS {folder}")
    match = _STATUS.search(data[0] if isinstance(data[0], bytes) else b"")
    items = match.group("items").split() if match else []
    values = {items[i].decode().upper(): int(items[i + 1]) for i in range(0, len(items) - 1, 2)}
    return FolderState(values.get("UIDVALIDITY", 0), values.get("UIDNEXT", 1), values.get("MESSAGES", 0))


def select(conn: imaplib.IMAP4, folder: str, *, readonly: bool = True) -> int:
    """Select ``folder``; its UIDVALIDITY."""
    check(*conn.select(quote(folder), readonly=readonly), f"SELECT {folder}")
    _, data = conn.response("UIDVALIDITY")
    return int(data[0]) if data and data[0] else 0


def all_uids(conn: imaplib.IMAP4) -> list[int]:
    data = check(*conn.uid("SEARCH", "ALL"), "UID SEARCH")  # no charset
    return sorted(int(u) for u in b" ".join(d for d in data if d).split())


def uid_set(uids: list[int]) -> str:
    """``1:3,7,9:10`` for [1, 2, 3, 7, 9, 10]."""
    parts: list[str] = []
    run: list[int] = []
    for uid in sorted(uids):
        if run and uid == run[-1] + 1:
            run.append(uid)
            continue
        if run:
            parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [uid]
    if run:
        parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


@dataclass(frozen=True)
class Fetched:
    uid: int
    internal_date: datetime | None
    data: bytes


def fetch(conn: imaplib.IMAP4, uids: str, items: str) -> list[Fetched]:
    """``UID FETCH uids (UID INTERNALDATE <items>)``: one ``Fetched`` per email that has a
    literal (emails expunged meanwhile simply do not answer)."""
    out = []
    for entry in check(*conn.uid("FETCH", uids, f"(UID INTERNALDATE {items})"), "UID FETCH"):
        if not isinstance(entry, tuple):
            continue
        head, literal = entry
        uid = _UID.search(head)
        if uid is None:
            continue
        out.append(Fetched(int(uid.group(1)), _internal_date(head), literal))
    return out


def _internal_date(head: bytes) -> datetime | None:
    match = _INTERNALDATE.search(head)
    if match is None:
        return None
    parsed = imaplib.Internaldate2tuple(b'INTERNALDATE "' + match.group(1) + b'"')
    return datetime.fromtimestamp(time.mktime(parsed), tz=UTC) if parsed else None


def fetch_headers(conn: imaplib.IMAP4, uids: list[int]) -> list[Fetched]:
    out = []
    for start in range(0, len(uids), UID_BATCH):
        batch = uids[start:start + UID_BATCH]
        out += fetch(conn, uid_set(batch), f"BODY.PEEK[HEADER.FIELDS ({THREAD_HEADERS})]")
    return out


def fetch_bodies(conn: imaplib.IMAP4, uids: list[int]) -> list[Fetched]:
    return fetch(conn, uid_set(uids), "BODY.PEEK[]") if uids else []


def append(conn: imaplib.IMAP4, folder: str, raw: bytes, flags: str = "(\\Seen)") -> None:
    check(*conn.append(quote(folder), flags, imaplib.Time2Internaldate(time.time()), raw), f"APPEND {folder}")


def remove(conn: imaplib.IMAP4, folder: str, uids: list[int], move_to: str | None, can_move: bool) -> None:
    """Delete emails from ``folder``: UID MOVE to ``move_to``, else ``\\Deleted`` and UID EXPUNGE
    of just these UIDs."""
    select(conn, folder, readonly=False)
    spec = uid_set(uids)
    if move_to and can_move:
        typ, data = conn._simple_command("UID", "MOVE", spec, quote(move_to))
        check(typ, data, "UID MOVE")
        return
    if move_to:
        check(*conn.uid("COPY", spec, quote(move_to)), "UID COPY")
    check(*conn.uid("STORE", spec, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
    typ, data = conn._simple_command("UID", "EXPUNGE", spec)
    check(typ, data, "UID EXPUNGE")

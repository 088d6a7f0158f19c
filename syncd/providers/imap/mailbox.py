"""What a mailbox holds, as far as syncing needs it: for each synced folder its state
(UIDVALIDITY, UIDNEXT, count) and which email each UID is, and for each email (by Message-ID)
its thread and where it lies.

Built by reading the threading headers of every folder in UID ranges, then kept up to date
cheaply: a STATUS per folder says whether anything changed; new UIDs are read, expunged ones
are found by a ``UID SEARCH ALL`` diff, and a changed UIDVALIDITY re-reads that folder.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.utils
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from syncd.providers import email_threads
from syncd.providers.email_threads import ThreadIndex, Threading
from syncd.providers.imap import folders as imap
from syncd.providers.imap.transport import ImapPool
from syncd.providers.mime import decode_header_value

_HEADERS = email.parser.BytesHeaderParser()


@dataclass
class Email:
    """One email (one Message-ID), wherever it lies."""

    key: str
    thread: str
    subject: str
    date: datetime | None
    addresses: list[str]
    places: set[tuple[str, int]] = field(default_factory=set)  # (folder, uid)


@dataclass
class FolderIndex:
    state: imap.FolderState | None = None
    uids: dict[int, str] = field(default_factory=dict)  # uid -> email key


@dataclass
class Changes:
    """What one refresh found: emails that appeared (folder, uid), emails gone from every
    folder, and folders whose UIDVALIDITY changed (their UIDs mean other emails now)."""

    new: list[tuple[str, int]] = field(default_factory=list)
    gone: list[Email] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)


def email_key(headers: dict[str, str], raw: bytes) -> str:
    """The email's id: its Message-ID, else an id derived from what it says."""
    message_id = email_threads.first_message_id(headers.get("message-id"))
    if message_id:
        return message_id
    return email_threads.content_id([headers.get("from"), headers.get("to"), headers.get("date"),
                                     headers.get("subject"), raw])


def header_fields(raw: bytes) -> dict[str, str]:
    parsed = _HEADERS.parsebytes(raw)
    return {name.lower(): " ".join(decode_header_value(str(value)).split()) for name, value in parsed.items()}


def _date(headers: dict[str, str], fallback: datetime | None) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError, IndexError):
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _addresses(headers: dict[str, str]) -> list[str]:
    found = []
    for name in ("from", "to", "cc"):
        for _, address in email.utils.getaddresses([headers.get(name, "")]):
            if address and "@" in address:
                found.append(address.lower())
    return list(dict.fromkeys(found))


class Mailbox:
    """The index of the synced folders of one mailbox (see the module docstring)."""

    def __init__(self, pool: ImapPool, folders: list[str]):
        self.pool = pool
        self.folders = folders
        self.index: dict[str, FolderIndex] = {f: FolderIndex() for f in folders}
        self.emails: dict[str, Email] = {}
        self.by_thread: dict[str, set[str]] = {}
        self.threads = ThreadIndex()
        self._lock = asyncio.Lock()
        #: Emails gone from every folder since the last poll took them (it tombstones them).
        self.gone: list[Email] = []
        self.ready = False
        self.refreshed_at = 0.0

    async def refresh(self, max_age_s: float = 0.0) -> Changes:
        async with self._lock:
            changes = Changes()
            if self.ready and time.monotonic() - self.refreshed_at < max_age_s:
                return changes
            records: list[tuple[str, int, dict[str, str], datetime | None, str]] = []
            for folder in self.folders:
                records += await self._refresh_folder(folder, changes)
            # Oldest first, so a thread's name is its first email's subject and subject-only
            # replies find the thread they answer, whatever folder they were read from.
            records.sort(key=lambda r: (r[3] or datetime.min.replace(tzinfo=UTC), r[0], r[1]))
            for folder, uid, headers, date, key in records:
                self._add(folder, uid, headers, date, key)
                changes.new.append((folder, uid))
            # A folder read again after a UIDVALIDITY change still holds most of its emails.
            changes.gone = [e for e in changes.gone if e.key not in self.emails]
            self.gone += changes.gone
            self.ready = True
            self.refreshed_at = time.monotonic()
            return changes

    async def _refresh_folder(self, folder: str, changes: Changes) -> list:
        entry = self.index[folder]
        state = await self.pool.run(lambda c: imap.status(c, folder))
        if entry.state is not None and entry.state.uidvalidity != state.uidvalidity:
            changes.reset.append(folder)
            self._drop(folder, list(entry.uids), changes)
            entry.state = None
        if entry.state == state:
            return []
        if entry.state is not None and state.messages == len(entry.uids) + state.uidnext - entry.state.uidnext:
            # Nothing expunged: the new emails are the new UIDs.
            uids = list(entry.uids) + list(range(entry.state.uidnext, state.uidnext))
        elif state.messages == 0:
            uids = []
        else:
            uids = await self.pool.run(lambda c: (imap.select(c, folder), imap.all_uids(c))[1])
        present = set(uids)
        gone = [u for u in entry.uids if u not in present]
        self._drop(folder, gone, changes)
        fresh = [u for u in uids if u not in entry.uids]
        fetched = await self.pool.run(lambda c: (imap.select(c, folder), imap.fetch_headers(c, fresh))[1]) if fresh else []
        entry.state = state
        records = []
        for item in fetched:
            headers = header_fields(item.data)
            records.append((folder, item.uid, headers, _date(headers, item.internal_date), email_key(headers, item.data)))
        return records

    def _add(self, folder: str, uid: int, headers: dict[str, str], date: datetime | None, key: str) -> None:
        self.index[folder].uids[uid] = key
        known = self.emails.get(key)
        if known is None:
            thread = self.threads.assign(Threading(
                key=key, in_reply_to=email_threads.first_message_id(headers.get("in-reply-to")),
                references=tuple(email_threads.message_ids(headers.get("references"))),
                subject=headers.get("subject"),
            ))
            known = self.emails[key] = Email(key, thread, headers.get("subject", ""), date, _addresses(headers))
            self.by_thread.setdefault(thread, set()).add(key)
        known.places.add((folder, uid))

    def _drop(self, folder: str, uids: list[int], changes: Changes) -> None:
        entry = self.index[folder]
        for uid in uids:
            key = entry.uids.pop(uid, None)
            found = self.emails.get(key) if key else None
            if found is None or key is None:
                continue
            found.places.discard((folder, uid))
            if not found.places:
                del self.emails[key]
                self.by_thread.get(found.thread, set()).discard(key)
                changes.gone.append(found)

    # -- reading the index -----------------------------------------------------------------
    def thread_emails(self, thread: str) -> list[Email]:
        found = [self.emails[k] for k in self.by_thread.get(thread, ())]
        return sorted(found, key=lambda e: (e.date or datetime.min.replace(tzinfo=UTC), e.key))

    def thread_ids(self) -> list[str]:
        return [t for t, keys in self.by_thread.items() if keys]

    def thread_name(self, thread: str) -> str:
        return self.threads.name(thread)

    def take_gone(self) -> list[Email]:
        gone, self.gone = self.gone, []
        return gone

    def first_place(self, key: str) -> tuple[str, int] | None:
        """Where an email is read from: its place in the earliest synced folder."""
        found = self.emails.get(key)
        if found is None or not found.places:
            return None
        order = {f: i for i, f in enumerate(self.folders)}
        return min(found.places, key=lambda p: (order.get(p[0], len(order)), p[1]))

"""Email threading shared by every email platform: which thread (chat) an email belongs to,
what the thread is called, and the headers that make a reply thread.

Threads follow RFC 5322 §3.6.4: an email's thread is the thread of the first id in its
``References`` (the thread's root), else of its ``In-Reply-To`` parent, else, for a reply that
carries neither (some clients drop them), the thread whose normalised subject it shares; an
email that names no parent starts a thread of its own. The thread id is derived from the root
Message-ID, so it is the same whichever folder or order the emails are read in, and survives
a restart or a UIDVALIDITY change.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_MSGID = re.compile(r"<([^<>\s]+)>")
#: Reply and forward prefixes in the languages mail clients write them in, with the counters
#: some add (``Re[2]:``, ``Re(3):``) and the ``[tag]``-less forms; matched case-insensitively.
_PREFIX = re.compile(
    r"^\s*(?:re|aw|sv|vs|antw|odp|ref|rif|res|enc|wg|tr|fw|fwd|rv|doorst|vb|ynt|atb|"
    r"回复|回覆|转发|答复|返信|転送|전달|답장|ΑΠ|ΣΧΕΤ|ΠΡΘ)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def message_ids(value: str | None) -> list[str]:
    """The ``<id>`` tokens of a Message-ID, In-Reply-To or References header, without the
    angle brackets, in order and without repeats."""
    return list(dict.fromkeys(_MSGID.findall(value or "")))


def first_message_id(value: str | None) -> str | None:
    ids = message_ids(value)
    if ids:
        return ids[0]
    bare = (value or "").strip()
    return bare or None


def normalized_subject(subject: str | None) -> str:
    """The subject without its reply and forward prefixes (``Re: AW: Fwd: hi`` -> ``hi``),
    with runs of white space made one space."""
    text = _SPACES.sub(" ", subject or "").strip()
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            return text
        text = stripped.strip()


def is_reply_subject(subject: str | None) -> bool:
    return normalized_subject(subject) != _SPACES.sub(" ", subject or "").strip()


def thread_id(root: str) -> str:
    """The thread (chat) id of a thread whose root email has Message-ID ``root``."""
    return "thread-" + hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def content_id(fields: list[str | bytes | None]) -> str:
    """A stable id for an email without a Message-ID, from what it says (headers, date,
    body): never from UIDs, so a UIDVALIDITY change or another folder finds the same id."""
    digest = hashlib.sha256()
    for value in fields:
        data = value if isinstance(value, bytes) else (value or "").encode("utf-8", "surrogateescape")
        digest.update(len(data).to_bytes(8, "big") + data)
    return "sha256-" + digest.hexdigest()[:40]


@dataclass(frozen=True)
class Threading:
    """What threading reads from one email."""

    key: str  # its Message-ID (or content id)
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None


class ThreadIndex:
    """Assigns emails to threads as they are read; remembers what it assigned so later
    replies that lack ``References`` still find their thread."""

    def __init__(self) -> None:
        self.thread_of: dict[str, str] = {}  # email key -> thread id
        self.by_subject: dict[str, str] = {}  # normalised subject (lower) -> thread id
        self.subject_of: dict[str, str] = {}  # thread id -> the thread's name

    def assign(self, email: Threading) -> str:
        known = self.thread_of.get(email.key)
        if known is not None:
            return known
        thread = self._find(email)
        self.thread_of[email.key] = thread
        name = normalized_subject(email.subject)
        self.subject_of.setdefault(thread, name)
        if name:
            self.by_subject.setdefault(name.lower(), thread)
        return thread

    def _find(self, email: Threading) -> str:
        if email.references:
            root = email.references[0]
            return self.thread_of.get(root) or thread_id(root)
        if email.in_reply_to:
            return self.thread_of.get(email.in_reply_to) or thread_id(email.in_reply_to)
        name = normalized_subject(email.subject).lower()
        if name and is_reply_subject(email.subject) and name in self.by_subject:
            return self.by_subject[name]
        return thread_id(email.key)

    def name(self, thread: str) -> str:
        return self.subject_of.get(thread) or ""


def reply_subject(subject: str | None) -> str:
    """``Re: <subject>`` unless it is a reply already."""
    subject = (subject or "").strip()
    if not subject or re.match(r"(?i)^re\s*:", subject):
        return subject
    return f"Re: {subject}"


def reply_references(parent_id: str | None, parent_references: str | None) -> tuple[str | None, str | None]:
    """``(In-Reply-To, References)`` of a reply to the email with Message-ID ``parent_id``:
    the parent's References followed by the parent's id (RFC 5322 §3.6.4)."""
    if not parent_id:
        return None, None
    parent = f"<{first_message_id(parent_id)}>"
    chain = [f"<{i}>" for i in message_ids(parent_references) if f"<{i}>" != parent]
    return parent, " ".join([*chain, parent])

"""Any mailbox over IMAP (reading) and SMTP (sending): threads are chats, emails are messages.

Transport only: IMAP connections and folder commands (``transport.py``, ``folders.py``), the
index of what the folders hold (``mailbox.py``), SMTP submission (``smtp.py``); threading is
the email family's (``syncd/providers/email_threads.py``) and MIME decoding too
(``syncd/providers/mime.py``). Shape lives in ``mappings/imap.yaml``.

Folders: INBOX, the folder the server marks ``\\Sent`` (SPECIAL-USE), and ``settings.folders``.
An email in several of them is one message (its id is its Message-ID). Import pages go
through a thread's emails folder by folder in UID order, with a cursor of ``(UIDVALIDITY,
last UID)`` per folder; polls keep the same mark per folder for the whole mailbox. IMAP has no
webhooks: one more connection per integration idles on INBOX (``idle.py``, the engine's
listener), and what it announces (new mail, expunges, flag changes) wakes a poll at once.
Polling (a STATUS per folder) finds the rest: every ``listen_poll_every_s`` while IDLE is up,
every ``poll_every_s`` while it is down, and always where the server has no IDLE or
``settings.idle`` is false.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import imaplib
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, ClassVar, cast

import structlog
from pydantic import BaseModel

from syncd.kit.connector import Connector, ConnectorContext, ListenerUnavailable, Listening
from syncd.kit.errors import (
    AuthError,
    PermanentError,
    ProviderError,
    SignatureError,
    TransientError,
)
from syncd.kit.http import ProviderHttp, RetryPolicy
from syncd.providers import email_threads
from syncd.providers.imap import folders as imap
from syncd.providers.imap.credentials import ImapCredentials
from syncd.providers.imap.idle import IdleConnection
from syncd.providers.imap.mailbox import Email, Mailbox
from syncd.providers.imap.smtp import Smtp
from syncd.providers.imap.transport import ImapPool
from syncd.providers.mime import parse_raw
from syncd.universal import (
    Changes,
    ChatData,
    HistoryPage,
    MessageData,
    OutgoingMessage,
    PollResult,
    SendResult,
    UserData,
    WebhookAccepted,
    WebhookRequest,
)

log = structlog.get_logger(__name__)

#: Emails per import page and per poll round.
PAGE_SIZE = 50
#: Hosts whose SMTP service files the sent copy itself (an APPEND would make a second copy).
SERVER_SAVES_SENT = ("gmail.com", "googlemail.com", "outlook.com", "office365.com", "hotmail.com", "live.com")


class ImapConnector(Connector):
    credentials: ImapCredentials  # validated against ``Credentials`` by the caller
    platform: ClassVar[str] = "imap"
    Credentials: ClassVar[type[BaseModel]] = ImapCredentials
    can_edit: ClassVar[bool] = False
    #: No push over HTTP: IDLE wakes polls; without it, a STATUS per folder every few seconds.
    poll_every_s: ClassVar[float | None] = 5.0
    can_listen: ClassVar[bool] = True
    #: With IDLE up, the poll is a safety net (other folders, a missed notification).
    listen_poll_every_s: ClassVar[float] = 300.0
    #: Import lanes; each holds one pooled IMAP connection while it fetches a page.
    import_concurrency: ClassVar[int] = 2

    @classmethod
    def make_http(cls, base_url: str, credentials: BaseModel, *, policy: RetryPolicy, timeout_s: float,
                  transport: Any = None) -> ProviderHttp:
        """IMAP speaks no HTTP; the engine still hands every connector a client."""
        host = cast(ImapCredentials, credentials).imap_host  # validated against ``Credentials``
        return ProviderHttp(base_url or f"imap://{host}", policy=policy, timeout_s=timeout_s,
                            transport=transport)

    def __init__(self, credentials: BaseModel, settings: dict[str, Any], ctx: ConnectorContext):
        super().__init__(credentials, settings, ctx)
        self.pool = ImapPool(self.credentials)
        self.smtp = Smtp(self.credentials)
        self._mailbox: Mailbox | None = None
        self.sent_folder: str | None = None
        self._idling: set[IdleConnection] = set()

    # -- the mailbox -------------------------------------------------------------------------
    async def mailbox(self) -> Mailbox:
        """The folder index, read in full on first use."""
        if self._mailbox is None:
            found = await self.pool.run(imap.list_folders)
            sent = next((f.name for f in found if "\\sent" in f.flags), None)
            names = {f.name for f in found}
            wanted = ["INBOX", *([sent] if sent else []), *(self.settings.get("folders") or [])]
            missing = [f for f in wanted[1:] if f not in names]
            if missing:
                raise PermanentError(f"imap: no folder named {', '.join(map(repr, missing))} (settings.folders)")
            self.sent_folder = sent
            self._mailbox = Mailbox(self.pool, list(dict.fromkeys(wanted)))
        if not self._mailbox.ready:
            await self._mailbox.refresh()
        return self._mailbox

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        """Logs in to IMAP and to SMTP. A host that cannot be reached is a setting that is
        wrong here (not a passing outage): refused like a wrong password."""
        try:
            await self.pool.run(lambda conn: conn.noop())
            await self.smtp.check()
        except TransientError as exc:
            raise AuthError(str(exc), code=exc.code) from None
        return [self.mapping.user({"email": self.credentials.email})]

    async def list_chats(self) -> list[ChatData]:
        box = await self.mailbox()
        return [self._chat(box, thread) for thread in box.thread_ids()]

    def _chat(self, box: Mailbox, thread: str) -> ChatData:
        emails = box.thread_emails(thread)
        dates = [e.date for e in emails if e.date]
        participants = list(dict.fromkeys(a for e in emails for a in e.addresses))
        return self.mapping.chat({
            "id": thread, "subject": box.thread_name(thread), "participants": participants,
            "lastDateMs": int(max(dates).timestamp() * 1000) if dates else None,
        })

    # -- history ----------------------------------------------------------------------------
    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        box = await self.mailbox()
        if cursor is None:
            # A first page (and every full resync) sees the folders as they are now; the
            # chats of one import share a look taken within the last second.
            await box.refresh(max_age_s=1.0)
        marks: dict[str, list[int]] = json.loads(cursor) if cursor else {}
        todo: list[tuple[str, int]] = []
        for email_ in box.thread_emails(chat.external_chat_id):
            place = box.first_place(email_.key)
            if place is None:
                continue
            folder, uid = place
            state = box.index[folder].state
            mark = marks.get(folder)
            # A mark taken under another UIDVALIDITY says nothing about today's UIDs: that
            # folder is read again from its start (ids are Message-IDs: nothing duplicates).
            if mark and state and mark[0] == state.uidvalidity and uid <= mark[1]:
                continue
            todo.append((folder, uid))
        order = {f: i for i, f in enumerate(box.folders)}
        todo.sort(key=lambda p: (order[p[0]], p[1]))
        page, rest = todo[:PAGE_SIZE], todo[PAGE_SIZE:]
        messages = await self._read(box, page)
        for folder, uid in page:
            state = box.index[folder].state
            marks[folder] = [state.uidvalidity if state else 0, uid]
        return HistoryPage(messages, json.dumps(marks, sort_keys=True) if rest else None)

    async def _read(self, box: Mailbox, places: list[tuple[str, int]]) -> list[MessageData]:
        """The emails at ``places``, whole, mapped; one per Message-ID."""
        by_folder: dict[str, list[int]] = {}
        for folder, uid in places:
            by_folder.setdefault(folder, []).append(uid)
        messages: dict[str, MessageData] = {}
        for folder, uids in by_folder.items():
            def read(c: imaplib.IMAP4, f: str = folder, u: list[int] = uids) -> tuple[int, list[imap.Fetched]]:
                return imap.select(c, f), imap.fetch_bodies(c, u)

            uidvalidity, fetched = await self.pool.run(read)
            state = box.index[folder].state
            if state is None or uidvalidity != state.uidvalidity:
                # The UIDs were read under another UIDVALIDITY: they may name other emails now.
                # The folder is read again; the next attempt asks for the right UIDs.
                await box.refresh()
                raise TransientError(f"imap: UIDVALIDITY of {folder!r} changed while reading it")
            for item in fetched:
                key = box.index[folder].uids.get(item.uid)
                found = box.emails.get(key) if key else None
                if found is not None and key is not None and key not in messages:
                    messages[key] = self._message(found, folder, item.data, item.internal_date)
        return list(messages.values())

    def _message(self, found: Email, folder: str, raw: bytes, internal_date: datetime | None) -> MessageData:
        parsed = parse_raw(raw)
        date = None
        try:
            date = email.utils.parsedate_to_datetime(parsed.headers.get("date", ""))
        except (TypeError, ValueError, IndexError):
            pass
        return self.mapping.message({
            "key": found.key, "threadId": found.thread, "folder": folder, "headers": parsed.headers,
            "text": parsed.body.text, "html": parsed.body.html, "attachments": parsed.body.attachments,
            "dateMs": _ms(date), "internalDateMs": _ms(internal_date),
        })

    # -- polling ------------------------------------------------------------------------------
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        """New emails by UID since the mark of each folder (a folder whose UIDVALIDITY changed
        is read again whole), and tombstones for emails expunged from every folder."""
        box = await self.mailbox()
        await box.refresh()
        marks = (state or {}).get("folders") if isinstance(state, dict) else None
        if marks is None:  # the first mark: from now on
            return PollResult(Changes(), {"folders": self._marks(box)})
        todo: list[tuple[str, int]] = []
        more, new_marks = False, {}
        for folder in box.folders:
            current = box.index[folder].state
            mark = marks.get(folder) or {}
            start = mark.get("next", 1) if current and mark.get("uidvalidity") == current.uidvalidity else 1
            uids = sorted(u for u in box.index[folder].uids if u >= start)
            take = uids[:max(0, PAGE_SIZE - len(todo))]
            todo += [(folder, u) for u in take]
            more = more or len(take) < len(uids)
            done = take[-1] + 1 if len(take) < len(uids) else (current.uidnext if current else start)
            new_marks[folder] = {"uidvalidity": current.uidvalidity if current else 0, "next": done}
        messages = await self._read(box, todo)
        gone_at = datetime.fromtimestamp(self.ctx.clock(), tz=UTC)
        messages += [MessageData(external_chat_id=e.thread, external_message_id=e.key, deleted_at=gone_at)
                     for e in box.take_gone()]
        known = {c.external_chat_id for c in chats}
        threads = {m.external_chat_id for m in messages if m.deleted_at is None} - known
        new_chats = [self._chat(box, t) for t in sorted(threads)]
        return PollResult(Changes(messages=messages, chats=new_chats, poll_requested=more),
                          {"folders": new_marks})

    @staticmethod
    def _marks(box: Mailbox) -> dict[str, dict[str, int]]:
        return {f: {"uidvalidity": s.uidvalidity, "next": s.uidnext}
                for f in box.folders if (s := box.index[f].state) is not None}

    # -- sending ------------------------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> SendResult:
        fields = self.mapping.outgoing("send", message)
        me = self.credentials.email
        to, cc = _recipients(fields, me)
        if not to:
            raise PermanentError("imap: nobody to send to (the thread has no participant but the account)")
        mail = EmailMessage()
        mail["From"] = me
        mail["To"] = ", ".join(to)
        if cc:
            mail["Cc"] = ", ".join(cc)
        mail["Subject"] = email_threads.reply_subject(fields.get("subject"))
        mail["Date"] = email.utils.formatdate(self.ctx.clock(), usegmt=True)
        # Derived from the app's id: a send retried after a crash carries the same Message-ID,
        # so the copies merge into one message.
        rfc_id = self._message_id(fields.get("appMessageId"))
        mail["Message-ID"] = rfc_id
        in_reply_to, references = email_threads.reply_references(fields.get("inReplyTo"), fields.get("references"))
        if in_reply_to:
            mail["In-Reply-To"] = in_reply_to
            mail["References"] = references
        mail.set_content(fields.get("text") or "")
        if fields.get("html"):
            mail.add_alternative(fields["html"], subtype="html")
        await self.smtp.send(mail, to + cc)
        thread = message.external_chat_id
        key = email_threads.first_message_id(rfc_id) or rfc_id
        if self._mailbox is not None:
            self._mailbox.threads.thread_of.setdefault(key, thread)
        await self._file_sent_copy(mail)
        extra: dict[str, Any] = {"rfcMessageId": rfc_id, "to": to, "cc": cc}
        if references:
            extra["references"] = references
        return SendResult(external_message_id=key, external_thread_id=thread,
                          sent_at=datetime.fromtimestamp(self.ctx.clock(), tz=UTC), extra=extra)

    def _message_id(self, app_message_id: str | None) -> str:
        domain = self.credentials.email.rsplit("@", 1)[-1]
        if not app_message_id:
            return email.utils.make_msgid(domain=domain)
        digest = hashlib.sha256(f"{self.credentials.email}\0{app_message_id}".encode()).hexdigest()[:32]
        return f"<syncd.{digest}@{domain}>"

    def _server_saves_sent(self) -> bool:
        setting = self.settings.get("serverSavesSent")
        if setting is not None:
            return bool(setting)
        host = self.credentials.smtp_host.lower()
        return any(host == h or host.endswith("." + h) for h in SERVER_SAVES_SENT)

    async def _file_sent_copy(self, mail: EmailMessage) -> None:
        """APPEND the sent email to the Sent folder. The email is sent already: a failure
        here is logged, never raised (a retry would send it twice)."""
        if self._server_saves_sent():
            return
        try:
            await self.mailbox()
            if self.sent_folder is None:
                log.warning("imap: no \\Sent folder to file the sent copy in")
                return
            raw = mail.as_bytes(policy=email.policy.SMTP)
            sent_folder = self.sent_folder
            await self.pool.run(lambda c: imap.append(c, sent_folder, raw))
        except ProviderError as exc:
            log.warning("imap: could not file the sent copy", error=str(exc))

    # -- deleting -----------------------------------------------------------------------------
    async def delete(self, message: OutgoingMessage) -> None:
        """``\\Deleted`` + UID EXPUNGE in every folder that holds the email, or UID MOVE to
        ``settings.deleteTo``."""
        fields = self.mapping.outgoing("delete", message)
        box = await self.mailbox()
        found = box.emails.get(fields["key"])
        if found is None:
            return  # already gone is what we wanted
        move_to = self.settings.get("deleteTo")
        by_folder: dict[str, list[int]] = {}
        for folder, uid in found.places:
            if folder != move_to:
                by_folder.setdefault(folder, []).append(uid)
        can_move = "MOVE" in self.pool.capabilities
        for folder, uids in by_folder.items():
            def remove(c: imaplib.IMAP4, f: str = folder, u: list[int] = uids) -> None:
                imap.remove(c, f, u, move_to, can_move)

            await self.pool.run(remove)
        await box.refresh()

    # -- webhooks ----------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        raise SignatureError("imap has no webhooks: new mail is found by IDLE and polling")

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        return Changes()

    # -- IDLE -------------------------------------------------------------------------------
    async def listen(self, signals: Listening) -> None:
        """IDLE on INBOX, on a connection of its own (see ``idle.py``)."""
        if self.settings.get("idle") is False:
            raise ListenerUnavailable("settings.idle is false")
        conn = await IdleConnection.open(self.credentials, self.pool.context)
        self._idling.add(conn)
        try:
            await conn.idle("INBOX", signals)
        finally:
            self._idling.discard(conn)
            await conn.close()

    async def close(self) -> None:
        # A listener still running on this connector ends (the engine connects a new one).
        for conn in list(self._idling):
            await conn.close()
        await self.pool.close()
        await super().close()


def _recipients(fields: dict[str, Any], me: str) -> tuple[list[str], list[str]]:
    """Reply-all: to the parent's sender (or, replying to one's own email, its recipients),
    copying the parent's other recipients; the account itself is left out."""
    mine = me.lower()

    def others(values: Any) -> list[str]:
        items = values if isinstance(values, list) else [values] if values else []
        return [str(v) for v in items if v and str(v).lower() != mine]

    sender = others(fields.get("replyToSender"))
    rest = others(fields.get("replyToTo")) + others(fields.get("replyToCc"))
    to = sender or rest[:1] or others(fields.get("participants"))[:1]
    cc = [a for a in dict.fromkeys(rest) if a.lower() not in {t.lower() for t in to}]
    if not sender and not rest:
        cc = [a for a in others(fields.get("participants")) if a.lower() not in {t.lower() for t in to}]
    return list(dict.fromkeys(to)), cc


def _ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


CONNECTOR = ImapConnector

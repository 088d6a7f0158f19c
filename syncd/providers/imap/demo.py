"""A mailbox over IMAP and SMTP, served by the built-in mail server (``sim.py``) on loopback
ports: threads of emails imported folder by folder, new mail pushed by IMAP IDLE (no poll is
scheduled in the demo, so IDLE alone brings it in), an expunged email that becomes a
tombstone, and app replies submitted over SMTP whose Sent copies merge into the app's
messages. Email has no handshake and no edits."""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
from typing import Any

from syncd.providers import email_threads
from syncd.providers.imap.sim import MailServerSimulator
from syncd.sim.scenario import Scenario, Truth, plural

CUSTOMERS = ("Ana Lima <ana@customer.test>", "Bo Chen <bo@customer.test>", "Carla Ruiz <carla@customer.test>")
#: How long the IDLE path gets to bring in what the demo delivered (it takes well under a second).
ARRIVAL_TIMEOUT_S = 15.0


def _mail(sender: str, to: str, subject: str, body: str, key: str, root: str | None) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: <{key}>",
             f"Date: {email.utils.formatdate()}"]
    if root:
        lines += [f"In-Reply-To: <{root}>", f"References: <{root}>"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def _text(raw: bytes) -> str:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    part = parsed.get_body(("plain",)) if parsed.is_multipart() else parsed
    return str(part.get_content()).strip() if part is not None else ""  # type: ignore[union-attr]


class ImapScenario(Scenario):
    share = 3
    platform = "imap"

    def simulator(self) -> Any | None:
        return None  # it serves sockets, not an ASGI app: started by ``create``

    def bind(self, tb: Any) -> None:
        super().bind(tb)
        self.server = MailServerSimulator()
        #: Emails the demo expunged: key -> (root, text).
        self.expunged: dict[str, tuple[str, str]] = {}
        self.roots: list[str] = []

    def seed(self) -> str:
        emails = max(1, self.messages)
        for t in range(-(-emails // 5)):
            root = f"order-{t}@customer.test"
            self.roots.append(root)
            for i in range(min(5, emails - t * 5)):
                key = root if i == 0 else f"order-{t}-{i}@customer.test"
                self.server.deliver(_mail(CUSTOMERS[(t + i) % 3], self.server.address,
                                          ("Re: " if i else "") + f"Order {1000 + t}", f"Message {i} about order {t}",
                                          key, None if i == 0 else root))
        self.tally.expected["imported"] = emails
        return f"{plural(emails, 'email')} in {plural(len(self.roots), 'thread')} (INBOX)"

    async def create(self, *, wait: bool) -> dict[str, Any]:
        await self.server.start()
        return await self.tb.create(self.platform, self.server.credentials(), wait=wait)

    async def live(self) -> None:
        integration_id = self.integration["id"]
        await self._until(lambda: self.tb.engine.listeners.is_up(integration_id), "IDLE to be up")
        for i in range(4):
            root = self.roots[i % len(self.roots)] if i % 2 == 0 else None
            key = f"live-{i}@customer.test"
            self.server.deliver(_mail(CUSTOMERS[i % 3], self.server.address,
                                      f"Re: Order {1000 + self.roots.index(root)}" if root else f"Question {i}",
                                      f"live email {i}", key, root))
        await self._until_stored(self.tally.expected["imported"] + 4)
        self.note("4 emails pushed by IMAP IDLE while no poll was scheduled")
        gone = f"{self.roots[0]}"
        self.expunged[gone] = (gone, "Message 0 about order 0")
        self.server.expunge("INBOX", gone)
        self.tally.expected["deleted"] += 1
        await self._until_tombstone(gone)
        self.note("1 email expunged by another mail client: a tombstone")
        chats = await self.tb.chats(self.integration)
        for i in range(2):
            chat = chats[email_threads.thread_id(self.roots[i % len(self.roots)])]
            await self.event(f"evt-imap-{i}", "message.created", {"id": f"app-mail-{i}", "text": f"On it ({i})"},
                             chatId=chat["id"])
        await self.tb.settle()
        await self.tb.engine.poller.poll(integration_id)  # Sent is not idled on: the next poll reads it
        self.note("2 app replies sent over SMTP, their Sent copies merged")

    async def check(self) -> None:
        try:
            await super().check()
        finally:
            await self.server.stop()

    # -- waiting for the push path ---------------------------------------------------------
    async def _until(self, condition: Any, what: str) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ARRIVAL_TIMEOUT_S
        while True:
            got = condition()
            if asyncio.iscoroutine(got):
                got = await got
            if got:
                return True
            if loop.time() > deadline:
                self.problem(f"waited {ARRIVAL_TIMEOUT_S:.0f}s for {what}")
                return False
            await asyncio.sleep(0.05)

    async def _stored(self) -> dict[str, dict[str, Any]]:
        out = {}
        for chat in (await self.tb.chats(self.integration)).values():
            out.update({m["externalMessageId"]: m for m in await self.tb.messages(chat["id"])})
        return out

    async def _until_stored(self, count: int) -> None:
        async def enough() -> bool:
            return len(await self._stored()) >= count
        await self._until(enough, f"{count} stored emails")

    async def _until_tombstone(self, key: str) -> None:
        async def gone() -> bool:
            return bool((await self._stored()).get(key, {}).get("deletedAt"))
        await self._until(gone, f"the tombstone of {key}")

    # -- the truth ---------------------------------------------------------------------------
    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for folder in ("INBOX", "Sent"):
            for mail in self.server.folders[folder].mails:
                parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
                key = email_threads.first_message_id(str(parsed["Message-ID"])) or ""
                root = email_threads.first_message_id(str(parsed.get("References", ""))) or key
                out.setdefault(email_threads.thread_id(root), {})[key] = Truth(_text(mail.raw))
        for key, (root, text) in self.expunged.items():
            out.setdefault(email_threads.thread_id(root), {})[key] = Truth(text, deleted=True)
        return out

    def exported_at_platform(self) -> int:
        return len(self.server.outgoing)


SCENARIO = ImapScenario

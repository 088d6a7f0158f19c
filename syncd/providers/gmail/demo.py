"""Gmail: threads of emails with history, Pub/Sub pushes (redelivered by Pub/Sub) that make
syncd read the mailbox's history, a trashed email, and app replies sent as emails whose copies
come back through history as echoes. Gmail has no handshake: the push carries a token."""

from __future__ import annotations

from typing import Any

from syncd.providers.gmail.sim import PUSH_TOKEN as GMAIL_PUSH_TOKEN
from syncd.sim.scenario import Scenario, Truth, plural

SENDERS = ("Guilherme Dias <email@domain.com>", "Ana Lima <ana@example.org>", "Billing <billing@vendor.test>")


class GmailScenario(Scenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 6
    platform = "gmail"

    def bind(self, tb: Any) -> None:
        super().bind(tb)
        self.sim = tb.gmail

    def seed(self) -> str:
        sim, box = self.sim, self.sim._box(None)
        self.threads: list[str] = []
        emails = max(1, self.messages)  # the live traffic replies in seeded threads
        for t in range(-(-emails // 10)):
            thread = None
            for i in range(min(10, emails - t * 10)):
                order = 1000 + t
                message_id = sim.add_incoming(thread, SENDERS[(t + i) % 3], f"Order #{order}",
                                              f"Message {i} about order {order}",
                                              html=f"<p>Message {i} about order <b>{order}</b></p>")
                thread = thread or box.messages[message_id].thread_id
            assert thread is not None  # every thread got at least one email
            self.threads.append(thread)
        self.tally.expected["imported"] = len(box.messages)
        return f"{plural(len(box.messages), 'email')} in {plural(len(self.threads), 'thread')}"

    async def push(self, *, twice: bool = False) -> None:
        """Pub/Sub's push of the mailbox's new historyId (``twice``: redelivered as is)."""
        body, headers = self.sim.push_notification()
        url = f"{self.tb.webhook_url(self.integration)}?token={GMAIL_PUSH_TOKEN}"
        for _ in range(2 if twice else 1):
            response = await self.tb.api.post(url, content=body, headers=headers)
            if response.status_code != 200:
                self.problem(f"a push answered {response.status_code}: {response.text[:160]}")
        self.tally.expected["duplicates"] += int(twice)

    async def live(self) -> None:
        sim, threads = self.sim, self.threads
        for i in range(6):
            thread = threads[i % len(threads)]
            sim.add_incoming(thread, SENDERS[1], "Re: " + sim.truth(thread)[0]["subject"], f"live email {i}")
            sim.add_incoming(None, "New Customer <new@customer.test>", f"Question {i}", f"Hello, question {i}")
            await self.push(twice=True)
        await self.tb.settle()
        sim.trash(sim.truth(threads[0])[0]["id"])
        await self.push()
        self.tally.expected["deleted"] += 1
        self.note("12 new emails in 6 pushes delivered twice, 1 trashed")
        chats = await self.tb.chats(self.integration)
        for i in range(4):
            await self.event(f"evt-gmail-{i}", "message.created",
                             {"id": f"app-mail-{i}", "text": f"Thanks, we are on it ({i})"},
                             chatId=chats[threads[i % len(threads)]]["id"])
        await self.tb.settle()
        await self.push()  # the sent mails come back through history as echoes
        self.note("4 app replies sent as emails, their copies merged from history")

    def truth(self) -> dict[str, dict[str, Truth]]:
        return {t: {m["id"]: Truth(m["text"], m["trashed"]) for m in self.sim.truth(t)}
                for t in self.sim._box(None).threads}

    def exported_at_platform(self) -> int:
        return sum(1 for m in self.sim._box(None).messages.values() if "SENT" in m.labels)


SCENARIO = GmailScenario

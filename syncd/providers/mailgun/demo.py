"""Mailgun: history imported from the event log (stored emails read back and threaded, a reply
without References found by its subject); route forwards redelivered (stored once, threaded),
app replies sent with threading headers, then their delivered/opened events; a customer's
reply threaded under the app's; edits and deletes refused (email has neither)."""

from __future__ import annotations

import time
from typing import Any

from syncd.providers import email_threads
from syncd.providers.mailgun.sim import MailgunSimulator
from syncd.sim.scenario import Scenario, Truth, plural

PEOPLE = ["ann@example.net", "bo@example.org"]


class MailgunScenario(Scenario):
    platform = "mailgun"
    #: Its share of the demo's history messages.
    share = 1

    def simulator(self) -> MailgunSimulator:
        return MailgunSimulator()

    def credentials(self) -> dict[str, Any]:
        return self.sim.trial_credentials()

    def seed(self) -> str:
        """Threads of three: a question, the address's answer, and the customer's reply (the
        last of every second thread without References or In-Reply-To, as some clients send
        it: found by its subject)."""
        sim, start = self.sim, time.time() - 3600
        threads = max(self.messages // 3, 2)
        for t in range(threads):
            person = f"history{t}@example.com"
            first = sim.add(person, f"History {t}", f"history question {t}", at=start + 10 * t)
            answer = sim.add(sim.address, f"Re: History {t}", f"history answer {t}", reply_to=first.message_id,
                             at=start + 10 * t + 1)
            reply = sim.add(person, f"Re: History {t}", f"history thanks {t}", reply_to=answer.message_id,
                            at=start + 10 * t + 2)
            if t % 2:
                reply.references = reply.in_reply_to = None
        self.tally.expected["imported"] = len(sim.emails)
        return f"{plural(len(sim.emails), 'stored email')} in {plural(threads, 'thread')}"

    async def live(self) -> None:
        sim = self.sim
        for i, person in enumerate(PEOPLE):
            delivery = sim.route_post(person, f"Question {i}", f"live email {i}", multipart=i == 1)
            await self.deliver(delivery, again=delivery)
        await self.tb.settle()
        for i, first in enumerate([m for m in sim.emails.values() if m.inbound and m.sender in PEOPLE]):
            await self.event(f"evt-mg-{i}", "message.created", {"id": f"app-mg-{i}", "text": f"app answer {i}"},
                             externalChatId=email_threads.thread_id(first.message_id))
        await self.tb.settle()
        sent = [m for m in sim.emails.values() if not m.inbound and m.text.startswith("app answer")]
        for message in sent:
            await self.deliver(sim.event(message.message_id, "delivered"))
            await self.deliver(sim.event(message.message_id, "opened"))
        reply = sim.route_post(PEOPLE[0], "Re: Question 0", "thanks!", reply_to=sent[0].message_id)
        await self.deliver(reply, again=reply)
        await self.refused("evt-mg-edit", "message.updated", {"id": "app-mg-0", "text": "edited"})
        await self.refused("evt-mg-del", "message.deleted", {"id": "app-mg-0"})
        self.note("3 emails delivered twice (one multipart, one a reply to the app's), "
                  "2 app replies with delivered/opened events, edit and delete refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        index, out = email_threads.ThreadIndex(), dict[str, dict[str, Truth]]()
        for m in self.sim.emails.values():
            references = tuple(email_threads.message_ids(m.references))
            parent = email_threads.first_message_id(m.in_reply_to)
            thread = index.assign(email_threads.Threading(m.message_id, parent, references, m.subject))
            out.setdefault(thread, {})[m.message_id] = Truth(m.text, state=None if m.inbound else m.state)
        return out

    def exported_at_platform(self) -> int:
        return sum(1 for m in self.sim.emails.values() if m.text.startswith("app answer"))


SCENARIO = MailgunScenario

"""Twilio SMS: history imported both ways per counterpart; the number's SmsUrl set by syncd;
inbound SMS redelivered (stored once); app messages sent with StatusCallback, then their
sent/delivered callbacks; one deleted at Twilio; edits refused (SMS cannot be changed)."""

from __future__ import annotations

from typing import Any

from syncd.providers.twilio.sim import TwilioSimulator
from syncd.sim.scenario import Scenario, Truth, plural

PEOPLE = ["+14155550101", "+14155550102", "+14155550103"]


class TwilioScenario(Scenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 2
    platform = "twilio"

    def simulator(self) -> TwilioSimulator:
        return TwilioSimulator()

    def credentials(self) -> dict[str, Any]:
        return self.sim.trial_credentials()

    def seed(self) -> str:
        for i in range(max(self.messages, 4)):
            self.sim.add(PEOPLE[i % len(PEOPLE)], f"history sms {i}", inbound=i % 3 != 2)
        self.tally.expected["imported"] = len(self.sim.messages)
        return f"{plural(len(self.sim.messages), 'message')} with {plural(len(PEOPLE), 'number')}"

    async def handshake(self) -> None:
        await self.tb.settle()  # the maintenance run at creation sets the number's SmsUrl
        ok = self.sim.sms_url == self.integration["webhookUrl"]
        self.tally.handshake = "ok" if ok else "FAILED"
        if not ok:
            self.problem(f"the number's SmsUrl is {self.sim.sms_url!r}")
        self.note("the number's SmsUrl set to the webhook URL")

    async def live(self) -> None:
        sim = self.sim
        for i in range(4):
            delivery = sim.inbound(PEOPLE[i % 2], f"live sms {i}")
            await self.deliver(delivery, again=delivery)
        for i, number in enumerate(PEOPLE[:2]):
            await self.event(f"evt-tw-{i}", "message.created", {"id": f"app-tw-{i}", "text": f"app sms {i}"},
                             externalChatId=number)
        await self.tb.settle()
        sent = [m for m in sim.truth() if m.text.startswith("app sms")]
        for message in sent:
            await self.deliver(sim.status_callback(message.sid, "sent"))
            await self.deliver(sim.status_callback(message.sid, "delivered"))
        await self.event("evt-tw-del", "message.deleted", {"id": "app-tw-1"})
        await self.refused("evt-tw-edit", "message.updated", {"id": "app-tw-0", "text": "edited"})
        self.note("4 SMS delivered twice, 2 app SMS with sent/delivered callbacks, 1 deleted, edit refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for m in self.sim.truth():
            state = m.status if m.text.startswith("app sms") and not m.deleted else None
            out.setdefault(m.counterpart, {})[m.sid] = Truth(m.text, deleted=m.deleted, state=state)
        return out

    def exported_at_platform(self) -> int:
        return sum(1 for m in self.sim.truth() if m.text.startswith("app sms"))


SCENARIO = TwilioScenario

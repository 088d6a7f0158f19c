"""Viber: a platform that is only a manifest. No history; set_webhook on start and Viber's signed
URL check answered; subscribers' messages redelivered; app messages sent, then their
delivered/seen receipts; edits and deletes refused (the Bot API has neither)."""

from __future__ import annotations

from typing import Any

from syncd.providers.viber.sim import ViberSimulator
from syncd.sim.scenario import Scenario, Truth

PEOPLE = {"01234567890A=": "Ann Ames", "98765432109B=": "Bo Berg"}


class ViberScenario(Scenario):
    platform = "viber"
    history = False

    def simulator(self) -> ViberSimulator:
        return ViberSimulator()

    def credentials(self) -> dict[str, Any]:
        return self.sim.trial_credentials()

    async def handshake(self) -> None:
        await self.tb.settle()  # the maintenance run at creation calls set_webhook
        registered = self.sim.webhook_url == self.integration["webhookUrl"]
        answer = await self.tb.deliver(self.integration, self.sim.webhook_check())
        self.tally.handshake = "ok" if registered and answer.status_code == 200 else "FAILED"
        if self.tally.handshake == "FAILED":
            self.problem(f"set_webhook registered {self.sim.webhook_url!r}; the URL check answered {answer.status_code}")
        self.note("set_webhook registered the URL; Viber's signed URL check answered 200")

    async def live(self) -> None:
        sim = self.sim
        for user_id, name in PEOPLE.items():
            await self.deliver(sim.subscribe(user_id, name))
        for i in range(6):
            user_id = list(PEOPLE)[i % len(PEOPLE)]
            delivery = sim.user_message(user_id, f"live question {i}")
            await self.deliver(delivery, again=delivery)
        for i, user_id in enumerate(PEOPLE):
            await self.event(f"evt-vb-{i}", "message.created", {"id": f"app-vb-{i}", "text": f"bot answer {i}"},
                             externalChatId=user_id)
        await self.tb.settle()
        for message in [m for m in sim.truth() if m.from_bot]:
            await self.deliver(sim.receipt(message.token, "delivered"))
            await self.deliver(sim.receipt(message.token, "seen"))
        await self.refused("evt-vb-edit", "message.updated", {"id": "app-vb-0", "text": "edited"})
        await self.refused("evt-vb-del", "message.deleted", {"id": "app-vb-0"})
        self.note("6 messages delivered twice, 2 app messages with delivered/seen receipts, edit and delete refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for m in self.sim.truth():
            out.setdefault(m.user_id, {})[str(m.token)] = Truth(m.text, state=m.state if m.from_bot else None)
        return out

    def exported_at_platform(self) -> int:
        return sum(1 for m in self.sim.truth() if m.from_bot)


SCENARIO = ViberScenario

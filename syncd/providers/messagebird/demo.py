"""MessageBird: SMS conversations imported from the Messages list (sent and received sides, offset
paging), inbound SMS redelivered and signed both ways (JWT and the legacy signature), a forged
delivery refused, app messages sent with a status report URL, then their status reports
(delivered, delivery_failed) as deliveryState; edits and deletes refused (SMS has neither)."""

from __future__ import annotations

from typing import Any

from syncd.providers.messagebird.sim import STATES, MessageBirdDelivery, MessageBirdSimulator
from syncd.sim.scenario import Scenario, Truth, plural

PEOPLE = ("31612345678", "31687654321", "447700900123")


class MessageBirdScenario(Scenario):
    platform = "messagebird"
    share = 2

    def simulator(self) -> MessageBirdSimulator:
        return MessageBirdSimulator()

    def credentials(self) -> dict[str, Any]:
        return self.sim.trial_credentials()

    def seed(self) -> str:
        count = max(len(PEOPLE), self.messages)
        for i in range(count):
            direction = "mo" if i % 3 else "mt"
            self.sim.add(direction, PEOPLE[i % len(PEOPLE)], f"sms {i}", minutes_ago=count - i,
                         status="delivered" if direction == "mt" and i % 2 else None)
        self.tally.expected["imported"] = count
        return f"{plural(count, 'message')} with {len(PEOPLE)} phone numbers, sent and received"

    async def deliver(self, delivery: Any, *, again: Any | None = None, status: int = 200) -> None:
        """As the platform calls: status reports (and some inbound SMS) are GETs."""
        for attempt in (delivery, again) if again is not None else (delivery,):
            response = await self._call(attempt)
            if response.status_code != status:
                self.problem(f"a delivery answered {response.status_code}: {response.text[:160]}")
        if again is not None:
            self.tally.expected["duplicates"] += 1

    async def _call(self, delivery: MessageBirdDelivery) -> Any:
        url = self.tb.webhook_url(self.integration) + (f"?{delivery.query}" if delivery.query else "")
        return await self.tb.api.request(delivery.method, url, content=delivery.body or None, headers=delivery.headers)

    async def live(self) -> None:
        sim = self.sim
        sim.webhook_url = self.integration["webhookUrl"]
        for i, number in enumerate(PEOPLE):
            delivery = sim.inbound(number, f"live sms {i}")
            await self.deliver(delivery, again=delivery)
        await self.deliver(sim.inbound(PEOPLE[0], "live sms by GET, legacy signature", method="GET",
                                       jwt_header=False, legacy=True))
        forged = sim.inbound(PEOPLE[1], "forged", key="0" * 64)
        sim.messages.popitem()  # never sent by MessageBird: not part of the truth
        await self.deliver(forged, status=401)
        for i, number in enumerate(PEOPLE[:2]):
            await self.event(f"evt-mb-{i}", "message.created", {"id": f"app-mb-{i}", "text": f"app sms {i}"},
                             externalChatId=number)
        await self.tb.settle()
        sent = [m for m in sim.truth() if m.reference and m.reference.startswith("app-mb-")]
        for message, final in zip(sent, ("delivered", "delivery_failed")):
            await self.deliver(sim.status_report(message.id, "sent"))
            await self.deliver(sim.status_report(message.id, final))
        await self.refused("evt-mb-edit", "message.updated", {"id": "app-mb-0", "text": "edited"})
        await self.refused("evt-mb-del", "message.deleted", {"id": "app-mb-0"})
        self.note("3 SMS delivered twice (JWT), 1 by GET (legacy signature), a forged one refused 401, "
                  "2 app SMS with status reports, edit and delete refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for m in self.sim.truth():
            state = STATES[m.status] if m.direction == "mt" else None
            out.setdefault(m.counterpart, {})[m.id] = Truth(m.body, state=state)
        return out

    def exported_at_platform(self) -> int:
        return len(self.sim.sent_bodies)


SCENARIO = MessageBirdScenario

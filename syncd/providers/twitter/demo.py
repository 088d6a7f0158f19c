"""X DMs: conversations derived from the last 30 days of DM events and imported (an older one
is not listed), the CRC handshake answered, Account Activity deliveries redelivered, app
messages sent to the other participant with their echoes merged, one deleted; edits refused
(X has none)."""

from __future__ import annotations

from typing import Any

from syncd.providers.twitter.sim import THIRTY_DAYS_S, XSimulator
from syncd.sim.scenario import Scenario, Truth, plural

WRITERS = ("9876543210", "9876543211", "1122334455667788990")


class XScenario(Scenario):
    share = 0
    platform = "twitter"

    def simulator(self) -> XSimulator:
        return XSimulator()

    def credentials(self) -> dict[str, Any]:
        return self.sim.trial_credentials()

    def seed(self) -> str:
        self.sim.seed(conversations=3, per_conversation=5)
        self.tally.expected["imported"] = 15
        return f"{plural(15, 'message')} in {plural(3, 'conversation')} (and one older than 30 days)"

    async def handshake(self) -> None:
        token = str(self.rng.randrange(10**9))
        answer = await self.tb.api.get(self.tb.webhook_url(self.integration), params={"crc_token": token})
        ok = answer.status_code == 200 and answer.json().get("response_token") == self.sim.crc_answer(token)
        self.tally.handshake = "ok" if ok else "FAILED"
        if not ok:
            self.problem(f"the CRC answered {answer.status_code} {answer.text[:80]}")
        self.note("CRC answered with the consumer secret's HMAC")

    async def live(self) -> None:
        sim = self.sim
        for i in range(6):
            delivery = sim.incoming(WRITERS[i % len(WRITERS)], f"live question {i}", name=f"Writer {i % 3}")
            await self.deliver(delivery, again=delivery)
        for i, other in enumerate(WRITERS[:2]):
            await self.event(f"evt-x-{i}", "message.created", {"id": f"app-x-{i}", "text": f"answer {i}"},
                             externalChatId=sim.conversation_with(other))
        await self.tb.settle()
        for event in [e for e in sim.truth() if e.text.startswith("answer ")]:
            await self.deliver(sim.echo(event.id))  # merges into the sent message
        await self.event("evt-x-del", "message.deleted", {"id": "app-x-0"})
        await self.tb.settle()
        await self.refused("evt-x-edit", "message.updated", {"id": "app-x-1", "text": "edited"})
        self.note("6 messages delivered twice, 2 app messages with their echoes, 1 deleted, edit refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        cutoff = self.sim.clock() - THIRTY_DAYS_S
        for e in sorted(self.sim.events.values(), key=lambda e: int(e.id)):
            if e.created_s >= cutoff:
                out.setdefault(e.conversation_id, {})[e.id] = Truth(e.text, deleted=e.deleted)
        return out

    def exported_at_platform(self) -> int:
        return sum(1 for e in self.sim.events.values() if e.text.startswith("answer "))


SCENARIO = XScenario

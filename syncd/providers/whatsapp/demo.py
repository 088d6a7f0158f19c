"""WhatsApp: a business number keeps no history (chats appear as customers write), the
hub.challenge handshake, signed deliveries redelivered by Meta, edits and revokes, app replies
inside the 24-hour window with their statuses merged into the one stored message, and app
edits and deletes refused (the Cloud API has neither)."""

from __future__ import annotations

from syncd.providers.meta.sim import MetaDelivery
from syncd.providers.whatsapp.sim import WhatsAppSimulator
from syncd.sim.scenario import Scenario, Truth

CUSTOMERS = {"351912345678": "Rita Sousa", "5511987654321": "Joao Pereira", "4915112345678": "Lena Vogel",
             "16505551234": "Sheena Nelson"}


class WhatsAppScenario(Scenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 0
    platform = "whatsapp"
    history = False

    def simulator(self) -> WhatsAppSimulator:
        return WhatsAppSimulator()

    async def handshake(self) -> None:
        await self.challenge(self.sim.handshake_query(challenge=str(self.rng.randrange(10**9))),
                             self.sim.handshake_query(verify_token="a-guess"))

    @staticmethod
    def _wamid(delivery: MetaDelivery) -> str:
        return delivery.payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]

    async def live(self) -> None:
        sim, tb = self.sim, self.tb
        sent = []
        for i in range(8):
            wa_id = list(CUSTOMERS)[i % len(CUSTOMERS)]
            delivery = sim.incoming_text(wa_id, f"question {i} about my order", name=CUSTOMERS[wa_id])
            sent.append(self._wamid(delivery))
            await self.deliver(delivery, again=sim.retry(delivery))
        for wamid in sent[:2]:
            await self.deliver(sim.edit(wamid, "corrected question"))
            self.tally.expected["updated"] += 1
        await self.deliver(sim.revoke(sent[2]))
        self.tally.expected["deleted"] += 1
        self.note("8 messages delivered twice, 2 edits, 1 revoke")

        for i, wa_id in enumerate(list(CUSTOMERS)[:3]):
            await self.event(f"evt-wa-{i}", "message.created", {"id": f"app-wa-{i}", "text": f"Happy to help ({i})"},
                             externalChatId=wa_id)
        await tb.settle()
        for message in sim.truth():
            if message["direction"] == "out":
                await self.deliver(sim.status(message["wamid"], "delivered"))
                await self.deliver(sim.status(message["wamid"], "read"))
        await self.refused("evt-wa-edit", "message.updated", {"id": "app-wa-0", "text": "changed"})
        await self.refused("evt-wa-del", "message.deleted", {"id": "app-wa-1"})
        self.note("3 app replies, their delivered/read statuses merged; app edit and delete refused (422)")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for message in self.sim.truth():
            state = message["status"] if message["direction"] == "out" else None
            out.setdefault(message["wa_id"], {})[message["wamid"]] = Truth(message["text"], message["revoked"],
                                                                           state=state)
        return out

    def exported_at_platform(self) -> int:
        return sum(1 for m in self.sim.truth() if m["direction"] == "out")


SCENARIO = WhatsAppScenario

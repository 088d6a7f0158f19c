"""LINE: a platform that is only a manifest. No history; the console's Verify request answered
and nothing stored; friends, a group and a room with names from the profile APIs; messages
redelivered (flagged isRedelivery) and suppressed; an unsend as a tombstone; app messages
pushed with a retry key, one of them retried after LINE accepted it (409: sent once); edits
and deletes refused (bots can do neither)."""

from __future__ import annotations

import uuid
from typing import Any

from syncd.providers.line.sim import LineSimulator
from syncd.sim.scenario import Scenario, Truth

PEOPLE = {"U" + "a1" * 16: "Ann Ames", "U" + "b2" * 16: "Bo Berg"}
GROUP, ROOM = "C" + "c3" * 16, "R" + "d4" * 16


class LineScenario(Scenario):
    platform = "line"
    history = False

    def simulator(self) -> LineSimulator:
        return LineSimulator()

    def credentials(self) -> dict[str, Any]:
        return self.sim.trial_credentials()

    async def handshake(self) -> None:
        answer = await self.tb.deliver(self.integration, self.sim.verify_request())
        status = (await self.tb.api.get(f"/integrations/{self.integration['id']}/status")).json()
        stored = sum(status["inbox"].values())
        self.tally.handshake = "ok" if answer.status_code == 200 and stored == 0 else "FAILED"
        if self.tally.handshake == "FAILED":
            self.problem(f"the Verify request answered {answer.status_code}, {stored} deliveries stored")
        self.note("the console's Verify request (no events) answered 200, nothing stored")

    async def live(self) -> None:
        sim = self.sim
        users = list(PEOPLE)
        await self.deliver(sim.deliver(*[sim.follow(u, n) for u, n in PEOPLE.items()],
                                       sim.join(GROUP, "Ops team"), sim.join(ROOM)))
        chats = [users[0], users[1], GROUP, ROOM]
        for i in range(6):
            delivery = sim.deliver(sim.message(chats[i % 4], f"live question {i}", users[i % 2]))
            await self.deliver(delivery, again=sim.redeliver(delivery))
        taken_back = sim.message(users[0], "sent by mistake")
        await self.deliver(sim.deliver(taken_back))
        await self.deliver(sim.deliver(sim.unsend(taken_back["message"]["id"])))
        self.tally.expected["deleted"] += 1
        # LINE accepted app-ln-0 before (its answer was lost): the push is answered 409, sent once.
        sim.accepted_before(str(uuid.uuid5(uuid.NAMESPACE_URL, "app-ln-0")), users[0], "bot answer 0")
        for i, chat_id in enumerate(chats[:3]):
            await self.event(f"evt-ln-{i}", "message.created", {"id": f"app-ln-{i}", "text": f"bot answer {i}"},
                             externalChatId=chat_id)
        await self.tb.settle()
        await self.refused("evt-ln-edit", "message.updated", {"id": "app-ln-1", "text": "edited"})
        await self.refused("evt-ln-del", "message.deleted", {"id": "app-ln-1"})
        names = {k: c["name"] for k, c in (await self.tb.chats(self.integration)).items()}
        if names != {**PEOPLE, GROUP: "Ops team", ROOM: None}:
            self.problem(f"chat names {names}")
        self.note("6 messages redelivered, 1 unsent, 3 app pushes (1 answered 409), names from the profile APIs")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for m in self.sim.truth():
            out.setdefault(m.chat_id, {})[m.id] = Truth(m.text, deleted=m.unsent)
        return out

    def exported_at_platform(self) -> int:
        return sum(1 for m in self.sim.truth() if m.from_bot)


SCENARIO = LineScenario

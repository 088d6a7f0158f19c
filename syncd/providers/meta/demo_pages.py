"""Messenger and Instagram: a Page's (or professional account's) conversations imported from
the Graph API, the hub.challenge handshake, signed deliveries redelivered by Meta, edits and
unsends, a reply typed in the account's own inbox (an echo only), and app replies whose echoes
arrive before or after the Send API answers, all merged. App edits and deletes are refused:
the Send API has neither."""

from __future__ import annotations

import time

from syncd.providers.meta.sim import MetaDelivery
from syncd.providers.meta.sim_pages import PageMessagingSimulator
from syncd.sim.scenario import Scenario, Truth, plural

#: The Graph API details only the 20 newest messages of a conversation (older ones cannot be
#: imported), so seeded conversations stay below that.
PER_CONVERSATION = 12
NAMES = ("Ann Ames", "Bo Berg", "Cy Cole", "Di Dahl", "Ed Eng", "Flo Fox", "Gus Gray", "Hal Hope")


class PageScenario(Scenario):
    """What Messenger and Instagram share; subclasses give the simulator and the names."""

    first_id: int = 5678

    def _name(self, i: int) -> str:
        return NAMES[i % len(NAMES)] + (f" {i // len(NAMES) + 1}" if i >= len(NAMES) else "")

    def seed(self) -> str:
        sim: PageMessagingSimulator = self.sim
        people = max(1, -(-self.messages // PER_CONVERSATION))
        self.people = [sim.add_person(str(self.first_id + i), self._name(i)) for i in range(people)]
        start = int((time.time() - 3600) * 1000)
        for i in range(self.messages):
            sim.add_message(self.people[i % people], f"history {i}", from_account=i % 3 == 2, at_ms=start + i * 1000)
        self.tally.expected["imported"] = self.messages
        return f"{plural(self.messages, 'message')} in {plural(people, 'conversation')}"

    async def handshake(self) -> None:
        await self.challenge(self.sim.handshake_query(challenge=str(self.rng.randrange(10**9))),
                             self.sim.handshake_query(verify_token="a-guess"))

    async def live(self) -> None:
        sim, tb = self.sim, self.tb
        newcomer = str(self.first_id + 900_000)  # past every seeded person
        writers = [*self.people[:3], newcomer]
        mids = []
        for i in range(8):
            user = writers[i % len(writers)]
            delivery = sim.user_message(user, f"live question {i}", name="New Person" if user == newcomer else None)
            mids.append(sim.last_mid(user))
            await self.deliver(delivery, again=sim.retry(delivery))
        for mid in mids[:2]:
            await self.deliver(sim.edit(mid, "live question, corrected"))
            self.tally.expected["updated"] += 1
        await self.deliver(sim.unsend(mids[2]))
        self.tally.expected["deleted"] += 1
        await self.deliver(sim.page_message(writers[0], "answered from the inbox"))
        self.note("8 messages delivered twice (one from a new person), 2 edits, 1 unsend, 1 inbox reply")

        # Half the echoes of app messages arrive before the Send API answers, half after.
        early: list[MetaDelivery] = []

        async def echo_before_reply(delivery: MetaDelivery) -> None:
            if len(early) % 2 == 0:
                await self.deliver(delivery)
            early.append(delivery)

        sim.on_echo = echo_before_reply
        for i, user in enumerate(writers):
            await self.event(f"evt-{self.platform}-{i}", "message.created",
                             {"id": f"app-{self.platform}-{i}", "text": f"Thanks for writing ({i})"},
                             externalChatId=user)
        await tb.settle()
        sim.on_echo = None
        for delivery in early[1::2]:
            await self.deliver(delivery)
        await self.refused(f"evt-{self.platform}-edit", "message.updated",
                           {"id": f"app-{self.platform}-0", "text": "changed"})
        await self.refused(f"evt-{self.platform}-del", "message.deleted", {"id": f"app-{self.platform}-1"})
        self.note(f"{len(writers)} app replies, {len(early[::2])} of their echoes before the reply; "
                  "app edit and delete refused (422)")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for message in self.sim.truth():
            out.setdefault(message["user_id"], {})[message["mid"]] = Truth(message["text"], message["deleted"])
        return out

    def exported_at_platform(self) -> int:
        return sum(1 for m in self.sim.messages.values() if m.app_id is not None)

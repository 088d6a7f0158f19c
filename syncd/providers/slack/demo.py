"""Slack: channels with history, the url_verification handshake, Events API deliveries retried
by Slack, edits and deletes both ways, and echoes racing the send reply."""

from __future__ import annotations

import time
from typing import Any

from syncd.providers.slack.sim import us_to_ts
from syncd.sim.scenario import Scenario, Truth, plural


class SlackScenario(Scenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 6
    platform = "slack"

    def bind(self, tb: Any) -> None:
        super().bind(tb)
        self.sim = tb.slack

    def seed(self) -> str:
        sim = self.sim
        self.ids = ids = sim.seed_workspace()
        people = [ids["alice"], ids["bob"], ids["carol"]]
        channels = [ids["general"], sim.add_channel("support"), sim.add_channel("engineering")]
        ids["support"] = channels[1]
        base = int(time.time()) - 86_400
        for i in range(max(0, self.messages - sum(len(v) for v in sim.messages.values()))):
            sim.add_message(channels[i % len(channels)], f"history message {i}", self.rng.choice(people),
                            ts=us_to_ts((base + i * 7) * 1_000_000 + i))
        seeded = sum(len(v) for v in sim.messages.values())
        self.tally.expected["imported"] = seeded
        return f"{plural(seeded, 'message')} in {plural(len(sim.channels), 'conversation')}"

    async def handshake(self) -> None:
        delivery = self.sim.url_verification()
        answer = await self.tb.deliver(self.integration, delivery)
        ok = answer.status_code == 200 and answer.json() == {"challenge": delivery.payload["challenge"]}
        self.tally.handshake = "ok" if ok else "FAILED"
        if not ok:
            self.problem(f"url_verification answered {answer.status_code} {answer.text[:80]}")
        self.note("url_verification challenge answered")

    async def live(self) -> None:
        sim, tb, ids = self.sim, self.tb, self.ids
        support = ids["support"]
        # Slack retries a delivery it thinks was not acknowledged: same event, new signature.
        posted = []
        for i in range(10):
            delivery = sim.post_user_message(support, f"live question {i}", self.rng.choice([ids["bob"], ids["carol"]]))
            posted.append(delivery)
            await self.deliver(delivery, again=sim.retry(delivery))
        for delivery in posted[:3]:
            await self.deliver(sim.edit_message(support, delivery.payload["event"]["ts"], "edited!"))
            self.tally.expected["updated"] += 1
        for delivery in posted[3:5]:
            await self.deliver(sim.delete_message(support, delivery.payload["event"]["ts"]))
            self.tally.expected["deleted"] += 1
        self.note("10 new messages delivered twice, 3 edits, 2 deletes")

        # Half the echoes of app messages arrive before the send reply, half after it.
        early: list[Any] = []

        async def echo_before_reply(delivery: Any) -> None:
            if len(early) % 2 == 0:
                await self.deliver(delivery)
            early.append(delivery)

        sim.on_echo = echo_before_reply
        for i in range(6):
            await self.event(f"evt-slack-{i}", "message.created", {"id": f"app-msg-{i}", "text": f"reply {i}"},
                             externalChatId=ids["general"])
        # The same event id again is answered as before and sends nothing twice.
        again = await tb.post_event({"id": "evt-slack-0", "type": "message.created", "customerId": "cust-1",
                                     "platform": "slack", "externalChatId": ids["general"],
                                     "message": {"id": "app-msg-0", "text": "reply 0"}})
        if again.status_code != 202:
            self.problem(f"a repeated event answered {again.status_code}")
        await tb.settle()
        await self.event("evt-slack-edit", "message.updated", {"id": "app-msg-1", "text": "reply, corrected"})
        await self.event("evt-slack-del", "message.deleted", {"id": "app-msg-2"})
        await tb.settle()
        sim.on_echo = None
        for delivery in early[1::2]:
            await self.deliver(delivery)
        self.note("6 app messages (3 echoes before the reply), 1 app edit, 1 app delete")

    def truth(self) -> dict[str, dict[str, Truth]]:
        return {c: {f"{c}:{m['ts']}": Truth(m["text"], m["deleted"]) for m in self.sim.truth(c)}
                for c in self.sim.channels}

    def exported_at_platform(self) -> int:
        return sum(1 for c in self.sim.channels for m in self.sim.truth(c) if m["user"] == self.sim.bot_user_id)


SCENARIO = SlackScenario

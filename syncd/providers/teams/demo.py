"""Microsoft Teams: chats and a channel with threads imported from Graph, subscriptions whose
validationToken handshake reaches syncd through its API, change notifications (each delivered
twice) that syncd verifies by clientState and fetches, edits and soft deletes both ways, and
the notifications of the app's own messages merged as echoes."""

from __future__ import annotations

from typing import Any

from syncd.providers.teams.connector import compose
from syncd.providers.teams.sim import TeamsDelivery, TeamsSimulator
from syncd.sim.scenario import Scenario, Truth, plural


class TeamsScenario(Scenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 4
    platform = "teams"

    def simulator(self) -> TeamsSimulator:
        return TeamsSimulator()

    def bind(self, tb: Any) -> None:
        super().bind(tb)
        #: (status, content type, body matches) of every validation Graph ran.
        self.validations: list[tuple[int, str, bool]] = []

        async def validate(delivery: TeamsDelivery) -> tuple[int, str, str]:
            status, content_type, body = await tb.validate_teams(delivery)
            assert delivery.payload is not None  # a validation request carries its token
            self.validations.append((status, content_type, body == delivery.payload["validationToken"]))
            return status, content_type, body

        self.sim.validator = validate

    def seed(self) -> str:
        sim = self.sim
        self.ids = ids = sim.seed()
        self.chats = [ids["dm"], ids["group"], ids["untitled"]]
        root = ids["root"]
        for i in range(max(0, self.messages - self._history())):
            if i % 4 < 3:
                chat = self.chats[i % 4]
                sender = self.rng.choice([u for u in sim.members[chat] if u != sim.me] + [sim.me])
                sim.post(chat, sender, f"chat message {i}", content_type="text")
            elif i % 20 == 3:
                root = sim.post(ids["general"], ids["alex"], f"<p>Topic <b>{i}</b></p>", subject=f"Topic {i}")["id"]
            else:
                sim.post(ids["general"], self.rng.choice([ids["megan"], ids["lee"]]), f"<p>Reply <i>{i}</i></p>",
                         reply_to=root)
        self.tally.expected["imported"] = self._history()
        return f"{plural(self._history(), 'message')} in {len(self.chats)} chats and 1 channel with threads"

    def _history(self) -> int:
        return sum(len(box) for box in self.truth().values())

    async def handshake(self) -> None:
        # Graph validated each subscription while syncd created it at connection time.
        await self.tb.settle()
        passed = [v for v in self.validations if v[0] == 200 and v[1].startswith("text/plain") and v[2]]
        self.tally.handshake = "ok" if self.validations and len(passed) == len(self.validations) else "FAILED"
        if self.tally.handshake == "FAILED":
            self.problem(f"validationToken handshakes: {len(passed)} of {len(self.validations)} answered right")
        self.note(f"validationToken echoed as text/plain for {len(self.sim.subscriptions)} subscriptions")

    async def notifications(self, *, twice: bool = False) -> None:
        """Deliver what Graph queued for the subscriptions since the last call."""
        for delivery in self.sim.take_deliveries():
            await self.deliver(delivery, again=delivery if twice else None, status=202)

    async def live(self) -> None:
        sim, ids, tb = self.sim, self.ids, self.tb
        self.before = {m["id"] for box in sim.boxes for m in sim.truth(box)}
        sim.take_deliveries()
        people = [ids["megan"], ids["alex"], ids["lee"]]
        posted = []
        for i in range(8):
            if i % 4 < 3:
                chat = self.chats[i % 4]
                sender = self.rng.choice([u for u in sim.members[chat] if u != sim.me])
                posted.append((chat, sim.post(chat, sender, f"live message {i}", content_type="text")))
            else:
                posted.append((ids["general"], sim.post(ids["general"], self.rng.choice(people),
                                                        f"<p>live reply <b>{i}</b></p>", reply_to=ids["root"])))
            await self.notifications(twice=True)
        for chat, message in posted[:3]:
            sim.edit(chat, message["id"], message["body"]["content"] + " (edited)")
            self.tally.expected["updated"] += 1
        for chat, message in posted[3:5]:
            sim.soft_delete(chat, message["id"])
            self.tally.expected["deleted"] += 1
        await self.notifications()
        self.note("8 notifications delivered twice, 3 edits, 2 soft deletes")

        thread = compose(ids["general"], ids["root"])
        targets: list[tuple[str, dict[str, str]]] = [(c, {}) for c in self.chats] + [(ids["general"], {"externalThreadId": thread})]
        for i, (chat, extra) in enumerate(targets):
            await self.event(f"evt-teams-{i}", "message.created",
                             {"id": f"app-teams-{i}", "text": f"answer from the app {i}", **extra},
                             externalChatId=chat)
        await tb.settle()
        await self.notifications()  # the app messages' own notifications: echoes
        await tb.settle()
        await self.event("evt-teams-edit", "message.updated", {"id": "app-teams-0", "text": "answer, corrected"})
        await self.event("evt-teams-del", "message.deleted", {"id": "app-teams-3"})
        await tb.settle()
        await self.notifications()
        self.note("4 app messages (one in a channel thread) and their echoes, 1 app edit, 1 app delete")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for box in self.sim.boxes:
            # System events (members added, topic changed) are not conversation messages.
            out[box] = {compose(box, m["id"]): Truth(m["body"]["content"], m["deletedDateTime"] is not None,
                                                     "html" if m["body"]["contentType"] == "html" else "text")
                        for m in self.sim.truth(box) if m["messageType"] == "message"}
        return out

    def exported_at_platform(self) -> int:
        me = self.sim.me
        return sum(1 for box in self.sim.boxes for m in self.sim.truth(box)
                   if m["id"] not in self.before and ((m.get("from") or {}).get("user") or {}).get("id") == me)


SCENARIO = TeamsScenario

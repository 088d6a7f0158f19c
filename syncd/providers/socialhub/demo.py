"""SocialHub: no history (no list API); PATCH /manifest on start, whose webhook test is
answered with the challenge; app messages become tickets (one of them a repeat SocialHub
answers 409, as after a lost answer; one in a conversation syncd has not seen); agents'
replies arrive as signed ticket_action events (each redelivered), join their ticket's chat and
are confirmed (follow-up success);
a forged signature is refused; edits and deletes refused."""

from __future__ import annotations

from typing import Any

from syncd.providers.socialhub.sim import SocialHubSimulator, Ticket
from syncd.sim.scenario import Scenario, Truth

CHATS = ("conversation-48622799", "conversation-51200001")


class SocialHubScenario(Scenario):
    platform = "socialhub"
    history = False

    def simulator(self) -> SocialHubSimulator:
        return SocialHubSimulator()

    def credentials(self) -> dict[str, Any]:
        self.sim.webhook_client = self.tb.api  # PATCH /manifest tests the webhook through syncd's API
        return self.sim.trial_credentials()

    async def handshake(self) -> None:
        await self.tb.settle()  # the maintenance run at creation patches the manifest
        hook = self.sim.webhook or {}
        forged = self.sim.signed({"events": {}}, secret="not-the-secret-" + "x" * 32)
        refused = await self.tb.deliver(self.integration, forged)
        ok = hook.get("url") == self.integration["webhookUrl"] and self.sim.webhook_tests == [200] \
            and refused.status_code == 401 and [a["type"] for a in self.sim.ticket_actions] == ["reply"]
        self.tally.handshake = "ok" if ok else "FAILED"
        if not ok:
            self.problem(f"manifest webhook {hook.get('url')!r}, tests {self.sim.webhook_tests}, "
                         f"a forged signature {refused.status_code}")
        self.note("PATCH /manifest set the webhook and a reply action; its test answered with the challenge")

    async def live(self) -> None:
        sim = self.sim
        # As if an earlier attempt had created it and its answer was lost: SocialHub answers 409.
        sim.tickets.append(Ticket("5eb493dcac52392e08513417", "app-sh-0", CHATS[0], "question 0", None))
        for i in range(4):
            await self.event(f"evt-sh-{i}", "message.created", {"id": f"app-sh-{i}", "text": f"question {i}"},
                             externalChatId=CHATS[i % 2])
        await self.tb.settle()
        for i in range(4):
            delivery = sim.reply(f"app-sh-{i}", f"agent reply {i}")
            await self.deliver(delivery, again=delivery)
        await self.tb.settle()
        states = [state for t in sim.truth() for _, state in t.replies.values()]
        if states != ["done"] * 4:
            self.problem(f"the replies' follow-ups are {states}, not all confirmed")
        await self.refused("evt-sh-edit", "message.updated", {"id": "app-sh-1", "text": "edited"})
        await self.refused("evt-sh-del", "message.deleted", {"id": "app-sh-1"})
        self.note("4 app messages as tickets (one a 409 repeat), 4 agent replies delivered twice and confirmed, edit and delete refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for ticket in self.sim.truth():
            chat = out.setdefault(ticket.root_id or "", {})
            chat[ticket.network_item_id] = Truth(ticket.message)
            for followup, (text, _) in ticket.replies.items():
                chat[followup] = Truth(text)
        return out

    def exported_at_platform(self) -> int:
        return len(self.sim.tickets)


SCENARIO = SocialHubScenario

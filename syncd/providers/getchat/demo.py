"""get.chat: the integration is created with no credentials; the Inbox then calls the plugin
as its admin panel does (``/``, ``/features``, ``/initialize``, ``/configure_api``), which starts
the import through the Integration API. Live: propagated WABA webhooks (each redelivered), app
messages sent (202, queued) and their sent/delivered/read statuses; edits and deletes refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from syncd.providers.getchat.sim import GetchatSimulator
from syncd.sim.scenario import Scenario, Truth

PEOPLE = {"4915112345678": "Ann Ames", "4915187654321": "Bo Berg", "4917612345678": "Cy Chen"}


class GetchatScenario(Scenario):
    platform = "getchat"
    share = 1

    def simulator(self) -> GetchatSimulator:
        return GetchatSimulator()

    def seed(self) -> str:
        count = max(3, self.messages)
        for n, (wa_id, name) in enumerate(PEOPLE.items()):
            texts = [(f"{name.split()[0]} history {i}", i % 3 == 2) for i in range(n, count, len(PEOPLE))]
            self.sim.seed(wa_id, name, texts)
        self.tally.expected["imported"] = len(self.sim.messages)
        return f"{len(self.sim.messages)} messages in {len(PEOPLE)} chats"

    def _plugin(self, integration: dict[str, Any]) -> str:
        return urlsplit(integration["pluginUrl"]).path

    async def create(self, *, wait: bool) -> dict[str, Any]:
        answer = await self.tb.api.post("/integrations", json={"platform": "getchat", "customerId": "cust-1"})
        if answer.status_code != 201:
            raise AssertionError(f"create getchat: {answer.status_code} {answer.text}")
        integration = answer.json()["integration"]
        root = self._plugin(integration)
        calls = [await self.tb.api.get(root + path) for path in ("/", "/features", "/initialize")]
        configured = await self.tb.api.post(root + "/configure_api", json=self.sim.configure_body())
        wrong = await self.tb.api.get(root[: root.rindex("/")] + "/not-the-secret/features")
        ok = all(c.status_code == 200 for c in calls) and configured.status_code == 200 and wrong.status_code == 404
        self.tally.handshake = "ok" if ok and calls[2].json()["status"] == "authorization_needed" else "FAILED"
        if self.tally.handshake == "FAILED":
            self.problem(f"the plugin answered {[c.status_code for c in calls]}, configure_api "
                         f"{configured.status_code}, a wrong secret {wrong.status_code}")
        if wait:
            await self.tb.wait_imported(integration["id"])
        return integration

    async def handshake(self) -> None:
        initialized = (await self.tb.api.get(self._plugin(self.integration) + "/initialize")).json()
        if initialized != {"status": "initialized"}:
            self.tally.handshake = "FAILED"
            self.problem(f"/initialize after configure_api answered {initialized}")
        self.note("plugin connected: features, initialize, configure_api (a wrong secret: 404)")

    async def deliver(self, delivery: Any, *, again: Any | None = None, status: int = 200) -> None:
        url = self._plugin(self.integration) + "/webhook"
        for attempt in (delivery, again) if again is not None else (delivery,):
            response = await self.tb.api.post(url, content=attempt.body, headers=attempt.headers)
            if response.status_code != status:
                self.problem(f"a delivery answered {response.status_code}: {response.text[:160]}")
        if again is not None:
            self.tally.expected["duplicates"] += 1

    async def live(self) -> None:
        sim = self.sim
        for i in range(4):
            wa_id = list(PEOPLE)[i % len(PEOPLE)]
            delivery = sim.incoming(wa_id, f"live question {i}")
            await self.deliver(delivery, again=delivery)
        for i, wa_id in enumerate(list(PEOPLE)[:2]):
            await self.event(f"evt-gc-{i}", "message.created", {"id": f"app-gc-{i}", "text": f"agent answer {i}"},
                             externalChatId=wa_id)
        await self.tb.settle()
        for message in [m for m in sim.truth() if m.state == "pending"]:
            for state in ("sent", "delivered", "read"):
                await self.deliver(sim.status(message.id, state))
        await self.refused("evt-gc-edit", "message.updated", {"id": "app-gc-0", "text": "edited"})
        await self.refused("evt-gc-del", "message.deleted", {"id": "app-gc-0"})
        self.note("4 webhooks delivered twice, 2 app messages sent with sent/delivered/read, edit and delete refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for m in self.sim.truth():
            out.setdefault(m.wa_id, {})[m.id] = Truth(m.text, state=m.state if m.state != "pending" else None)
        return out

    def exported_at_platform(self) -> int:
        return len(self.sim.sent_bodies)


SCENARIO = GetchatScenario

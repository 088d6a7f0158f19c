"""WeChat: the GET server check answered with echostr (a wrong signature refused); followers'
messages in safe mode (AES), compatible mode and plain mode, each redelivered as WeChat retries;
a follow event; app messages sent through the Customer Service API; edits and deletes refused."""

from __future__ import annotations

from typing import Any

from syncd.providers.wechat.sim import WeChatSimulator
from syncd.sim.scenario import Scenario, Truth

FOLLOWERS = ["oyORnuP8q7ou2gfYjqLzSIWZf0rs", "oDF3iY9WMaswOPWjCIp_f3Bnpljk"]
MODES = ["safe", "compatible", "plain"]


class WeChatScenario(Scenario):
    platform = "wechat"
    history = False

    def simulator(self) -> WeChatSimulator:
        return WeChatSimulator()

    def credentials(self) -> dict[str, Any]:
        return self.sim.trial_credentials()

    async def handshake(self) -> None:
        url = self.tb.webhook_url(self.integration)
        query = self.sim.server_check()
        answer = await self.tb.api.get(url, params=query)
        refused = await self.tb.api.get(url, params=self.sim.server_check(token="wrongtoken"))
        echoed = (answer.status_code, answer.text) == (200, query["echostr"])
        self.tally.handshake = "ok" if echoed and refused.status_code == 401 else "FAILED"
        if self.tally.handshake == "FAILED":
            self.problem(f"the server check answered {answer.status_code} {answer.text[:60]!r}, "
                         f"a wrong signature {refused.status_code}")
        self.note("the GET server check echoed echostr (a wrong signature: 401)")

    async def live(self) -> None:
        sim = self.sim
        await self.deliver(sim.subscribe(FOLLOWERS[0]))
        for i in range(6):
            openid, mode = FOLLOWERS[i % len(FOLLOWERS)], MODES[i % len(MODES)]
            delivery = sim.user_message(openid, f"live question {i}", mode=mode)
            await self.deliver(delivery, again=delivery)
        for i, openid in enumerate(FOLLOWERS):
            await self.event(f"evt-wc-{i}", "message.created", {"id": f"app-wc-{i}", "text": f"account answer {i}"},
                             externalChatId=openid)
        await self.tb.settle()
        await self.refused("evt-wc-edit", "message.updated", {"id": "app-wc-0", "text": "edited"})
        await self.refused("evt-wc-del", "message.deleted", {"id": "app-wc-0"})
        self.note("6 messages (safe, compatible, plain) delivered twice, 2 customer-service replies, "
                  "edit and delete refused")

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for m in self.sim.truth():
            # A reply has no id at WeChat: syncd knows it by the app's id for it ("answer <i>").
            key = f"app:app-wc-{m.text.rsplit(' ', 1)[-1]}" if m.from_account else m.key
            out.setdefault(m.openid, {})[key] = Truth(m.text)
        return out

    def exported_at_platform(self) -> int:
        return len(self.sim.sent_bodies)


SCENARIO = WeChatScenario

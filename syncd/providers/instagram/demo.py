"""Instagram's part of the demo: the Page scenario of the Meta family on an Instagram account."""

from __future__ import annotations

from syncd.providers.instagram.sim import InstagramSimulator
from syncd.providers.meta.demo_pages import PageScenario


class InstagramScenario(PageScenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 2
    platform = "instagram"
    first_id = 17_000_000

    def simulator(self) -> InstagramSimulator:
        return InstagramSimulator(username="sim.bakery")

    def _name(self, i: int) -> str:
        return super()._name(i).lower().replace(" ", ".")


SCENARIO = InstagramScenario

"""Messenger's part of the demo: the Page scenario of the Meta family on a Messenger inbox."""

from __future__ import annotations

from syncd.providers.messenger.sim import MessengerSimulator
from syncd.providers.meta.demo_pages import PageScenario


class MessengerScenario(PageScenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 2
    platform = "messenger"

    def simulator(self) -> MessengerSimulator:
        return MessengerSimulator(page_name="Sim Bakery")


SCENARIO = MessengerScenario

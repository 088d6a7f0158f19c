"""Gmail ``users.watch``: created by ``maintain`` when the integration names a Pub/Sub topic,
renewed when it is less than a day from expiry, and never called without a topic."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import TransientError
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping, mappings_dir
from syncd.providers.gmail.connector import (
    WATCH_CHECK_EVERY_S,
    GmailConnector,
    GmailCredentials,
)
from syncd.providers.gmail.sim import SEVEN_DAYS_MS, GmailSimulator
from syncd.testbed import Testbed

FIXTURES = json.loads((Path(__file__).parents[1] / "fixtures" / "gmail.json").read_text())
TOPIC = FIXTURES["watch"]["payload"]["request"]["topicName"]  # "projects/myproject/topics/mytopic"
ME = "me@example.com"
DAY = 24 * 3600


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def _no_sleep(_: float) -> None:
    pass


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> GmailSimulator:
    return GmailSimulator(ME, token="tok", clock=clock)


@pytest.fixture
async def make(sim, clock):
    made: list[GmailConnector] = []

    def build(settings: dict) -> GmailConnector:
        credentials = GmailCredentials.model_validate({"accessToken": "tok", "emailAddress": ME})
        policy = RetryPolicy(max_retries=2, sleep=_no_sleep)
        http = GmailConnector.make_http("http://gmail.sim", credentials, policy=policy, timeout_s=5,
                                        transport=httpx.ASGITransport(sim))
        ctx = ConnectorContext(http=http, mapping=load_mapping(mappings_dir() / "gmail.yaml"),
                               webhook_url="https://syncd.example/webhooks/gmail/int-1", clock=clock)
        made.append(GmailConnector(credentials, settings, ctx))
        return made[-1]

    yield build
    for connector in made:
        await connector.close()


def test_maintenance_runs_several_times_a_day():
    assert GmailConnector.maintain_every_s == WATCH_CHECK_EVERY_S and WATCH_CHECK_EVERY_S < DAY


async def test_a_topic_starts_a_watch_and_its_answer_becomes_the_state(make, sim, clock):
    state = await make({"pubsubTopic": TOPIC}).maintain(None)
    assert sim.watches == [{"address": ME, "topicName": TOPIC, "expiration": int(clock.now * 1000) + SEVEN_DAYS_MS}]
    assert state == {"historyId": str(sim.mailboxes[ME].history_id), "expiration": sim.watches[0]["expiration"],
                     "topicName": TOPIC}


async def test_a_watch_far_from_expiry_is_left_alone(make, sim, clock):
    gmail = make({"pubsubTopic": TOPIC})
    state = await gmail.maintain(None)
    clock.now += 5 * DAY  # two days left
    assert await gmail.maintain(state) == state
    assert len(sim.watches) == 1


async def test_a_watch_less_than_a_day_from_expiry_is_renewed(make, sim, clock):
    gmail = make({"pubsubTopic": TOPIC})
    first = await gmail.maintain(None)
    clock.now += 6 * DAY + 1  # a little under a day left
    renewed = await gmail.maintain(first)
    assert len(sim.watches) == 2 and renewed["expiration"] == int(clock.now * 1000) + SEVEN_DAYS_MS
    assert renewed["expiration"] > first["expiration"]


async def test_a_changed_topic_is_watched_at_once(make, sim):
    state = await make({"pubsubTopic": TOPIC}).maintain(None)
    moved = await make({"pubsubTopic": "projects/myproject/topics/other"}).maintain(state)
    assert [w["topicName"] for w in sim.watches] == [TOPIC, "projects/myproject/topics/other"]
    assert moved["topicName"] == "projects/myproject/topics/other"


async def test_without_a_topic_nothing_is_called_and_there_is_no_state(make, sim):
    assert await make({}).maintain(None) is None
    assert await make({"pubsubTopic": ""}).maintain({"historyId": "1", "expiration": 1}) is None
    assert sim.watches == [] and sim.faults.calls["watch"] == 0


async def test_a_refused_watch_is_an_error_for_the_engine_to_retry(make, sim):
    sim.faults.fail_next("watch", "server_error", times=5)
    with pytest.raises(TransientError, match="503"):
        await make({"pubsubTopic": TOPIC}).maintain(None)
    assert sim.watches == []


async def test_an_integration_with_a_topic_is_watched_when_created():
    tb = await Testbed.start()
    try:
        integration = await tb.create_gmail(settings={"pubsubTopic": TOPIC})
        for _ in range(200):
            status = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
            top = next((s for s in status if s.get("chatId") is None), {})
            if top.get("maintenance"):
                break
            await asyncio.sleep(0.01)
        assert [w["topicName"] for w in tb.gmail.watches] == [TOPIC]
        assert top["maintenance"]["topicName"] == TOPIC
        assert top["maintenance"]["expiration"] == tb.gmail.watches[0]["expiration"]
    finally:
        await tb.stop()


async def test_unsubscribe_stops_the_watch(make, sim):
    gmail = make({"pubsubTopic": TOPIC})
    state = await gmail.maintain(None)
    await gmail.unsubscribe(state)
    assert sim.watches == [] and sim.stopped == [ME]


async def test_unsubscribe_without_a_topic_calls_nothing(make, sim):
    await make({}).unsubscribe(None)
    assert sim.stopped == [] and sim.faults.calls["stop"] == 0

"""What one platform's part of the demo is made of, and the check every platform shares.

A scenario owns its simulator and knows its platform's ways: how to seed history, which
credentials make the integration, which handshake the platform runs, what live traffic it can
produce (signed deliveries, redeliveries, edits, deletes, echoes) and how to read the
simulator's truth. The runner drives every scenario through the same steps and the same check,
so adding a platform is one small module (``syncd/providers/<p>/demo.py``), found by name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from syncd import metrics

if TYPE_CHECKING:
    from syncd.testbed import Testbed

CUSTOMER = "cust-1"
COLUMNS = ("imported", "exported", "updated", "deleted", "duplicates")
_EVENT_COLUMN = {"message.created": "exported", "message.updated": "updated", "message.deleted": "deleted"}


@dataclass(frozen=True)
class Truth:
    """One message as the platform holds it. ``text`` is compared with the stored ``field``
    (``html`` for an html body) unless the message is gone, which must be a tombstone; so is
    ``state`` where the platform reports delivery states."""

    text: str | None
    deleted: bool = False
    field: str = "text"
    #: The deliveryState the platform reported for a sent message (None: not compared).
    state: str | None = None


@dataclass
class Tally:
    """Per column: what the demo did (``expected``) and what syncd stored (``got``)."""

    expected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    got: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    problems: list[str] = field(default_factory=list)
    #: "ok", "FAILED", or "-" for a platform without a handshake.
    handshake: str = "-"
    #: What the live traffic did, one phrase each, for the progress line.
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.expected == self.got and self.handshake != "FAILED"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _duplicates_so_far(platform: str) -> float:
    return metrics.WEBHOOKS.labels(platform, "duplicate")._value.get()


class Scenario:
    """One platform in the demo. Subclasses set ``platform`` and fill in the steps."""

    platform: ClassVar[str]
    #: False for platforms that keep no history a connector could import.
    history: ClassVar[bool] = True
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share: ClassVar[int] = 0

    def __init__(self, rng: random.Random, messages: int):
        """``messages``: how many history messages to seed (platforms with history)."""
        self.rng = rng
        self.messages = messages
        self.tally = Tally()
        self.tb: Testbed
        #: Set by the runner once created through the API (empty if that failed).
        self.integration: dict[str, Any] = {}
        self.sim: Any = self.simulator()
        # The metric is process-wide: count only what this run added.
        self._duplicates_before = _duplicates_so_far(self.platform)

    # -- the steps the runner calls, in order ---------------------------------------------------
    def simulator(self) -> Any | None:
        """The simulator to hand ``Testbed.start`` (None: one the testbed builds itself)."""
        return None

    def bind(self, tb: Testbed) -> None:
        self.tb = tb

    def seed(self) -> str:
        """Put history in the simulator; sets the expected import count; says what it made."""
        return "no history: messages are seen as they arrive"

    def credentials(self) -> dict[str, Any] | None:
        """The credentials that make this platform's integration from the simulator (None: the
        testbed's ``create_<platform>`` makes it)."""
        return None

    async def create(self, *, wait: bool) -> dict[str, Any]:
        credentials = self.credentials()
        if credentials is not None:
            return await self.tb.create(self.platform, credentials, wait=wait)
        return await getattr(self.tb, f"create_{self.platform}")(wait=wait)

    async def handshake(self) -> None:
        """Run the platform's verification handshake, if it has one."""

    async def live(self) -> None:
        """Play the platform's live traffic and the app's events."""

    def truth(self) -> dict[str, dict[str, Truth]]:
        """externalChatId -> externalMessageId -> the message as the platform holds it."""
        raise NotImplementedError

    def exported_at_platform(self) -> int:
        """How many app messages the simulator received."""
        raise NotImplementedError

    # -- helpers for the live traffic -------------------------------------------------------------
    def problem(self, text: str) -> None:
        self.tally.problems.append(text)

    def note(self, text: str) -> None:
        self.tally.notes.append(text)

    async def deliver(self, delivery: Any, *, again: Any | None = None, status: int = 200) -> None:
        """Deliver as the platform does; ``again`` (a redelivery) is sent right after and must
        be suppressed as a duplicate."""
        for attempt in (delivery, again) if again is not None else (delivery,):
            response = await self.tb.deliver(self.integration, attempt)
            if response.status_code != status:
                self.problem(f"a delivery answered {response.status_code}: {response.text[:160]}")
        if again is not None:
            self.tally.expected["duplicates"] += 1

    async def event(self, event_id: str, type_: str, message: dict[str, Any], **where: Any) -> None:
        """An app change event through ``POST /events``, counted where the platform applies it."""
        response = await self.tb.post_event({"id": event_id, "type": type_, "customerId": CUSTOMER,
                                             "platform": self.platform, **where, "message": message})
        if response.status_code != 202:
            self.problem(f"event {event_id} answered {response.status_code}: {response.text[:160]}")
        self.tally.expected[_EVENT_COLUMN[type_]] += 1

    async def refused(self, event_id: str, type_: str, message: dict[str, Any]) -> None:
        """An app event the platform cannot carry out (no edit or delete there): refused at once."""
        response = await self.tb.post_event({"id": event_id, "type": type_, "customerId": CUSTOMER,
                                             "platform": self.platform, "message": message})
        code = response.json().get("error", {}).get("code") if response.status_code == 422 else None
        if code != "unsupported":
            self.problem(f"{type_} should be refused as unsupported, answered {response.status_code}")

    async def challenge(self, query: dict[str, str], wrong: dict[str, str]) -> None:
        """Meta's ``hub.challenge`` GET: the challenge echoed as text, a wrong verify token 403."""
        url = self.tb.webhook_url(self.integration)
        answer = await self.tb.api.get(url, params=query)
        refused = await self.tb.api.get(url, params=wrong)
        echoed = (answer.status_code, answer.text) == (200, query["hub.challenge"]) \
            and answer.headers.get("content-type", "").startswith("text/plain")
        self.tally.handshake = "ok" if echoed and refused.status_code == 403 else "FAILED"
        if self.tally.handshake == "FAILED":
            self.problem(f"hub.challenge answered {answer.status_code} {answer.text[:60]!r}, "
                         f"a wrong verify token {refused.status_code}")
        self.note("hub.challenge echoed (wrong verify token: 403)")

    # -- the check ----------------------------------------------------------------------------------
    async def check(self) -> None:
        """Compare every stored chat with the simulator's truth (no missing, no extra, texts
        equal, tombstones where deleted) and count what syncd stored."""
        tb, truth = self.tb, self.truth()
        chats = await tb.chats(self.integration)
        for chat_id, expected in truth.items():
            chat = chats.get(chat_id)
            if chat is None:
                self.problem(f"chat {chat_id} was not stored")
                continue
            stored = {m["externalMessageId"]: m for m in await tb.messages(chat["id"])}
            for key, want in expected.items():
                self._compare(key, want, stored.get(key))
            extra = set(stored) - set(expected)
            if extra:
                self.problem(f"{len(extra)} stored messages in {chat_id} the platform does not have, "
                             f"e.g. {sorted(extra)[0]}")
        for chat_id in set(chats) - set(truth):
            self.problem(f"chat {chat_id} is stored but the platform does not have it")
        await self._count()

    def _compare(self, key: str, want: Truth, got: dict[str, Any] | None) -> None:
        if got is None:
            self.problem(f"{key} missing")
        elif want.deleted != (got["deletedAt"] is not None):
            self.problem(f"{key}: deleted at the platform is {want.deleted}, stored deletedAt {got['deletedAt']}")
        elif not want.deleted and (got.get(want.field) or "").strip() != (want.text or "").strip():
            self.problem(f"{key}: stored {want.field} {got.get(want.field)!r} != {want.text!r}")
        elif want.state is not None and got.get("deliveryState") != want.state:
            self.problem(f"{key}: stored deliveryState {got.get('deliveryState')!r} != {want.state!r}")

    async def _count(self) -> None:
        got, store = self.tally.got, self.tb.daemon.store
        statuses = (await self.tb.api.get(f"/integrations/{self.integration['id']}/status")).json()["status"]
        got["imported"] = sum(s["counts"]["inserted"] for s in statuses if s.get("chatId"))
        messages = [m for c in await store.list_chats(integration_id=self.integration["id"])
                    for m in (await store.list_messages(c.id, limit=10_000))[0]]
        got["updated"] = sum(1 for m in messages if m.edited_at is not None)
        got["deleted"] = sum(1 for m in messages if m.deleted_at is not None)
        got["duplicates"] = int(_duplicates_so_far(self.platform) - self._duplicates_before)
        got["exported"] = self.exported_at_platform()

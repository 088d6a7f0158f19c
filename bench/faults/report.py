"""Counting what a scenario did to the data, and printing the table.

The truth is the simulators' own state (``SlackSimulator.truth``, ``GmailSimulator.truth``);
what syncd stored is read through its HTTP API (``GET /chats``, ``GET /chats/{id}/messages``),
as the app would read it. Per platform message:

- **lost**: live at the platform, not stored (or an app message that never reached it);
- **duplicated**: one platform message stored, or posted, more than once (an echo kept next
  to the app's own document, an app message sent twice);
- **wrong**: stored, but with other text than the platform's latest, alive where the platform
  deleted it (or the reverse), or a stored message the platform never had.

A message deleted at the platform that syncd never saw is neither: the app has nothing to
remove.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class TruthMessage:
    external_message_id: str
    text: str | None
    deleted: bool
    from_self: bool = False


@dataclass
class Tally:
    """The data counts of one comparison; ``notes`` says which message went wrong how."""

    expected: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> Tally:
        self.expected += other.expected
        self.stored += other.stored
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.wrong += other.wrong
        self.notes += other.notes
        return self


@dataclass
class Row:
    """One line of the table: a scenario over its runs. ``facts`` are the scenario's own
    measurements (a ``max_`` prefix merges by maximum, anything else adds up);
    ``problems`` are its own expectations that did not hold."""

    scenario: str
    runs: int = 0
    tally: Tally = field(default_factory=Tally)
    facts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        t = self.tally
        return t.lost == t.duplicated == t.wrong == 0 and not self.problems

    def fact(self, name: str, value: int) -> None:
        if name.startswith("max_"):
            self.facts[name] = max(self.facts.get(name, value), value)
        else:
            self.facts[name] = self.facts.get(name, 0) + value

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def merge(self, other: Row) -> Row:
        self.runs += other.runs
        self.tally.add(other.tally)
        for name, value in other.facts.items():
            self.fact(name, value)
        self.problems += other.problems
        self.seconds += other.seconds
        return self


def _norm(text: str | None) -> str:
    return (text or "").strip()


def slack_truth(sim: Any, channel: str) -> dict[str, TruthMessage]:
    """A Slack channel's messages (replies included) keyed by syncd's id ``{channel}:{ts}``."""
    return {
        f"{channel}:{m['ts']}": TruthMessage(f"{channel}:{m['ts']}", m["text"], m["deleted"],
                                             m["user"] == sim.bot_user_id)
        for m in sim.truth(channel)
    }


def gmail_truth(sim: Any, thread_id: str) -> dict[str, TruthMessage]:
    """A Gmail thread's messages keyed by Gmail's message id; trash counts as deleted."""
    return {m["id"]: TruthMessage(m["id"], m["text"], m["trashed"], "SENT" in m["labelIds"])
            for m in sim.truth(thread_id)}


def compare(truth: dict[str, TruthMessage], docs: Iterable[dict[str, Any]]) -> Tally:
    """One chat: the platform's messages against the stored documents (API views)."""
    docs = list(docs)
    tally = Tally(expected=len(truth), stored=len(docs))
    by_id: dict[str, list[dict[str, Any]]] = {}
    unsent = []
    for doc in docs:
        ext = doc.get("externalMessageId")
        if ext is None:
            if doc.get("deliveryState") != "failed":  # dead-lettered ones are visible as failed
                unsent.append(doc)
            continue
        by_id.setdefault(ext, []).append(doc)
    platform_texts = {_norm(d.get("text")) for found in by_id.values() for d in found}
    for doc in unsent:
        # An app message that never got the platform's id: its echo stored beside it is a
        # duplicate; if it never reached the platform, the export check counts it lost.
        if _norm(doc.get("text")) in platform_texts:
            tally.duplicated += 1
            tally.notes.append(f"app document {doc.get('appMessageId')!r} stored beside its echo")
        else:
            tally.notes.append(f"app document {doc.get('appMessageId')!r} has no platform id")
    for ext, found in by_id.items():
        if len(found) > 1:
            tally.duplicated += len(found) - 1
            tally.notes.append(f"{ext} stored {len(found)} times")
        if ext not in truth:
            tally.wrong += 1
            tally.notes.append(f"{ext} stored but unknown to the platform")
    for ext, message in truth.items():
        found = by_id.get(ext)
        if not found:
            if not message.deleted:
                tally.lost += 1
                tally.notes.append(f"{ext} lost: {_norm(message.text)!r}")
            continue
        doc = found[0]
        deleted = doc.get("deletedAt") is not None
        if deleted != message.deleted:
            tally.wrong += 1
            tally.notes.append(f"{ext} {'deleted' if deleted else 'alive'} in syncd, "
                               f"{'deleted' if message.deleted else 'alive'} at the platform")
        elif not deleted and _norm(doc.get("text")) != _norm(message.text):
            tally.wrong += 1
            tally.notes.append(f"{ext} text {_norm(doc.get('text'))!r}, platform {_norm(message.text)!r}")
    return tally


def compare_exports(sent_texts: Iterable[str], platform_texts: Iterable[str]) -> Tally:
    """App messages against what the platform shows: each must be there exactly once
    (texts are unique per app message in the scenarios)."""
    posted: dict[str, int] = {}
    for text in platform_texts:
        posted[_norm(text)] = posted.get(_norm(text), 0) + 1
    tally = Tally()
    for text in sent_texts:
        n = posted.get(_norm(text), 0)
        if n == 0:
            tally.lost += 1
            tally.notes.append(f"app message never reached the platform: {text!r}")
        elif n > 1:
            tally.duplicated += n - 1
            tally.notes.append(f"app message posted {n} times: {text!r}")
    return tally


async def stored_messages(api: httpx.AsyncClient, chat_id: str) -> list[dict[str, Any]]:
    """Every stored message of a chat through the API's cursor paging, tombstones included."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        response = await api.get(f"/chats/{chat_id}/messages", params=params)
        response.raise_for_status()
        page = response.json()
        out += page["messages"]
        cursor = page["nextCursor"]
        if not cursor:
            return out


async def stored_chats(api: httpx.AsyncClient, integration_id: str) -> dict[str, dict[str, Any]]:
    response = await api.get("/chats", params={"integrationId": integration_id})
    response.raise_for_status()
    return {c["externalChatId"]: c for c in response.json()["chats"]}


async def tally_chats(api: httpx.AsyncClient, integration_id: str,
                      truths: dict[str, dict[str, TruthMessage]]) -> Tally:
    """Every chat in ``truths`` (external chat id -> its truth) against what syncd stored."""
    chats = await stored_chats(api, integration_id)
    tally = Tally()
    for external_chat_id, truth in truths.items():
        chat = chats.get(external_chat_id)
        docs = await stored_messages(api, chat["id"]) if chat else []
        tally.add(compare(truth, docs))
    return tally


async def tally_slack(api: httpx.AsyncClient, integration_id: str, sim: Any,
                      channels: Iterable[str] | None = None) -> Tally:
    channels = list(channels if channels is not None else sim.channels)
    return await tally_chats(api, integration_id, {c: slack_truth(sim, c) for c in channels})


async def tally_gmail(api: httpx.AsyncClient, integration_id: str, sim: Any) -> Tally:
    box = sim.mailboxes[sim.address.lower()]
    return await tally_chats(api, integration_id, {t: gmail_truth(sim, t) for t in box.threads})


# -- the table ---------------------------------------------------------------------------------
HEADER = ("scenario", "runs", "expected", "stored", "lost", "duplicated", "wrong", "seconds", "facts")


def _facts(row: Row) -> str:
    text = ", ".join(f"{k}={v}" for k, v in row.facts.items())
    if row.problems:
        text += ("; " if text else "") + "PROBLEMS: " + "; ".join(row.problems[:3])
    return text


def table(rows: list[Row]) -> str:
    """The figures as a Markdown table (readable in a terminal and pasteable in a README)."""
    lines = [[r.scenario, str(r.runs), str(r.tally.expected), str(r.tally.stored), str(r.tally.lost),
              str(r.tally.duplicated), str(r.tally.wrong), f"{r.seconds:.1f}", _facts(r)] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(HEADER)]
    numeric = set(range(1, 8))

    def render(cells: list[str] | tuple[str, ...]) -> str:
        out = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([render(HEADER), rule, *(render(line) for line in lines)])

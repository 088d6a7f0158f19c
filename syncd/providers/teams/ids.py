"""Where a Teams chat or message lives in Graph, and the ids syncd gives them.

A chat keeps Graph's id; a channel is ``teams/{teamId}/channels/{channelId}``, Graph's own path.
A chatMessage id is unique only inside its chat or channel, so a message is
``{externalChatId}:{messageId}``, split on its LAST colon (chat ids contain colons, message ids
never do). A change notification's ``resource`` is parsed back into the same ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from syncd.kit.errors import PermanentError


@dataclass(frozen=True)
class Where:
    """Where a chat's messages live in Graph."""

    external_chat_id: str
    path: str
    channel: bool


def locate(external_chat_id: str) -> Where:
    parts = external_chat_id.split("/")
    if len(parts) == 4 and parts[0] == "teams" and parts[2] == "channels" and parts[1] and parts[3]:
        return Where(external_chat_id, f"/teams/{_q(parts[1])}/channels/{_q(parts[3])}", True)
    if not external_chat_id or "/" in external_chat_id:
        raise PermanentError(f"not a Teams chat id: {external_chat_id!r}")
    return Where(external_chat_id, f"/chats/{_q(external_chat_id)}", False)


def channel_id(team_id: str, channel: str) -> str:
    return f"teams/{team_id}/channels/{channel}"


def compose(external_chat_id: str, message_id: str) -> str:
    return f"{external_chat_id}:{message_id}"


def split_message_id(value: str) -> tuple[str | None, str]:
    """``(externalChatId, messageId)`` of a composed id, split on the last colon; a bare Graph
    message id (no colon) gives ``(None, id)``."""
    chat, sep, message_id = value.rpartition(":")
    return (chat, message_id) if sep and chat else (None, value)


def _q(value: str) -> str:
    return quote(value, safe=":@.-_~")

_ODATA_KEY = re.compile(r"(\w+)\('([^']*)'\)")


def parse_resource(resource: str) -> tuple[str, str, str | None] | None:
    """A notification's ``resource`` -> ``(externalChatId, messageId, rootId)``; both Graph's
    forms, ``chats('x')/messages('y')`` and ``chats/x/messages/y``, channel replies included."""
    parts = [p for p in _ODATA_KEY.sub(r"\1/\2", resource).split("/") if p]
    if len(parts) > 2 and parts[0] == "users":
        parts = parts[2:]
    if len(parts) == 4 and (parts[0], parts[2]) == ("chats", "messages"):
        return parts[1], parts[3], None
    if len(parts) >= 6 and (parts[0], parts[2], parts[4]) == ("teams", "channels", "messages"):
        chat = channel_id(parts[1], parts[3])
        if len(parts) == 6:
            return chat, parts[5], None
        if len(parts) == 8 and parts[6] == "replies":
            return chat, parts[7], parts[5]
    return None

"""The app's messages sent to a chat or a channel thread, edited and (soft) deleted."""

from __future__ import annotations

from syncd.kit.errors import PermanentError, RetryableError
from syncd.providers.teams.graph import TeamsBase
from syncd.providers.teams.ids import Where, _q, locate, split_message_id
from syncd.universal import OutgoingMessage, SendResult


class TeamsExport(TeamsBase):
    """Send, edit and delete."""

    @staticmethod
    def _bare(value: str, where: Where) -> str:
        chat, message_id = split_message_id(value)
        if chat is not None and chat != where.external_chat_id:
            raise PermanentError("the message id belongs to another chat")
        return message_id

    def _message_path(self, message: OutgoingMessage, where: Where) -> str:
        if not message.external_message_id:
            raise PermanentError("the message has no Teams id yet")
        message_id = self._bare(message.external_message_id, where)
        root = self._bare(message.external_thread_id, where) if where.channel and message.external_thread_id else None
        if root and root != message_id:
            return f"{where.path}/messages/{_q(root)}/replies/{_q(message_id)}"
        return f"{where.path}/messages/{_q(message_id)}"

    async def send(self, message: OutgoingMessage) -> SendResult:
        where = locate(message.external_chat_id)
        body = self.mapping.outgoing("send", message)
        path = f"{where.path}/messages"
        if where.channel and message.external_thread_id:  # chats have no threads: a plain post
            path += f"/{_q(self._bare(message.external_thread_id, where))}/replies"
        mapped = self._map(await self._call("POST", path, json=body), where)
        if mapped is None:
            raise PermanentError("Graph answered the send without a chat message")
        return SendResult(mapped.external_message_id, mapped.sent_at, mapped.external_thread_id)

    async def edit(self, message: OutgoingMessage) -> SendResult:
        where = locate(message.external_chat_id)
        path = self._message_path(message, where)
        await self._call("PATCH", path, json=self.mapping.outgoing("edit", message))
        try:
            # PATCH answers 204: the message itself says when Graph recorded the edit, so the
            # notification that follows matches it.
            mapped = self._map(await self._call("GET", path), where)
        except (PermanentError, RetryableError):
            mapped = None
        if mapped is None:
            return SendResult(message.external_message_id or "", external_thread_id=message.external_thread_id)
        return SendResult(mapped.external_message_id, mapped.sent_at, mapped.external_thread_id,
                          edited_at=mapped.edited_at)

    async def delete(self, message: OutgoingMessage) -> None:
        where = locate(message.external_chat_id)
        try:
            await self._call("POST", self._message_path(message, where) + "/softDelete")
        except PermanentError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

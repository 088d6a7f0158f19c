"""A send whose answer was lost (the platform posted the message, the answer never came back) is
reconciled before it is retried: the platform shows it once, the store holds it once."""

from __future__ import annotations

from typing import Any

import httpx
from apisupport import chat_messages

from syncd.testbed import Testbed


class DropsTheAnswer(httpx.AsyncBaseTransport):
    """Passes each request to the simulator; the first ``times`` answers of ``path`` are lost."""

    def __init__(self, inner: httpx.AsyncBaseTransport, path: str, times: int = 1):
        self.inner, self.path, self.times = inner, path, times

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.times and request.url.path.endswith(self.path):
            self.times -= 1
            raise httpx.ReadTimeout("timed out reading the answer", request=request)
        return response


async def test_a_gmail_send_whose_answer_was_lost_is_found_by_its_message_id_and_not_sent_again():
    drops: dict[str, Any] = {}

    def transport(name: str, sim: Any) -> httpx.AsyncBaseTransport:
        drops[name] = DropsTheAnswer(httpx.ASGITransport(sim), "/messages/send")
        return drops[name]

    tb = await Testbed.start(transport=transport)
    try:
        thread = tb.gmail.add_incoming(None, "Guilherme Dias <email@domain.com>", "Order #1001", "Where is it?")
        gmail = await tb.create_gmail()
        answer = await tb.post_event({"id": "evt-lost-1", "type": "message.created", "customerId": "cust-1",
                                      "platform": "gmail", "externalChatId": thread,
                                      "message": {"id": "app-msg-1", "text": "It ships today"}})
        assert answer.status_code == 202, answer.text
        await tb.settle()
        assert drops["gmail"].times == 0  # the answer was dropped once
        at_platform = [m for m in tb.gmail.truth(thread) if "It ships today" in str(m)]
        assert len(at_platform) == 1
        stored = [m for m in await chat_messages(tb, gmail, thread) if (m["text"] or "").strip() == "It ships today"]
        assert len(stored) == 1
        assert stored[0]["externalMessageId"] == at_platform[0]["id"]
    finally:
        await tb.stop()

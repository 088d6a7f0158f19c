"""A message whose platform names only the message it answers (no chat id) joins that
message's chat; an answer to a message syncd does not know starts a chat named by it."""

from __future__ import annotations

from syncd.engine.ingest import ingest
from syncd.testbed import Testbed
from syncd.universal import MessageData


async def test_an_answer_joins_the_chat_of_the_message_it_answers_or_one_named_by_it():
    tb = await Testbed.start()
    try:
        integration = await tb.create_slack()
        engine = tb.daemon.engine
        stored = await tb.daemon.store.get_integration(integration["id"])
        await ingest(engine.ctx, stored, [MessageData(external_chat_id="C-room", external_message_id="q-1",
                                                      text="question")], source="webhook")
        answers = [MessageData(external_chat_id="", external_message_id="a-1", external_thread_id="q-1", text="answer"),
                   MessageData(external_chat_id="", external_message_id="a-2", external_thread_id="q-unknown", text="?"),
                   MessageData(external_chat_id="", external_message_id="a-3", text="nowhere")]
        result = await ingest(engine.ctx, stored, answers, source="webhook")
        assert result.skipped == 1
        found = await tb.daemon.store.find_messages(stored.customer_id, stored.platform, ["a-1", "a-2", "a-3"])
        assert found["a-1"].external_chat_id == "C-room" and found["a-2"].external_chat_id == "q-unknown"
        assert "a-3" not in found
    finally:
        await tb.stop()

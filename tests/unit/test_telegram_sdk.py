"""The official ``python-telegram-bot`` ``Bot`` against the Telegram simulator over real HTTP.

If the library rejects an answer of the simulator (its own ``de_json`` parsing of User,
Message, Update and the error envelope), the simulator is wrong.
"""

from __future__ import annotations

import pytest

telegram = pytest.importorskip("telegram")
from telegram import Bot, ReplyParameters
from telegram.error import BadRequest, Conflict, RetryAfter

from syncd.providers.telegram.sim import DEFAULT_TOKEN, TelegramSimulator
from syncd.sim.base import ServerThread

# The library warns about its own RetryAfter internals (v22.2+), not about our use.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture(scope="module")
def served():
    sim = TelegramSimulator()
    sim.seed()
    with ServerThread(sim) as server:
        yield sim, server.url + "/bot"


@pytest.fixture
async def bot(served):
    sim, base_url = served
    sim.faults.reset()
    async with Bot(DEFAULT_TOKEN, base_url=base_url) as bot:  # initialize() calls getMe
        yield bot


async def test_get_me_is_the_bot(bot, served):
    sim, _ = served
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username, me.first_name) == (sim.bot.id, True, "sync_sim_bot", "Sync Bot")


async def test_send_message_answers_a_message_the_library_parses(bot, served):
    sim, _ = served
    group = sim.ids["supergroup"]
    first = await bot.send_message(group, "hello from python-telegram-bot")
    reply = await bot.send_message(group, "a reply", reply_parameters=ReplyParameters(first.message_id))
    assert (first.chat.id, first.chat.type, first.from_user.id) == (group, "supergroup", sim.bot.id)
    assert reply.reply_to_message.message_id == first.message_id
    assert [m["text"] for m in sim.truth(group)[-2:]] == ["hello from python-telegram-bot", "a reply"]


async def test_get_updates_pages_by_offset(bot, served):
    sim, _ = served
    for text in ("one", "two", "three"):
        sim.user_message(sim.ids["group"], sim.ids["alice"], text)
    sim.channel_post(sim.ids["channel"], "post")
    first = await bot.get_updates(limit=2, timeout=0)
    rest = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)
    assert [u.message.text for u in first] == ["one", "two"]
    assert [rest[0].message.text, rest[1].channel_post.text] == ["three", "post"]
    assert rest[1].channel_post.sender_chat.id == sim.ids["channel"]
    assert rest[0].message.from_user.full_name == "Alice Archer"
    await bot.get_updates(offset=rest[-1].update_id + 1, timeout=0)
    assert sim.pending() == []


async def test_errors_and_flood_control_reach_the_library_as_telegram_sends_them(bot, served):
    sim, _ = served
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(-100999, "nobody")
    sim.faults.fail_next("sendMessage", "rate_limit", retry_after_s=11)
    with pytest.raises(RetryAfter) as limited:
        await bot.send_message(sim.ids["group"], "too fast")
    assert "Retry in 11 seconds" in str(limited.value)


async def test_webhook_registration_and_the_409_while_it_is_set(bot, served):
    sim, _ = served
    assert await bot.set_webhook("https://example.org/hook", secret_token="abc_DEF-1",
                                 allowed_updates=["message", "channel_post"])
    info = await bot.get_webhook_info()
    assert (info.url, info.allowed_updates) == ("https://example.org/hook", ("message", "channel_post"))
    assert sim.webhook_of()["secret_token"] == "abc_DEF-1"
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates(timeout=0)
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""

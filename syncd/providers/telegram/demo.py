"""Telegram: a bot keeps no history (it sees updates from the moment it is connected); no
handshake either, the webhook is registered by setWebhook with a secret token syncd checks on
every update. Updates redelivered by Telegram, edited messages and channel posts, and app
messages sent, edited and deleted through the Bot API. Telegram tells bots of no deletion
and sends no echo of a bot's own messages, so neither is played."""

from __future__ import annotations

from syncd.providers.telegram.sim import TelegramSimulator
from syncd.sim.scenario import Scenario, Truth


class TelegramScenario(Scenario):
    #: Its share of the demo's history messages (0: the platform keeps no history).
    share = 0
    platform = "telegram"
    history = False

    def simulator(self) -> TelegramSimulator:
        return TelegramSimulator()

    def seed(self) -> str:
        self.ids = self.sim.seed()
        #: Messages the app deleted: Telegram forgets them, syncd keeps tombstones.
        self.deleted: set[str] = set()
        return super().seed()

    async def handshake(self) -> None:
        await self.tb.settle()  # the maintenance run started at creation calls setWebhook
        webhook = self.sim.webhook_of() or {}
        if webhook.get("url") != self.integration["webhookUrl"] or len(webhook.get("secret_token") or "") < 32:
            self.problem(f"setWebhook registered {webhook.get('url')!r} with a secret of "
                         f"{len(webhook.get('secret_token') or '')} characters")
        self.note("no handshake: setWebhook registered the URL with a generated secret token")

    async def live(self) -> None:
        sim, ids, tb = self.sim, self.ids, self.tb
        chats = [ids["group"], ids["supergroup"], ids["dm_alice"]]
        people = {ids["group"]: [ids["alice"], ids["bob"]], ids["supergroup"]: [ids["alice"], ids["bob"]],
                  ids["dm_alice"]: [ids["alice"]]}
        for i in range(8):
            chat = chats[i % len(chats)]
            delivery = sim.user_message(chat, self.rng.choice(people[chat]), f"live message {i}")
            await self.deliver(delivery, again=delivery)
        for i in range(2):
            delivery = sim.channel_post(ids["channel"], f"announcement {i}")
            await self.deliver(delivery, again=delivery)
        await self.deliver(sim.edit_user_message(ids["group"], 1, "live message 0, edited"))
        await self.deliver(sim.edit_user_message(ids["supergroup"], 1, "live message 1, edited"))
        await self.deliver(sim.edit_channel_post(ids["channel"], 1, "announcement 0, edited"))
        self.tally.expected["updated"] += 3
        self.note("10 updates delivered twice (2 channel posts), 3 edits")

        for i, chat in enumerate([ids["supergroup"], ids["supergroup"], ids["group"]]):
            await self.event(f"evt-tg-{i}", "message.created", {"id": f"app-tg-{i}", "text": f"bot answer {i}"},
                             externalChatId=str(chat))
        await tb.settle()
        # Nothing is written in that chat after the delete: the simulator (unlike Telegram)
        # would give the next message the deleted newest message's id again.
        bots = self._bot_messages()
        await self.event("evt-tg-edit", "message.updated", {"id": "app-tg-0", "text": "bot answer, corrected"})
        await self.event("evt-tg-del", "message.deleted", {"id": "app-tg-1"})
        await tb.settle()
        self.deleted = bots - self._bot_messages()
        self.note("3 app messages, 1 app edit, 1 app delete")

    def _bot_messages(self) -> set[str]:
        bot = self.sim.bot.id
        return {f"{chat}:{mid}" for chat, box in self.sim.messages.items() for mid, m in box.items()
                if m.get("_bot") == bot}

    def truth(self) -> dict[str, dict[str, Truth]]:
        out: dict[str, dict[str, Truth]] = {}
        for chat_id, box in self.sim.messages.items():
            for message_id, record in box.items():
                out.setdefault(str(chat_id), {})[f"{chat_id}:{message_id}"] = Truth(record.get("text"))
        for key in self.deleted:
            # A live message under the same id is what the platform says now: it wins.
            out.setdefault(key.rpartition(":")[0], {}).setdefault(key, Truth(None, deleted=True))
        return out

    def exported_at_platform(self) -> int:
        return len(self._bot_messages() | self.deleted)


SCENARIO = TelegramScenario

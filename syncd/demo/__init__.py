"""``syncd demo``: the whole two-way sync against the built-in simulators, in memory.

For every platform that ships a scenario (``syncd/providers/<p>/demo.py``: Slack, Gmail,
Microsoft Teams, WhatsApp, Messenger, Instagram, Telegram, Viber, LINE, WeChat, and a mailbox
over IMAP and SMTP served by a built-in mail server) it seeds the simulator, creates the integration through the HTTP API with
the platform's real credential shape, imports with a progress line where the platform keeps
history, runs the platform's handshake, plays live traffic both ways (signed deliveries each
redelivered, edits, deletes, app events exported, echoes merged) and checks every stored chat
against the simulator's own state, printing one table row per platform. The exit code is 1 if
anything disagrees. One small scenario per platform lives in a module of this package.
"""

from syncd.demo.runner import run_demo

__all__ = ["run_demo"]

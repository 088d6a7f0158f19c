"""The indexes every collection needs (docs/architecture.md §2): created by ``Store.ensure_indexes``."""

from __future__ import annotations

from typing import Any

_STRING = {"$type": "string"}
#: How long after its expiry a lease document is removed by the TTL monitor.
LEASE_GRACE_S = 3600
#: (collection, name, keys ("-" = descending), options): the unique keys of docs/architecture.md §2, then
#: the shapes the queries below use, so a real server never scans a collection.
INDEXES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("messages", "message_key", "customerId platform externalMessageId",
     {"unique": True, "partialFilterExpression": {"externalMessageId": _STRING}}),
    ("chats", "chat_key", "customerId platform externalChatId", {"unique": True}),
    ("user_platforms", "user_key", "customerId platform externalUserId", {"unique": True}),
    ("sync_status", "sync_key", "integrationId chatId", {"unique": True}),
    ("inbox", "delivery_key", "integrationId deliveryId", {"unique": True}),
    ("outbox", "idempotency_key", "customerId idempotencyKey", {"unique": True}),
    ("messages", "chat_timeline", "chatId -sentAt -_id", {}),
    ("messages", "app_message", "customerId platform appMessageId",
     {"partialFilterExpression": {"appMessageId": _STRING}}),
    ("chats", "chat_integration", "integrationId", {}),
    # Only messages whose callback is owed carry the mark: the sweep reads a tiny index.
    ("messages", "callback_owed", "callbackPending updatedAt",
     {"partialFilterExpression": {"callbackPending": {"$exists": True}}}),
    ("integrations", "integration_owner", "customerId platform", {}),
    # The claims sort due items by these keys: with the tie-breaker in the index a claim reads
    # the first items in order instead of sorting every due item in memory.
    ("inbox", "inbox_due_order", "status nextAttemptAt receivedAt", {}),
    ("outbox", "outbox_due_order", "status nextAttemptAt createdAt", {}),
    ("outbox", "outbox_lease", "status leaseUntil", {}),
    ("leases", "lease_owner", "owner", {}),
    # A lease past its expiry is free either way; MongoDB removes it an hour later (leeway for
    # replicas' clocks), so used connect states and one-off turns do not pile up for ever.
    ("leases", "lease_expiry", "expiresAt", {"expireAfterSeconds": LEASE_GRACE_S}),
]


#: Indexes an earlier version created that one of :data:`INDEXES` replaces: dropped at start.
RETIRED_INDEXES: list[tuple[str, str]] = [("inbox", "inbox_due"), ("outbox", "outbox_due")]

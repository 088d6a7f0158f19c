"""The inbox's acknowledgement builds its stored item without pydantic's generic pass: the
item must be the one ``model_construct`` builds, field for field and in the same order."""

from __future__ import annotations

from datetime import UTC, datetime

from syncd.engine.inbox import _pending_item
from syncd.models import InboxItem


def test_a_pending_item_is_the_item_model_construct_builds():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    values = dict(id="a" * 32, integration_id="int-1", platform="slack", delivery_id="Ev01", received_at=now,
                  body='{"ok":true}', headers={"content-type": "application/json"}, query={"q": "1"},
                  status="pending", attempts=0, next_attempt_at=now, lease_until=None, error=None)
    assert list(values) == list(InboxItem.model_fields)  # every field given, in the model's order
    built, expected = _pending_item(**values), InboxItem.model_construct(**values)
    assert built == expected
    assert built.model_fields_set == expected.model_fields_set
    assert list(built.doc().items()) == list(expected.doc().items())
    assert InboxItem.model_validate(built.doc()) == built

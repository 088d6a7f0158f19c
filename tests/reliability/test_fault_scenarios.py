"""The fault suite of ``python -m bench.faults``, every scenario run small: nothing is lost,
duplicated or left wrong, and each scenario's own promise holds.

The figures at full size are in the README ("Reliability"); ``bench/faults/`` explains each
scenario.
"""

from __future__ import annotations

from bench.faults import (
    callbacks,
    crash,
    durability,
    echoes,
    poison,
    replicas,
    shutdown,
    storm,
    webhooks,
)
from bench.faults.report import Row
from syncd.config import Settings


def assert_clean(row: Row) -> None:
    t = row.tally
    assert (t.lost, t.duplicated, t.wrong) == (0, 0, 0), t.notes[:10]
    assert t.expected > 0 and t.stored >= t.expected - t.lost
    assert row.problems == []


async def test_an_import_killed_at_any_cut_point_resumes_on_a_fresh_engine_refetching_one_page_at_most() -> None:
    row = await crash.run(3)  # one crash mid-page, one before a page is stored, one before its checkpoint

    assert_clean(row)
    assert row.runs == 3
    assert row.facts["max_pages_refetched"] <= 1


async def test_a_storm_of_provider_failures_loses_and_duplicates_nothing_and_dead_letters_show_their_error() -> None:
    row = await storm.run(24)

    assert_clean(row)
    assert row.facts["max_fault_percent"] >= 20  # the storm really blew
    assert row.facts["dead_letters_visible"] == 2
    assert row.facts["max_outbox_attempts"] <= Settings().outbox_max_attempts


async def test_webhooks_repeated_shuffled_and_racing_polls_end_in_the_platforms_state() -> None:
    row = await webhooks.run(60)

    assert_clean(row)
    assert row.facts["deliveries"] > 60  # repeats delivered
    assert row.facts["edit_before_create"] > 0 and row.facts["delete_before_edit"] > 0


async def test_echoes_before_during_and_after_the_send_reply_leave_one_message_each() -> None:
    row = await echoes.run(30)

    assert_clean(row)
    assert all(row.facts[f"echo_{mode}"] > 0 for mode in echoes.MODES)
    assert row.facts["callbacks_about_own_messages"] == 0


async def test_events_and_webhooks_in_hand_when_a_replica_dies_are_handled_exactly_once_after_restart() -> None:
    row = await durability.run(6)

    assert_clean(row)
    assert row.runs == len(durability.CUTS)
    assert row.facts["items_left_by_crashes"] > 0


async def test_two_replicas_import_poll_and_send_once_and_take_over_a_dead_ones_work() -> None:
    row = await replicas.run(8)

    assert_clean(row)
    assert row.facts["poll_history_calls"] == replicas.POLL_ROUNDS * 4  # one poll per round, four chats
    assert row.facts["scheduled_poll_history_calls"] == replicas.POLL_ROUNDS * 4


async def test_poison_deliveries_are_kept_with_their_error_retried_and_never_block_the_rest() -> None:
    row = await poison.run(15)
    poisoned = 3  # one before every fifth delivery

    assert_clean(row)
    assert row.facts["poison_waiting_behind_healthy"] == poisoned
    assert row.facts["poison_in_status"] == poisoned
    assert row.facts["syncd_inbox_failed"] == poisoned
    assert row.facts["refused_events_dead"] == 2


async def test_sigterm_during_an_import_checkpoints_releases_the_lease_and_exits_within_the_grace_period() -> None:
    row = await shutdown.run(2)  # a slow page and a hung page in process, then a real process

    assert_clean(row)
    assert row.runs == 3
    assert row.facts["pages_checkpointed"] > 0


async def test_a_crash_between_a_pages_write_and_its_callbacks_loses_and_doubles_no_callback() -> None:
    row = await callbacks.run(2)  # before the first page's callbacks, then the second's

    assert_clean(row)
    assert row.facts["owed_at_crash"] > 0  # the crash really left callbacks unqueued

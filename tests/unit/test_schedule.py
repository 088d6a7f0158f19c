"""The daemon's interval jobs: due times, late runs once, no overlap, paused start, removal."""

from __future__ import annotations

import asyncio
import time

from syncd.engine.schedule import Schedule


async def test_a_job_runs_when_due_and_then_on_its_interval():
    runs: list[float] = []

    async def tick(label: str) -> None:
        runs.append(time.time())

    schedule = Schedule()
    schedule.start()
    job = schedule.add_job(tick, id="tick", every_s=0.05, args=["x"], first_at=time.time() + 0.02)
    await asyncio.sleep(0.2)
    schedule.shutdown()
    assert 3 <= len(runs) <= 5
    assert job.last_due is not None and runs[-1] >= job.last_due


async def test_a_late_job_runs_once_and_keeps_its_beat():
    runs: list[float] = []

    async def tick() -> None:
        runs.append(time.time())

    schedule = Schedule()
    schedule.start()
    # Ten intervals overdue: one run now, not ten; the next one interval on from its beat.
    start = time.time()
    job = schedule.add_job(tick, id="late", every_s=1.0, first_at=start - 10.0)
    await asyncio.sleep(0.05)
    schedule.shutdown()
    assert len(runs) == 1
    assert start < job.due <= start + 1.0


async def test_a_run_still_going_makes_the_next_skip():
    running, started = asyncio.Event(), []

    async def slow() -> None:
        started.append(time.time())
        await running.wait()

    schedule = Schedule()
    schedule.start()
    schedule.add_job(slow, id="slow", every_s=0.02)
    await asyncio.sleep(0.15)
    assert len(started) == 1
    running.set()
    await asyncio.sleep(0.05)
    schedule.shutdown()
    assert len(started) >= 2


async def test_a_paused_schedule_runs_nothing_until_resumed_and_removed_jobs_never():
    runs: list[str] = []

    async def tick(name: str) -> None:
        runs.append(name)

    schedule = Schedule()
    schedule.start(paused=True)
    schedule.add_job(tick, id="a", every_s=10, args=["a"])
    schedule.add_job(tick, id="b", every_s=10, args=["b"])
    await asyncio.sleep(0.02)
    assert runs == []
    schedule.get_job("b").remove()  # type: ignore[union-attr]
    schedule.resume()
    await asyncio.sleep(0.02)
    schedule.shutdown()
    assert runs == ["a"] and [j.id for j in schedule.get_jobs()] == ["a"]


async def test_a_failing_run_leaves_the_job_scheduled():
    runs: list[int] = []

    async def fails() -> None:
        runs.append(1)
        raise RuntimeError("boom")

    schedule = Schedule()
    schedule.start()
    schedule.add_job(fails, id="fails", every_s=0.03)
    await asyncio.sleep(0.1)
    schedule.shutdown()
    assert len(runs) >= 2


async def test_jobs_share_one_timer_and_run_in_due_order_an_earlier_one_added_later_included():
    runs: list[str] = []

    async def tick(name: str) -> None:
        runs.append(name)

    schedule = Schedule()
    schedule.start()
    now = time.time()
    for n in range(50):
        schedule.add_job(tick, id=f"late-{n}", every_s=60, args=[f"late-{n}"], first_at=now + 0.08)
    schedule.add_job(tick, id="early", every_s=60, args=["early"], first_at=now + 0.02)
    schedule.add_job(tick, id="gone", every_s=60, args=["gone"], first_at=now + 0.01)
    schedule.remove("gone")
    await asyncio.sleep(0.05)
    assert runs == ["early"]
    await asyncio.sleep(0.1)
    assert len(runs) == 51 and "gone" not in runs
    # Each job waits in the heap once, for its next run; the removed one is gone from it.
    assert len(schedule._heap) == 51 and all(due > now + 59 for due, _, _ in schedule._heap)
    schedule.shutdown()

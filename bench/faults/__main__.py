"""``python -m bench.faults [--quick] [--scenario N ...] [--seed S]``: run the fault scenarios
and print the table (scenario, runs, messages expected, stored, lost, duplicated, wrong final
state, seconds, the scenario's own facts). Exits 1 when any row is not 0 / 0 / 0 or a
scenario's own expectation failed.

``--quick`` runs every scenario once at a smaller size (under four minutes on 2 cores); the
full run repeats each with more seeds and larger sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from types import ModuleType

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
from bench.faults.harness import quiet
from bench.faults.report import Row, table


@dataclass(frozen=True)
class Plan:
    module: ModuleType
    quick: int  # size of the one quick run
    full: int  # size of each full run
    repeats: int  # full runs, each with its own seed


PLANS: dict[int, Plan] = {
    1: Plan(crash, quick=9, full=20, repeats=1),  # size = cut points, one crash each
    2: Plan(storm, quick=60, full=120, repeats=3),
    3: Plan(webhooks, quick=150, full=300, repeats=3),
    4: Plan(echoes, quick=200, full=200, repeats=3),
    5: Plan(durability, quick=20, full=40, repeats=2),  # six cut points per run
    6: Plan(replicas, quick=20, full=60, repeats=3),
    7: Plan(poison, quick=50, full=100, repeats=2),
    8: Plan(shutdown, quick=2, full=4, repeats=2),  # SIGTERMs in process, plus one to a process
    9: Plan(callbacks, quick=4, full=8, repeats=2),  # one crash each, before a page's callbacks
}


async def run_plan(number: int, quick: bool, seed: int) -> Row:
    plan = PLANS[number]
    row = Row(plan.module.NAME)
    for repeat in range(1 if quick else plan.repeats):
        row.merge(await plan.module.run(plan.quick if quick else plan.full, seed + repeat))
    return row


async def main(numbers: list[int], quick: bool, seed: int) -> list[Row]:
    rows = []
    for number in numbers:
        started = time.perf_counter()
        print(f"scenario {PLANS[number].module.NAME} ...", file=sys.stderr, flush=True)
        row = await run_plan(number, quick, seed)
        rows.append(row)
        verdict = "ok" if row.ok else "FAILED"
        print(f"  {verdict} in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one smaller run of each scenario (under 4 minutes)")
    p.add_argument("--scenario", type=int, action="append", choices=sorted(PLANS), metavar="N",
                   help="run only scenario N (repeatable); default: all")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    return p


def cli(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet()
    numbers = sorted(set(args.scenario or PLANS))
    started = time.perf_counter()
    rows = asyncio.run(main(numbers, args.quick, args.seed))
    print(table(rows))
    print(f"\n{'quick' if args.quick else 'full'} run, seed {args.seed}, {time.perf_counter() - started:.0f} s")
    failed = [r for r in rows if not r.ok]
    for row in failed:
        print(f"\n{row.scenario}:", *row.problems[:10], *row.tally.notes[:20], sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli())

"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, one JSON line each.

Every line is ``{"name", "value", "unit", "baseline", "ratio", "target", "meets_target"}``
(plus ``details``). A missed target is a result, not a failure: the exit status is non-zero
only when a benchmark cannot run. ``--quick`` uses small sizes (a CI smoke run, a few
minutes); the default sizes are the ones ``bench/README.md`` reports.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import platform
import sys
import time
import traceback

from bench.common import DB_NOTE, Record
from syncd.logs import configure_logging

#: Module and what it measures, in the order they run.
BENCHMARKS = {
    "pipeline": "per platform: signed deliveries processed to stored messages per second vs a bare endpoint",
    "ingest": "webhook requests accepted per second vs a bare JSON endpoint",
    "import_limits": "per platform with history: the initial import against its documented rate limit",
    "import_rate": "history import messages per second vs the platform's rate limit",
    "mapping_cost": "mapping + validation vs orjson.loads of the same bytes",
    "latency": "webhook-to-stored latency at 500 events/s, open loop",
    "roundtrips": "MongoDB round-trips per imported page and per webhook event",
    "scale": "resident memory with 1,000 idle integrations and during a 50-chat import",
    "cost_growth": "CPU and round-trips per webhook event from 1 to 10,000 integrations and 10^3 to 10^6 messages",
    "replica": "one daemon with 10,000 integrations of mixed platforms: memory, start, poll lateness and gaps",
    "callbacks": "app callbacks per second to an app answering in 20 ms, concurrent vs one at a time",
}


def _stack() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name, key in (("uvloop", "loop"), ("httptools", "http_parser")):
        try:
            module = importlib.import_module(name)
            out[key] = f"{name} {getattr(module, '__version__', '')}".strip()
        except ImportError:
            out[key] = "asyncio" if key == "loop" else "h11"
    return out


async def _run(name: str, size_name: str) -> list[Record]:
    module = importlib.import_module(f"bench.{name}")
    result = await module.run(getattr(module, size_name))
    return result if isinstance(result, list) else [result]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, a few minutes)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the unit test's sizes
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    args = parser.parse_args(argv)
    size = "TINY" if args.tiny else "QUICK" if args.quick else "FULL"
    # Some benchmarks run syncd in this process: its logs go to stderr, stdout is JSON lines.
    configure_logging("WARNING", "json")
    stack = _stack()
    print(f"# bench {size.lower()} sizes; {', '.join(f'{k} {v}' for k, v in stack.items())}; {DB_NOTE}",
          file=sys.stderr, flush=True)
    failed = []
    started = time.monotonic()
    for name in args.only or BENCHMARKS:
        began = time.monotonic()
        try:
            records = asyncio.run(_run(name, size))
        except Exception:
            failed.append(name)
            print(f"# {name} could not run:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            continue
        for record in records:
            record.details.setdefault("stack", stack)
            record.details.setdefault("store", "in-memory double; database cost counted in round-trips")
            print(record.line(), flush=True)
        print(f"# {name}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    print(f"# total {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

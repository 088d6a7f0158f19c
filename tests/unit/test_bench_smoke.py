"""Every benchmark of ``python -m bench`` still runs, at tiny sizes, and reports a well-formed
record. What the figures are is for ``bench/README.md``; no timing is asserted here."""

from __future__ import annotations

import importlib
import json
import math

import pytest

from bench.__main__ import BENCHMARKS
from bench.common import Record

FIELDS = ["name", "value", "unit", "baseline", "ratio", "target", "meets_target"]


def well_formed(record: Record) -> dict:
    line = json.loads(record.line())
    assert list(line)[:len(FIELDS)] == FIELDS
    assert line["name"] and line["unit"] and line["target"]
    assert isinstance(line["value"], (int, float)) and math.isfinite(line["value"])
    for key in ("baseline", "ratio"):
        assert line[key] is None or (isinstance(line[key], (int, float)) and math.isfinite(line[key]))
    assert isinstance(line["meets_target"], bool)
    return line


@pytest.mark.parametrize("name", list(BENCHMARKS))
async def test_each_benchmark_runs_at_tiny_size_and_reports_a_record(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    result = await module.run(module.TINY)
    records = result if isinstance(result, list) else [result]
    assert records
    names = [well_formed(r)["name"] for r in records]
    assert len(set(names)) == len(names)


def test_the_entry_point_prints_one_json_line_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    assert main(["--tiny", "--only", "mapping_cost"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == ["mapping_cost"]
    assert lines[0]["details"]["store"]

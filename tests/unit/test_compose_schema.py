"""docker-compose.yml against the Compose Specification's own JSON schema (vendored in
tests/fixtures/schemas with its source: Docker cannot run here, so `docker compose config`
cannot check it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests/fixtures/schemas/compose-spec.json").read_text())["schema"]


def problems(document: Any) -> list[str]:
    # The schema names draft 2019-09; its keywords mean the same under the 2020-12 validator.
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_file_follows_the_compose_specification():
    assert problems(compose()) == []


def test_the_check_refuses_a_misspelt_key_and_a_wrong_type():
    misspelt = copy.deepcopy(compose())
    service = next(iter(misspelt["services"].values()))
    service["restrt"] = "always"
    assert any("restrt" in p for p in problems(misspelt))
    wrong = copy.deepcopy(compose())
    next(iter(wrong["services"].values()))["ports"] = 8080
    assert problems(wrong) != []

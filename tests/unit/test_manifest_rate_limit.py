"""``api.rateLimit``: a platform's documented request budget, stated in its manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncd.kit.loader import ManifestError, load_all, load_manifest

MINIMAL = {"platform": "acme", "api": {"root": "https://api.acme.example"}}


def write(tmp_path: Path, rate_limit: dict) -> Path:
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "api": {**MINIMAL["api"], "rateLimit": rate_limit}}))
    return path


def test_a_rate_limit_is_read_with_its_costs(tmp_path: Path) -> None:
    loaded = load_manifest(write(tmp_path, {"requests": 600, "perS": 60, "costs": {"^GET .*/threads/[^/]+$": 10},
                                            "scope": "per user", "source": "https://docs.acme.example/quota"}))
    limit = loaded.manifest.api.rate_limit
    assert (limit.requests, limit.per_s, limit.costs, limit.scope) == (600, 60.0, {"^GET .*/threads/[^/]+$": 10},
                                                                       "per user")


@pytest.mark.parametrize(("rate_limit", "where", "problem"), [
    ({"requests": 0, "perS": 1}, "api.rateLimit.requests", "greater than 0"),
    ({"requests": 5, "perS": 1, "costs": {"^GET (": 10}}, "api.rateLimit", "is not a regular expression"),
    ({"requests": 5, "perS": 1, "burst": 10}, "api.rateLimit.burst", "unknown key"),
])
def test_a_wrong_rate_limit_stops_the_load_naming_where_and_what(tmp_path: Path, rate_limit: dict, where: str,
                                                                 problem: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, rate_limit))
    assert where in str(caught.value) and problem in str(caught.value)


def test_the_shipped_platforms_with_a_documented_limit_state_it_with_a_source() -> None:
    limits = {name: loaded.manifest.api.rate_limit for name, loaded in load_all().items()
              if loaded.manifest.api is not None and loaded.manifest.api.rate_limit is not None}
    assert {"slack", "gmail", "teams", "messenger", "instagram"} <= set(limits)
    assert all(limit.source and limit.source.startswith("https://") for limit in limits.values())

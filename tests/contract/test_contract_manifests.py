"""Every platform's manifest, by existing: it loads, matches the published JSON Schema, binds
to a connector whose capabilities are the declared ones, and a misspelt key anywhere in it
stops the load with the path named."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from contractsupport import LOADED, PLATFORMS

from syncd import providers
from syncd.kit.loader import ManifestError, json_schema, load_manifest

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "mappings" / "manifest.schema.json"


def test_the_published_json_schema_is_the_one_the_loader_enforces():
    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(json.dumps(json_schema()))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_manifest_validates_against_the_published_json_schema(platform):
    raw = yaml.safe_load(Path(LOADED[platform].file).read_text())
    jsonschema.validate(raw, json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_connector_has_the_declared_capabilities(platform):
    cls = providers.connector_for(LOADED[platform])
    caps = LOADED[platform].manifest.capabilities
    assert (cls.has_history, cls.can_poll, cls.can_edit, cls.can_delete) == (
        caps.history, caps.poll, caps.edit, caps.delete)


def _misspell(raw: dict, where: list[str]) -> dict:
    node = raw
    for key in where:
        node = node.setdefault(key, {})
    node["mesage"] = {}
    return raw


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("where", [[], ["capabilities"], ["api"], ["webhook"], ["mapping"], ["requests"]])
def test_a_misspelt_key_stops_the_load_naming_the_path(platform, where, tmp_path):
    raw = yaml.safe_load(Path(LOADED[platform].file).read_text())
    if where[:1] == ["api"] and "api" not in raw:
        raw["api"] = {"root": "https://example.invalid"}
    path = tmp_path / f"{platform}.yaml"
    path.write_text(yaml.safe_dump(_misspell(raw, where)))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert err.value.field == ".".join([*where, "mesage"])
    assert err.value.file == str(path)

"""A generated credential's ``link``: the URL that carries it, answered once at creation
(``setup``) beside the value, for a platform that signs nothing and is reached at a secret URL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncd.kit.declarative import ManifestConnector
from syncd.kit.manifest import Manifest


def _manifest(link: dict | None) -> Manifest:
    field = {"secret": True, "generate": "token", "setup": "Plugin server url"}
    if link is not None:
        field["link"] = link
    return Manifest.model_validate({"platform": "plug", "capabilities": {"webhooks": False},
                                    "credentials": {"pluginSecret": field}})


def test_a_linked_credential_answers_its_url_once_with_the_value():
    cls = ManifestConnector.bind(_manifest({"name": "pluginUrl", "url": "{publicUrl}/plugins/{platform}/{integrationId}/{value}"}))
    setup = cls.setup({"pluginSecret": "s3cr3t-value"}, "https://syncd.example/webhooks/plug/int-1")
    assert setup is not None
    assert setup["pluginUrl"] == "https://syncd.example/plugins/plug/int-1/s3cr3t-value"
    assert setup["fields"] == [{"field": "pluginSecret", "where": "Plugin server url", "value": "s3cr3t-value",
                                "url": setup["pluginUrl"]}]


def test_without_a_link_the_setup_is_the_value_and_the_webhook_url():
    cls = ManifestConnector.bind(_manifest(None))
    setup = cls.setup({"pluginSecret": "v"}, "https://syncd.example/webhooks/plug/int-1")
    assert setup == {"webhookUrl": "https://syncd.example/webhooks/plug/int-1",
                     "fields": [{"field": "pluginSecret", "where": "Plugin server url", "value": "v"}]}


@pytest.mark.parametrize("link", [{"name": "plugin", "url": "{publicUrl}/p/{value}"},
                                  {"name": "pluginUrl", "url": "https://elsewhere.example/{value}"}])
def test_a_link_must_be_named_as_a_url_and_start_at_syncds_public_url(link):
    with pytest.raises(ValidationError):
        _manifest(link)

"""The Smooch-compatible integration API (seed 004): an app that used Smooch's Create
Integration moves by changing its base URL. Smooch's documented bodies are posted unchanged;
the simulators accept the seed's placeholder credentials as a real account's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from apisupport import assert_error

from syncd.providers.messenger.sim import MessengerSimulator
from syncd.providers.telegram.sim import TelegramSimulator
from syncd.providers.viber.sim import ViberSimulator
from syncd.testbed import Testbed

SEED = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "smooch_integrations.json").read_text())
BODIES = {item["body"]["type"]: item["body"] for item in SEED["createIntegration"]}
APP = "55c8d9758590aa1900b9b9f6"
BASE = f"/v1/apps/{APP}/integrations"
SECRET_ARGUMENTS = {"pageAccessToken", "appSecret", "token", "botToken", "verifyToken", "secretToken"}


@pytest.fixture
async def tb():
    telegram = TelegramSimulator()
    telegram.add_bot(BODIES["telegram"]["token"], "Mike", "mikes_smooch_bot")
    sims = {
        "telegram": telegram,
        "messenger": MessengerSimulator(valid_tokens=[BODIES["messenger"]["pageAccessToken"]]),
        "viber": ViberSimulator(token=BODIES["viber"]["token"]),
    }
    tb = await Testbed.start(sims=sims)
    yield tb
    await tb.stop()


async def create(tb: Testbed, body: dict[str, Any], app: str = APP) -> dict[str, Any]:
    response = await tb.api.post(f"/v1/apps/{app}/integrations", json=body)
    assert response.status_code == 201, response.text
    return response.json()["integration"]


@pytest.mark.parametrize("kind", ["messenger", "telegram", "viber"])
async def test_smooch_s_example_body_creates_an_integration_without_echoing_secrets(tb, kind):
    body = BODIES[kind]
    integration = await create(tb, body)
    assert integration["type"] == kind and integration["_id"] and integration["status"] == "active"
    assert not SECRET_ARGUMENTS & set(integration)
    answered = json.dumps(integration)
    for name, value in body.items():
        assert name == "type" or name not in SECRET_ARGUMENTS or value not in answered, name
    stored = (await tb.api.get(f"/integrations/{integration['_id']}")).json()["integration"]
    assert stored["customerId"] == APP and stored["platform"] == kind


async def test_non_secret_arguments_are_shown_as_smooch_shows_them(tb):
    integration = await create(tb, {**BODIES["messenger"], "displayName": "Mike's page"})
    assert integration["appId"] == "your_fb_app_id"
    assert integration["displayName"] == "Mike's page"
    assert integration["webhookUrl"].endswith(f"/webhooks/messenger/{integration['_id']}")


@pytest.mark.parametrize("kind", ["apn", "fcm"])
async def test_push_channels_are_refused_as_not_message_platforms(tb, kind):
    error = assert_error(await tb.api.post(BASE, json=BODIES[kind]), 422, "push_channel")
    assert "push channel" in error["message"] and "not a message platform" in error["message"]


async def test_an_unknown_type_names_the_known_ones(tb):
    error = assert_error(await tb.api.post(BASE, json={"type": "pigeon", "token": "x"}), 422, "unknown_type")
    assert "'pigeon'" in error["message"] and "telegram" in error["message"] and "viber" in error["message"]


async def test_a_missing_type_is_refused(tb):
    assert_error(await tb.api.post(BASE, json={"token": "x"}), 422)


async def test_an_unknown_argument_is_refused_naming_it(tb):
    error = assert_error(await tb.api.post(BASE, json={**BODIES["viber"], "colour": "red"}), 422)
    assert any(d["field"] == "colour" for d in error["details"])


async def test_a_missing_argument_is_refused_naming_it(tb):
    body = {k: v for k, v in BODIES["messenger"].items() if k != "appSecret"}
    error = assert_error(await tb.api.post(BASE, json=body), 422, "invalid_credentials")
    assert any(d["field"] == "appSecret" for d in error["details"])


async def test_the_admin_token_is_required(tb, anon):
    assert_error(await anon.post(BASE, json=BODIES["viber"]), 401, "unauthorized")
    assert_error(await anon.get(BASE), 401, "unauthorized")


async def test_list_filters_by_types_and_by_app(tb):
    viber = await create(tb, BODIES["viber"])
    telegram = await create(tb, BODIES["telegram"])
    await create(tb, BODIES["messenger"], app="another-app")
    everything = (await tb.api.get(BASE)).json()["integrations"]
    assert {i["_id"] for i in everything} == {viber["_id"], telegram["_id"]}
    only = (await tb.api.get(BASE, params={"types": "telegram,messenger"})).json()["integrations"]
    assert [i["_id"] for i in only] == [telegram["_id"]]


async def test_get_and_delete_one_integration(tb):
    integration = await create(tb, BODIES["viber"])
    path = f"{BASE}/{integration['_id']}"
    assert (await tb.api.get(path)).json()["integration"] == integration
    # Another app cannot see or delete it.
    assert_error(await tb.api.get(f"/v1/apps/another-app/integrations/{integration['_id']}"), 404, "not_found")
    assert_error(await tb.api.delete(f"/v1/apps/another-app/integrations/{integration['_id']}"), 404, "not_found")
    response = await tb.api.delete(path)
    assert response.status_code == 200 and response.json() == {}
    assert_error(await tb.api.get(path), 404, "not_found")
    assert (await tb.api.get(BASE)).json()["integrations"] == []


async def test_every_seed_body_of_a_loaded_platform_passes_the_credential_checks(tb):
    """Format checks are no stricter than the platforms' own (the seed's values are what the
    platforms hand out)."""
    connectors = tb.engine.ctx.connectors
    checked = []
    for kind, body in BODIES.items():
        platform = connectors.resolve(kind)
        if platform is None:
            continue
        arguments = {k: v for k, v in body.items() if k != "type"}
        cls = connectors.connector_class(platform)
        credentials, _ = cls.prepare_credentials(arguments, {})
        connectors.validate_credentials(platform, credentials)
        checked.append(kind)
    assert {"messenger", "telegram", "viber", "twitter"} <= set(checked)


async def test_a_generated_secret_is_shown_once_in_setup_as_post_integrations_shows_it(tb):
    made = await create(tb, BODIES["messenger"])
    generated = (await tb.daemon.store.get_credentials(made["_id"]))["verifyToken"]
    assert [f["value"] for f in made["setup"]["fields"]] == [generated]
    assert made["webhookUrl"] == made["setup"].get("webhookUrl", made["webhookUrl"])
    for path in (BASE, f"{BASE}/{made['_id']}", "/integrations", f"/integrations/{made['_id']}"):
        again = await tb.api.get(path)
        assert again.status_code == 200 and generated not in again.text and "setup" not in again.text, path


async def test_an_argument_refused_here_is_refused_alike_by_post_integrations(tb):
    body = {**BODIES["viber"], "colour": "red"}
    smooch = assert_error(await tb.api.post(BASE, json=body), 422)
    plain = assert_error(await tb.api.post("/integrations", json={
        "platform": "viber", "customerId": APP, "credentials": {"token": body["token"], "colour": "red"}}), 422)
    assert smooch == plain


async def test_smooch_s_argument_names_work_through_post_integrations_too(tb):
    response = await tb.api.post("/integrations", json={
        "platform": "telegram", "customerId": APP, "credentials": {"token": BODIES["telegram"]["token"]}})
    assert response.status_code == 201, response.text
    assert BODIES["telegram"]["token"] not in response.text


async def test_a_secret_argument_never_shows_in_an_error(tb):
    body = {**BODIES["telegram"], "token": "not-a-bot-token-but-a-secret-0123456789"}
    response = await tb.api.post(BASE, json=body)
    assert_error(response, 422, "invalid_credentials")
    assert body["token"] not in response.text


async def test_an_unknown_type_in_the_list_filter_is_refused_but_push_channels_match_nothing(tb):
    await create(tb, BODIES["viber"])
    error = assert_error(await tb.api.get(BASE, params={"types": "viber,pigeon"}), 422, "unknown_type")
    assert "'pigeon'" in error["message"]
    assert (await tb.api.get(BASE, params={"types": "apn,fcm"})).json() == {"integrations": []}
    assert len((await tb.api.get(BASE, params={"types": ""})).json()["integrations"]) == 1


@pytest.mark.parametrize("body, field", [
    ({"type": 7, "token": "x"}, "type"),
    ({"type": "viber", "displayName": ["a"], "token": "x"}, "displayName"),
    ({"type": "viber", "$set": {"a": 1}}, "body"),
])
async def test_a_malformed_body_is_refused_naming_the_field(tb, body, field):
    error = assert_error(await tb.api.post(BASE, json=body), 422, "invalid")
    assert [d["field"] for d in error["details"]] == [field]


async def test_an_overlong_app_id_is_refused(tb):
    assert_error(await tb.api.get(f"/v1/apps/{'a' * 600}/integrations"), 422, "invalid")


async def test_the_routes_are_documented_as_admin_operations(tb, anon):
    schema = (await anon.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths[BASE.replace(APP, "{app_id}")]) == {"get", "post"}
    one = paths["/v1/apps/{app_id}/integrations/{integration_id}"]
    assert set(one) == {"get", "delete"}
    for operation in [*paths[BASE.replace(APP, "{app_id}")].values(), *one.values()]:
        assert operation["security"] == [{"adminToken": []}]
        assert operation["responses"]["4XX"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    body = schema["components"]["schemas"]["SmoochIntegration"]
    assert body["required"] == ["type"] and body["additionalProperties"] is True
    created = paths[BASE.replace(APP, "{app_id}")]["post"]["responses"]["201"]["content"]["application/json"]
    assert created["schema"] == {"$ref": "#/components/schemas/SmoochOne"}

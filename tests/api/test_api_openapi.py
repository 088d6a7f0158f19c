"""The OpenAPI document says what the API does: who may call each operation, and the one error
body every refusal has."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
async def schema(anon):
    return (await anon.get("/openapi.json")).json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


async def test_the_security_schemes_are_declared_and_used(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["adminToken"] == {"type": "http", "scheme": "bearer",
                                     "description": schemes["adminToken"]["description"]}
    assert schemes["eventSignature"]["in"] == "header" and schemes["eventSignature"]["name"] == "X-Syncd-Signature"
    secured = {(p, m): o.get("security") for p, m, o in operations(schema)}
    assert secured[("/events", "post")] == [{"eventSignature": []}]
    for path in ("/integrations", "/deadletters", "/chats"):
        assert secured[(path, "get")] == [{"adminToken": []}], path
    for path in ("/healthz", "/webhooks/{platform}/{integration_id}"):
        assert secured[(path, "get")] is None, path


async def test_every_refusal_is_documented_as_the_error_body(schema):
    for path, method, operation in operations(schema):
        refusals = {status: answer for status, answer in operation["responses"].items() if status[0] in "45"}
        assert "4XX" in refusals and "5XX" in refusals, (path, method)
        for answer in refusals.values():
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]


async def test_a_real_422_has_the_documented_shape(tb, schema):
    answer = await tb.api.post("/integrations", json={"platform": "slack"})
    assert answer.status_code == 422
    error = schema["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) <= set(answer.json()["error"]) <= set(error["properties"])


async def test_the_document_cites_no_document_outside_the_repository(schema):
    assert "DESIGN" not in json.dumps(schema)


async def test_the_dead_letter_operations_are_documented(schema):
    assert "get" in schema["paths"]["/deadletters"]
    assert "post" in schema["paths"]["/deadletters/{dead_letter_id}/retry"]


async def test_the_shared_webhook_is_documented_without_a_bearer_token(schema):
    operation = schema["paths"]["/webhooks/{platform}"]["post"]
    assert operation.get("security") is None
    assert [p["name"] for p in operation["parameters"]] == ["platform"]
    assert {"400", "401", "404"} <= set(operation["responses"])
    assert "get" not in schema["paths"]["/webhooks/{platform}"]

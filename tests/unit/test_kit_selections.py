"""Kit additions for platforms whose deliveries and errors need a closer look: conditions on a
record's parent or the whole body, echo handshakes that refuse with a status, error rules
with messages, reasons, status classes and default waits, pattern messages, numeric ids, and
next-page URLs rebased on the configured root."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from syncd.kit import handshakes, templates
from syncd.kit.classify import classifier
from syncd.kit.credentials import credentials_model
from syncd.kit.errors import PermanentError, RateLimited, TransientError
from syncd.kit.manifest import ErrorRule, Manifest
from syncd.kit.manifest_base import Condition
from syncd.kit.manifest_webhook import Handshake
from syncd.universal import WebhookRequest

BODY = {"object": "page", "entry": [{"id": 77, "messaging": [{"mid": "m1"}, {"mid": "m2"}]},
                                    {"id": "78", "messaging": [{"mid": "m3"}]}]}


def picked(*conditions: Condition, scope: dict | None = None) -> list[str]:
    found = templates.select(BODY, "entry[].messaging[]")
    return [r["mid"] for r, p in found
            if all(templates.matches(r, c, {**(scope or {}), "parent": p, "root": BODY}) for c in conditions)]


def test_a_condition_reads_the_records_parent_or_the_whole_body():
    mine = Condition(of="parent", path="id", equals="{credentials.pageId}")
    assert picked(mine, scope={"credentials": {"pageId": "77"}}) == ["m1", "m2"]  # 77 as a number matches "77"
    assert picked(Condition(of="root", path="object", equals="instagram")) == []
    assert picked(Condition(path="mid", in_=["m3"])) == ["m3"]


def test_an_id_as_a_number_equals_its_text_but_nothing_else_is_loosened():
    assert templates.matches({"v": 10}, Condition(path="v", equals="10"))
    assert not templates.matches({"v": True}, Condition(path="v", equals="True"))
    assert not templates.matches({"v": "10"}, Condition(path="v", equals=10.5))


def echo(query: dict[str, str]) -> int:
    spec = Handshake(type="echo", param="hub.challenge", token="hub.verify_token", expect="{credentials.v}",
                     query={"hub.mode": "subscribe"}, refuse_status=403)
    answer = handshakes.handshake([spec], WebhookRequest("GET", "u", {}, query, b""), {"credentials": {"v": "ok"}},
                                  verified=False)
    assert answer is not None and answer.delivery_id is None
    return answer.answer.status_code


def test_an_echo_handshake_checks_the_token_and_the_mode_and_refuses_with_its_status():
    assert echo({"hub.mode": "subscribe", "hub.verify_token": "ok", "hub.challenge": "1"}) == 200
    assert echo({"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "1"}) == 403
    assert echo({"hub.mode": "unsubscribe", "hub.verify_token": "ok", "hub.challenge": "1"}) == 403
    assert echo({}) == 403


def classify(status: int, body: dict, rules: list[dict]) -> None:
    classifier([ErrorRule.model_validate(r) for r in rules])(httpx.Response(status, json=body))


def test_error_rules_name_the_failure_and_wait_a_default_when_the_answer_says_nothing():
    rules = [{"when": [{"path": "error.code", "in": [613]}], "as": "rate_limited", "code": "error.code",
              "retryAfterDefault": 60},
             {"when": [{"path": "error.code", "equals": 10}], "as": "permanent", "code": "error.code",
              "reason": "window", "message": "outside the window ({body.error.sub})"},
             {"status": "5xx", "as": "transient"}]
    with pytest.raises(RateLimited) as throttled:
        classify(200, {"error": {"code": 613}}, rules)
    assert (throttled.value.code, throttled.value.retry_after) == ("613", 60)
    with pytest.raises(PermanentError) as closed:
        classify(400, {"error": {"code": 10, "sub": 2018278}}, rules)
    assert (str(closed.value), closed.value.reason, closed.value.code) == ("outside the window (2018278)", "window", "10")
    with pytest.raises(TransientError):
        classify(503, {}, rules)


def test_a_pattern_message_replaces_the_regular_expression_and_numbers_stay_exact():
    model = credentials_model(Manifest.model_validate({"platform": "x", "credentials": {
        "numberId": {"pattern": r"^\d+$", "patternMessage": "the numeric id, not the phone number"},
        "secret": {"secret": True}}}))
    with pytest.raises(ValidationError) as caught:
        model.model_validate({"numberId": "+1 555", "secret": "s3cret"})
    assert "the numeric id" in str(caught.value) and "s3cret" not in str(caught.value)
    assert model.model_validate_json('{"numberId": 123456789012345678901234, "secret": "s"}').number_id == (
        "123456789012345678901234")

"""A manifest's error rules as the classifier of its HTTP client.

Rules are tried in order; the first that matches the answer's status (any listed) and every
condition on its JSON body decides: ``ok`` lets it through, ``already_done`` raises
``AlreadyDone`` (an operation on what is already gone: the caller counts it as done), the
others raise the exception of ``syncd.kit.errors``. An answer no rule matches falls back to
status-code classification. By default error messages carry the platform's error *code* only:
free text can echo a token back. A rule's ``message`` may quote the platform's description;
every secret of the integration is scrubbed from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import httpx

from syncd.kit import templates
from syncd.kit.errors import (
    AlreadyDone,
    AuthError,
    CursorExpired,
    PermanentError,
    ProviderError,
    RateLimited,
    TransientError,
)
from syncd.kit.http import Classifier, default_classify, parse_retry_after
from syncd.kit.manifest import ErrorRule

_RAISE: dict[str, type[ProviderError]] = {
    "auth": AuthError, "transient": TransientError, "permanent": PermanentError,
    "cursor_expired": CursorExpired, "already_done": AlreadyDone,
}


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(rule: ErrorRule, response: httpx.Response, body: Any) -> float | None:
    if rule.retry_after_path:
        value = templates.lookup(body, rule.retry_after_path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return max(0.0, float(value))
    found = parse_retry_after(response.headers.get(rule.retry_after_header or "retry-after"))
    return found if found is not None else rule.retry_after_default


def _applies(rule: ErrorRule, response: httpx.Response, body: Any) -> bool:
    # ``ErrorRule`` validation made ``status`` a list of codes ("4xx" expanded).
    if rule.status and response.status_code not in cast(list[int], rule.status):
        return False
    return all(templates.matches(body, c) for c in rule.when)


def _message(rule: ErrorRule, code: str | None, status: int, body: Any, secrets: Sequence[str]) -> str | None:
    """The rule's own message, secrets scrubbed; ``None`` when it has none or lacks a value."""
    text = templates.render(rule.message, {"code": code, "status": status, "body": body}) if rule.message else None
    if text is None:
        return None
    text = str(text)
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text[:300]


def raise_for(rule: ErrorRule, response: httpx.Response, body: Any, secrets: Sequence[str] = ()) -> None:
    if rule.as_ == "ok":
        return
    status = response.status_code
    code = templates.lookup(body, rule.code) if rule.code else None
    code = str(code)[:80] if code is not None else None
    message = _message(rule, code, status, body, secrets) or \
        f"{rule.as_.replace('_', ' ')} ({status}{', ' + code if code else ''})"
    error: ProviderError
    if rule.as_ == "rate_limited":
        error = RateLimited(message, status=status, code=code, retry_after=_retry_after(rule, response, body))
    else:
        error = _RAISE[rule.as_](message, status=status, code=code)
    error.reason = rule.reason
    raise error


def classifier(rules: list[ErrorRule], secrets: Sequence[str] = ()) -> Classifier:
    """The ``classify`` hook of ``ProviderHttp`` for these rules; ``secrets`` are scrubbed from
    the messages that quote the platform."""
    secrets = [s for s in secrets if s]

    def classify(response: httpx.Response) -> None:
        body = _body(response) if rules else None
        for rule in rules:
            if _applies(rule, response, body):
                raise_for(rule, response, body, secrets)
                return
        default_classify(response)

    return classify

"""A manifest's webhook accept, compiled once per connector credentials: the verifiers as
closures (which header, the signed payload's parts, the key's bytes, prefix and encoding), the
challenge and accept rules as predicates with their expected values rendered, and the delivery
id as a path. Every delivery then runs the same checks as ``ManifestConnector.accept_webhook``
(signature, replay window, challenge, accept rules, delivery id) without rendering a template,
building a scope or reading the manifest's models.

Only what compiles to exactly the generic accept's outcome is compiled: ``compile_accept``
gives ``None`` for anything else (JWT and OIDC verifiers, a signed URL, form or query,
a key derived per delivery, templates that read the environment or the delivery), and the
generic accept runs. A delivery the plan does not answer itself (a GET, one sent to the shared
URL, a challenge) also goes the generic way (``AcceptPlan.accept`` gives ``None``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any

from syncd.kit import signed, templates
from syncd.kit.errors import MalformedDelivery, SignatureError
from syncd.kit.manifest_base import Condition
from syncd.kit.manifest_webhook import Verifier, Webhook
from syncd.kit.signatures import check_window, unprefixed
from syncd.universal import WebhookAccepted, WebhookAnswer, WebhookRequest

#: A check of one verifier: raises ``SignatureError``, or adds the answer's headers.
Check = Callable[[WebhookRequest, float, float, dict[str, str]], None]
#: A condition on a record, its parent and the whole document.
Predicate = Callable[[Any, Any, Any], bool]
Getter = Callable[[Any], Any]
#: What templates may read to be compiled as constants: the same for every delivery of one
#: connector's credentials (not the environment, which is read when used).
_CONSTANT_ROOTS = ("credentials.", "settings.")
_CONSTANT_NAMES = ("webhookUrl", "pageSize")
_UNKNOWN = object()  # a template that does not compile to a constant
_NOT_JSON = object()
_BODY, _BODY_SHA256 = object(), object()
_DECODER = json.JSONDecoder()


class AcceptPlan:
    """A manifest's accept for one connector's credentials (see the module docstring)."""

    def __init__(self, hook: Webhook, checks: list[Check], challenges: list[Predicate],
                 accept: list[tuple[str, Predicate]], delivery_id: Callable[[WebhookRequest, Any], str]):
        self.checks, self.rules, self.delivery_id = checks, accept, delivery_id
        #: Whether a body is one of the challenges (``None``: none declared).
        self.challenges = _any_of(challenges) if challenges else None
        self.status, self.media_type = hook.answer_status, hook.answer_media_type
        self.body = hook.answer_body
        self.ignore_malformed = hook.malformed == "ignore"

    def accept(self, request: WebhookRequest, now: float, max_skew_s: float) -> WebhookAccepted | None:
        """The delivery verified and its id, as the generic accept would answer; ``None``
        where the generic accept must answer it. Raises ``SignatureError`` and
        ``MalformedDelivery`` as that does."""
        if request.method != "POST" or request.shared:
            return None
        proof: dict[str, str] = {}
        for check in self.checks:
            check(request, now, max_skew_s, proof)
        body = _json(request.body)
        # A challenge's conditions read the body itself (no parent, no root: ``handshakes``).
        if self.challenges is not None and body.__class__ is dict and self.challenges(body, None, None):
            return None  # a handshake: answered by the generic accept, with its template
        answer = WebhookAnswer(self.status, self.body if self.body is not None else {"ok": True},
                               self.media_type, proof)
        try:
            if body is _NOT_JSON:
                raise MalformedDelivery("the delivery is not JSON")
            for records, when in self.rules:
                if not _found(body, records, when):
                    return WebhookAccepted(None, answer)  # not this integration's: acknowledged, dropped
            return WebhookAccepted(self.delivery_id(request, body), answer)
        except MalformedDelivery:
            if self.ignore_malformed:
                return WebhookAccepted(None, answer)
            raise


def compile_accept(hook: Webhook, scope: dict[str, Any],
                   delivery_id: Callable[[WebhookRequest, Any], str]) -> AcceptPlan | None:
    """``hook``'s accept compiled for the connector whose templates read ``scope`` (its
    credentials and settings); ``delivery_id`` is the generic reading of the id, for specs the
    plan does not compile. ``None``: the generic accept must run."""
    if hook.format != "json" or hook.verify_mode != "all" or not hook.verify:
        return None
    checks: list[Check] = []
    for verifier in hook.verify:
        if verifier.if_present:
            return None
        if verifier.only_if:
            applies = _constant(verifier.only_if, scope)
            if applies is _UNKNOWN:
                return None
            if not applies:
                continue  # the generic ``verify`` skips it too
        check = _token_check(verifier, scope) if verifier.type == "token" else _hmac_check(verifier, scope)
        if check is None:
            return None
        checks.append(check)
    challenges: list[Predicate] = []
    for spec in hook.handshakes:
        when = _conditions(spec.when, {}) if spec.type == "challenge" and spec.when else None
        if spec.type == "challenge" and spec.when and when is None:
            return None
        if when is not None:
            challenges.append(when)
    rules: list[tuple[str, Predicate]] = []
    for selection in hook.accept:
        when = _conditions(selection.when, scope)
        if when is None:
            return None
        rules.append((selection.records or ".", when))
    return AcceptPlan(hook, checks, challenges, rules, _delivery_id(hook, delivery_id))


# -- verifiers ------------------------------------------------------------------------------
def _hmac_check(verifier: Verifier, scope: dict[str, Any]) -> Check | None:
    """``signatures._check`` of an ``hmac`` verifier whose signature is in a header, compiled."""
    if (verifier.type != "hmac" or not verifier.header or verifier.path or verifier.timestamp_path
            or verifier.key_digest or verifier.body_digest_param or not verifier.key):
        return None
    key = _constant(verifier.key, scope)
    parts = _payload_parts(verifier.payload, scope)
    if key is _UNKNOWN or parts is None:
        return None
    key_text = None if key is None else str(key)
    key_bytes = str(key_text or "").encode()
    header, name, prefix = verifier.header.lower(), verifier.header, verifier.prefix
    stamp_header = verifier.timestamp_header.lower() if verifier.timestamp_header else None
    per_unit = 1000 if verifier.timestamp_unit == "ms" else 1
    algorithm, hexed, answer_header = verifier.algorithm, verifier.encoding == "hex", verifier.answer_header

    def check(request: WebhookRequest, now: float, max_skew_s: float, proof: dict[str, str]) -> None:
        headers = request.headers
        if stamp_header is not None:
            try:
                stamp = float(headers.get(stamp_header, "")) / per_unit
            except ValueError:
                raise SignatureError(f"no valid {verifier.timestamp_header}") from None
            check_window(stamp, now, max_skew_s)
        presented = unprefixed(headers.get(header), name, prefix).strip()
        digest = hmac.digest(key_bytes, _payload(parts, request), algorithm)
        if hexed:
            presented, expected = presented.lower(), digest.hex()
        else:
            expected = base64.b64encode(digest).decode()
        if not hmac.compare_digest(expected.encode(), presented.encode()):
            raise SignatureError(f"{name} does not match")
        if answer_header and key_text:
            proof[answer_header] = key_text

    return check


def _token_check(verifier: Verifier, scope: dict[str, Any]) -> Check | None:
    """``signatures._check`` of a ``token`` verifier (a shared secret in a header or a query
    parameter), compiled."""
    if verifier.path or not (verifier.header or verifier.param):
        return None
    rendered = _constant(verifier.value, scope)
    if rendered is _UNKNOWN:
        return None
    expected = str(rendered or "").encode()
    header, param = (verifier.header or "").lower(), verifier.param or ""
    name, prefix = verifier.header or verifier.param or "", verifier.prefix

    def check(request: WebhookRequest, now: float, max_skew_s: float, proof: dict[str, str]) -> None:
        if not expected:
            raise SignatureError(f"{name} does not match")
        value = unprefixed(request.headers.get(header) if header else request.query.get(param), name, prefix)
        if not hmac.compare_digest(value.encode(), expected):
            raise SignatureError(f"{name} does not match")

    return check


def _payload_parts(template: str, scope: dict[str, Any]) -> list[Any] | None:
    """``template`` as bytes, header names and the body's markers, in order (adjacent constant
    bytes joined); ``None`` if a part reads anything else (the URL, the query, the form)."""
    pieces, reads_query = signed._pieces(template)
    if reads_query:
        return None
    parts: list[Any] = []
    for i, piece in enumerate(pieces):
        if i % 2:
            parts.append(_BODY if piece == "body" else _BODY_SHA256)
            continue
        if not piece:
            continue
        _, literals, names = templates._compiled(piece)
        parts.append(literals[0].encode())
        for name, literal in zip(names, literals[1:], strict=True):
            field = name.partition(".")[2]
            if name.startswith("header.") and field and "." not in field:
                parts.append(field)  # read from the delivery's headers
            else:
                value = _constant("{" + name + "}", scope)
                if value is _UNKNOWN or value is None:
                    return None  # the generic accept says what is missing
                parts.append((value if isinstance(value, str) else str(value)).encode())
            parts.append(literal.encode())
    joined: list[Any] = []
    for part in parts:
        if isinstance(part, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += part
        elif part != b"":
            joined.append(part)
    return joined


def _payload(parts: list[Any], request: WebhookRequest) -> bytes:
    out: list[bytes] = []
    for part in parts:
        if part.__class__ is bytes:
            out.append(part)
        elif part is _BODY:
            out.append(request.body)
        elif part is _BODY_SHA256:
            out.append(hashlib.sha256(request.body).digest())
        else:
            value = request.headers.get(part)
            if value is None:
                raise SignatureError("a part of the signed payload is missing")
            out.append(value.encode())
    return b"".join(out)


# -- rules ----------------------------------------------------------------------------------
def _constant(template: Any, scope: dict[str, Any]) -> Any:
    """``template`` rendered on ``scope`` if it reads only what is constant for a connector
    (credentials, settings, its webhook URL), else ``_UNKNOWN``. An empty ``scope`` renders
    every placeholder as missing (what a handshake's conditions see)."""
    if scope and any(not (n.startswith(_CONSTANT_ROOTS) or n in _CONSTANT_NAMES) for n in _names(template)):
        return _UNKNOWN
    return templates.render(template, scope)


def _names(template: Any) -> Iterable[str]:
    if isinstance(template, str):
        yield from templates.placeholders(template)
    elif isinstance(template, dict):
        for value in template.values():
            yield from _names(value)
    elif isinstance(template, list):
        for value in template:
            yield from _names(value)


def _conditions(conditions: list[Condition], scope: dict[str, Any]) -> Predicate | None:
    """Every condition compiled into one predicate; ``None`` if one does not compile."""
    compiled = [_condition(c, scope) for c in conditions]
    predicates = [p for p in compiled if p is not None]
    if len(predicates) != len(compiled):
        return None
    if len(predicates) == 1:
        return predicates[0]

    def every(record: Any, parent: Any, root: Any) -> bool:
        return all(predicate(record, parent, root) for predicate in predicates)

    return every


def _any_of(predicates: list[Predicate]) -> Predicate:
    def any_of(record: Any, parent: Any, root: Any) -> bool:
        return any(p(record, parent, root) for p in predicates)

    return predicates[0] if len(predicates) == 1 else any_of


def _found(body: Any, records: str, when: Predicate) -> bool:
    """Whether ``records`` picks a record of ``body`` that passes ``when`` (``records`` as
    ``ManifestConnector.records`` reads it)."""
    if records == ".":
        return body.__class__ is dict and when(body, None, body)
    return any(isinstance(r, dict) and when(r, parent, body) for r, parent in templates.select(body, records))


def _json(body: bytes) -> Any:
    """``json.loads(body)`` (the generic ``parse_body``), or ``_NOT_JSON``; a body that starts
    as a UTF-8 object is decoded as ``json.loads`` would, without its detection."""
    try:
        if body[:1] == b"{" and body[1:2] != b"\x00":
            return _DECODER.decode(body.decode("utf-8", "surrogatepass"))
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _condition(condition: Condition, scope: dict[str, Any]) -> Predicate | None:
    """``templates.matches`` of ``condition``, its expected values rendered once."""
    expected = [_constant(v, scope) if v is not None else None
                for v in (condition.equals, condition.not_equals)]
    choices = [_constant(v, scope) for v in condition.in_ or []]
    if _UNKNOWN in expected or _UNKNOWN in choices:
        return None
    equals, not_equals = expected
    has_equals, has_not = condition.equals is not None, condition.not_equals is not None
    has_in, present, contains = condition.in_ is not None, condition.present, condition.contains
    get = _first(condition.path)
    of = condition.of
    same = templates.same
    if of == "record" and has_equals and present is None and contains is None and not has_in and not has_not:
        return lambda record, parent, root: same(get(record), equals)

    def predicate(record: Any, parent: Any, root: Any) -> bool:
        value = get(record if of == "record" else parent if of == "parent" else root)
        if present is not None and (value is not None) != present:
            return False
        if contains is not None and not (isinstance(value, str) and contains in value):
            return False
        if has_equals and not same(value, equals):
            return False
        if has_in and not any(same(value, v) for v in choices):
            return False
        return not has_not or not same(value, not_equals)

    return predicate


def _first(paths: str | list[str]) -> Getter:
    """``templates.first`` of ``paths``, each path split once."""
    getters = [_path(p) for p in ([paths] if isinstance(paths, str) else paths)]
    if len(getters) == 1:
        return getters[0]

    def first(doc: Any) -> Any:
        for get in getters:
            value = get(doc)
            if value is not None:
                return value
        return None

    return first


def _path(path: str) -> Getter:
    """``templates.lookup`` of ``path``, split once (a path with a list index: looked up)."""
    if path in ("", "."):
        return lambda doc: doc
    steps = tuple(path.split("."))
    if any(step.lstrip("-").isdigit() for step in steps):
        return lambda doc: templates.lookup(doc, path)
    if len(steps) == 1:
        return lambda doc: doc.get(path) if isinstance(doc, dict) else None

    def get(doc: Any) -> Any:
        for step in steps:
            if not isinstance(doc, dict):
                return None
            doc = doc.get(step)
        return doc

    return get


def _delivery_id(hook: Webhook, generic: Callable[[WebhookRequest, Any], str]) -> Callable[[WebhookRequest, Any], str]:
    """``ManifestConnector._delivery_id`` for a header or a path; ``generic`` for the rest."""
    spec = hook.delivery_id
    if spec.records or spec.template or not (spec.header or spec.path):
        return generic
    header = spec.header.lower() if spec.header else None
    get = _path(spec.path or "")
    must_have = hook.malformed == "ignore"

    def delivery_id(request: WebhookRequest, body: Any) -> str:
        found = request.headers.get(header) if header is not None else get(body)
        if found is not None and found != "":
            return str(found)
        if must_have:
            raise MalformedDelivery("the delivery has no delivery id")
        return generic(request, body)  # the body's digest

    return delivery_id


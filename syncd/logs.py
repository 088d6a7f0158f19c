"""Structured logging for the daemon and the CLI, with secrets masked on the way out.

Library modules only ever do ``log = structlog.get_logger(__name__)`` and log key/value
events; the composition roots (``syncd.daemon``, ``syncd.cli``) call
:func:`configure_logging` once. Per-task context (integration, chat, platform) is bound with
:func:`bind` or :func:`bound` and rides along on every event logged by that task::

    with bound(integration_id=integration.id, platform=integration.platform):
        log.info("import.page", chat=chat_id, messages=len(page.messages))

Standard-library loggers (uvicorn, httpx) are routed through the same processor
chain, so an operator gets one JSON object per line whatever emitted it. For uvicorn this
needs ``uvicorn.Config(..., log_config=None)``; otherwise uvicorn installs its own handlers.

Every event passes :func:`redact_secrets` last before rendering: values under secret-looking
keys, every secret value the process knows (:data:`KNOWN_SECRETS`: the integrations'
credentials and the tokens they refreshed, registered by value) and generic token shapes
(``Bearer ...``, JWTs, signature headers, ``?access_token=`` in URLs) never reach the output,
including inside formatted tracebacks.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "KNOWN_SECRETS",
    "REDACTED",
    "SecretValues",
    "bind",
    "bound",
    "configure_logging",
    "is_secret_key",
    "redact_secrets",
    "unbind",
]

REDACTED = "[redacted]"

#: Substrings of a (lower-cased, ``_``/``-``-free) key name that mark its value as secret.
_SECRET_KEY_PARTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "credential",
    "signature",
    "apikey",
    "refresh",
    "cookie",
    "privatekey",
)
#: Keys that match the rules above but carry identifiers an operator needs to debug sync,
#: never anything that grants access.
_NOT_SECRET_KEYS = frozenset({"idempotencykey", "pagetoken", "nextpagetoken", "tokentype"})

_TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # HTTP auth schemes: keep the scheme so the log still says what kind of auth failed.
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1 {REDACTED}"),
    # Basic credentials are base64; the digit/symbol look-ahead spares prose ("Basic auth").
    (
        re.compile(r"\b(Basic)\s+(?=[A-Za-z]*[0-9+/=])[A-Za-z0-9+/]{12,}={0,2}"),
        rf"\1 {REDACTED}",
    ),
    # JWTs (access tokens, id_tokens): header.payload.signature, base64url.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Plugin URLs end in a secret path segment (/plugins/<platform>/<integration>/<secret>).
    (re.compile(r"(/plugins/[^/\s]+/[^/\s]+/)[^/\s\"'?#]+"), rf"\1{REDACTED}"),
    # Webhook/app signatures (v0=, sha256=, legacy sha1=), hex or base64.
    (re.compile(r"\b(v0=|sha256=|sha1=)[A-Za-z0-9+/]{20,}={0,2}"), rf"\1{REDACTED}"),
    # Credentials passed as URL query parameters or in form-encoded bodies.
    (
        re.compile(
            r"((?:^|[?&;\s])(?:access_token|refresh_token|client_secret|api_key|apikey|key|token"
            r"|secret|password|signature|sig)=)[^&#\s\"']+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
)

#: Shorter values are not scrubbed by value: a 3-character "secret" would mangle prose, and
#: no platform issues one that short.
MIN_SECRET_LENGTH = 6


class SecretValues:
    """Secret values known by value (not by shape), scrubbed from any text.

    One per HTTP client (the credentials of one integration and every token it refreshed or
    sent in an ``Authorization`` header), and one for the process (:data:`KNOWN_SECRETS`),
    which the log renderer applies to every line. A value is also matched in its
    percent-encoded form, as it appears in a URL or a form body.
    """

    def __init__(self) -> None:
        self._by_owner: dict[str, frozenset[str]] = {}
        #: Each value by its first MIN_SECRET_LENGTH characters: a text is scanned once, window
        #: by window, however many integrations the process holds.
        self._by_prefix: dict[str, list[str]] | None = None

    def add(self, *values: object, owner: str = "") -> None:
        """Remember ``values`` (strings; others and short ones are ignored) under ``owner``."""
        found = set(self._by_owner.get(owner, ()))
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                found.update({value, quote(value, safe="")})
        self._by_owner[owner] = frozenset(found)
        self._by_prefix = None

    def replace(self, owner: str, values: Iterable[object]) -> None:
        """``owner``'s secrets are now ``values`` (new credentials replace the old ones)."""
        self._by_owner.pop(owner, None)
        self.add(*values, owner=owner)

    def forget(self, owner: str) -> None:
        self._by_owner.pop(owner, None)
        self._by_prefix = None

    def __contains__(self, value: object) -> bool:
        return any(value in values for values in self._by_owner.values())

    def _index(self) -> dict[str, list[str]]:
        if self._by_prefix is None:
            index: dict[str, list[str]] = {}
            for value in {v for values in self._by_owner.values() for v in values}:
                index.setdefault(value[:MIN_SECRET_LENGTH], []).append(value)
            for candidates in index.values():
                candidates.sort(key=len, reverse=True)  # a value that contains another goes first
            self._by_prefix = index
        return self._by_prefix

    def scrub(self, text: str) -> str:
        if not self._by_owner or len(text) < MIN_SECRET_LENGTH:
            return text
        index = self._index()
        if not index:
            return text
        found = {v for i in range(len(text) - MIN_SECRET_LENGTH + 1)
                 for v in index.get(text[i:i + MIN_SECRET_LENGTH], ()) if text.startswith(v, i)}
        for value in sorted(found, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        return text


#: Every integration's secret values, registered by the engine when it builds a connector:
#: whatever a platform echoes back (an error that quotes the token) is masked in every line.
KNOWN_SECRETS = SecretValues()


def is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("_", "").replace("-", "")
    if name in _NOT_SECRET_KEYS:
        return False
    return name.endswith("key") or any(part in name for part in _SECRET_KEY_PARTS)


def _mask_string(value: str) -> str:
    value = KNOWN_SECRETS.scrub(value)
    for pattern, replacement in _TOKEN_PATTERNS:
        value = pattern.sub(replacement, value)
    return value


def _redact(value: Any) -> Any:
    # New containers are built rather than mutated: the event may hold the caller's objects.
    if isinstance(value, str):
        return _mask_string(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {k: _redact_item(k, v) for k, v in value.items()}
    if isinstance(value, (list, set, frozenset)):
        return [_redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact(v) for v in value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    # The renderer would fall back to repr() anyway; doing it here lets the repr of an
    # exception, URL or request (which can embed a token) be masked first.
    return _mask_string(repr(value))


def _redact_item(key: object, value: Any) -> Any:
    if is_secret_key(key) and value is not None and value != "":
        return REDACTED
    return _redact(value)


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and token-shaped strings, recursively."""
    return _redact(event_dict)


def bind(**kw: Any) -> None:
    """Bind context (``integration_id``, ``chat_id``, ``platform``...) to the current task."""
    structlog.contextvars.bind_contextvars(**kw)


def unbind(*keys: str) -> None:
    """Remove keys bound with :func:`bind` from the current task's context."""
    structlog.contextvars.unbind_contextvars(*keys)


def bound(**kw: Any) -> AbstractContextManager[None]:
    """Bind context for the duration of a ``with`` block, restoring the previous values after."""
    return structlog.contextvars.bound_contextvars(**kw)


#: Libraries whose INFO lines are per-request chatter (httpx logs every request); they speak
#: at WARNING unless the operator asks for DEBUG.
_CHATTY_LOGGERS = ("httpx", "httpcore")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time, not at configuration time.

    Test runners and CLI harnesses swap ``sys.stderr`` after logging was configured; a handler
    holding the old (possibly closed) stream would lose those lines.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ValueError(
            f"unknown log level {level!r}; use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
        )
    return number


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and stdlib logging to stderr as JSON lines (or console text).

    Called once by the daemon and the CLI (``SYNCD_LOG_LEVEL``, ``SYNCD_LOG_FORMAT``);
    calling it again replaces the previous configuration instead of adding handlers.
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format {fmt!r}; use 'json' or 'console'")
    number = _level_number(level)

    # Shared by structlog events and foreign (stdlib) records, before the formatter renders.
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # A plain traceback, because redaction has already turned the exception into text.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: tests reconfigure logging (and use capture_logs) after module-level
        # loggers were first used; the lookup this saves is negligible next to I/O.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Last before rendering, so tracebacks and foreign records are masked too.
            redact_secrets,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)

    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(number if number <= logging.DEBUG else logging.WARNING)
    # uvicorn's own loggers must propagate to the root handler at the root's level, even if
    # an earlier uvicorn.Config in this process (a simulator, a test) installed its own setup.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.setLevel(logging.NOTSET)
        uvicorn_logger.propagate = True
        uvicorn_logger.disabled = False

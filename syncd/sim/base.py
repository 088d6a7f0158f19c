"""What every simulator shares: fault injection, a way to serve one over real HTTP, and what
``syncd sim <platform>`` asks of one to run it for a trial (``Trial``).

A simulator asks ``Faults.check(endpoint)`` at the start of every API call and, when it gets a
``Fault`` back, answers in its platform's own error format (Slack: 429 + ``Retry-After`` with
``{"ok": false, "error": "ratelimited"}``; Gmail: 429/5xx with a Google error body). Faults
come from a standing ``FaultPlan`` (every Nth call, or a probability, per endpoint) or are
scripted one by one with ``fail_next`` so a test can say exactly which call fails.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

FaultKind = Literal["rate_limit", "server_error"]


@dataclass(frozen=True)
class Fault:
    """One injected failure: the simulator renders it in its platform's format."""

    kind: FaultKind
    status: int
    retry_after_s: int | None = None


@dataclass
class FaultPlan:
    """Standing faults. ``0`` disables a knob; ``endpoints`` ``None`` means every endpoint."""

    rate_limit_every: int = 0
    rate_limit_probability: float = 0.0
    retry_after_s: int = 1
    #: When set, each 429's Retry-After is drawn from ``retry_after_s..retry_after_max_s``.
    retry_after_max_s: int | None = None
    server_error_every: int = 0
    server_error_probability: float = 0.0
    server_error_status: int = 503
    #: When set, each server error's status is drawn from these instead.
    server_error_statuses: tuple[int, ...] = ()
    latency_s: float = 0.0
    endpoints: frozenset[str] | None = None


@dataclass
class Faults:
    """Decides, per call, whether an endpoint fails; counts calls per endpoint."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    seed: int = 0
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._scripted: dict[str, deque[Fault]] = {}

    def fail_next(
        self,
        endpoint: str,
        kind: FaultKind = "rate_limit",
        *,
        times: int = 1,
        retry_after_s: int = 1,
        status: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``endpoint`` fail (before the standing plan)."""
        if kind == "rate_limit":
            fault = Fault("rate_limit", status or 429, retry_after_s)
        else:
            fault = Fault("server_error", status or 503)
        self._scripted.setdefault(endpoint, deque()).extend([fault] * times)

    def reset(self) -> None:
        self.plan = FaultPlan()
        self._scripted.clear()
        self.calls.clear()

    async def check(self, endpoint: str) -> Fault | None:
        """Count a call of ``endpoint``, apply latency, and say whether it must fail."""
        self.calls[endpoint] += 1
        plan = self.plan
        applies = plan.endpoints is None or endpoint in plan.endpoints
        if applies and plan.latency_s > 0:
            await asyncio.sleep(plan.latency_s)
        scripted = self._scripted.get(endpoint)
        if scripted:
            return scripted.popleft()
        if not applies:
            return None
        n = self.calls[endpoint]
        if (plan.rate_limit_every and n % plan.rate_limit_every == 0) or (
            plan.rate_limit_probability and self._random.random() < plan.rate_limit_probability
        ):
            wait = plan.retry_after_s
            if plan.retry_after_max_s is not None:
                wait = self._random.randint(plan.retry_after_s, plan.retry_after_max_s)
            return Fault("rate_limit", 429, wait)
        if (plan.server_error_every and n % plan.server_error_every == 0) or (
            plan.server_error_probability and self._random.random() < plan.server_error_probability
        ):
            statuses = plan.server_error_statuses
            return Fault("server_error", self._random.choice(statuses) if statuses else plan.server_error_status)
        return None


class Trial:
    """What ``syncd sim <platform>`` asks a simulator: sample data, the credentials that make an
    integration against it, where its API roots are, and a chat the app can write to. Each
    simulator answers for itself, so the command knows no platform."""

    #: Base-URL key (``SYNCD_<KEY>_BASE_URL``) -> the path under the simulator's URL where
    #: that API root is served.
    trial_roots: ClassVar[dict[str, str]] = {}

    def trial_seed(self) -> str:
        """Put sample data in the simulator; says what it made."""
        return "no history: its messages are seen as they arrive"

    def trial_credentials(self) -> dict[str, Any]:
        """The credentials of ``POST /integrations`` that this simulator accepts."""
        raise NotImplementedError

    def trial_chat(self) -> str | None:
        """An external chat id the app can send to once seeded (None: none to suggest)."""
        return None

    def trial_inbound(self, text: str) -> None:
        """Someone writes ``text`` into the seeded trial chat, at the platform only: no webhook
        is sent, so only a poll can find it. Simulators of platforms that poll answer this."""
        raise NotImplementedError(f"{type(self).__name__} cannot write a message without a delivery")

    def trial_delivery(self, n: int) -> Any | None:
        """After ``trial_seed``: new inbound message number ``n`` (a distinct message for each
        ``n``, from someone other than the account), as the platform posts it to the trial
        integration's webhook: an object with the raw ``body``, its ``headers`` and, where the
        platform signs a query, ``query``. The message exists at the platform from this call
        on (a delivery that only announces a change makes syncd read it), so a caller builds
        each delivery when it is due. None: this simulator builds none (the benchmarks say so
        instead of measuring it)."""
        return None

    def trial_webhook(self, created: dict[str, Any]) -> str:
        """The trial integration was created with ``created`` (the answer of ``POST
        /integrations``): where the platform posts its deliveries. Its ``webhookUrl``, unless
        the platform is given another URL to paste (a plugin URL carrying a secret syncd
        generated); a simulator that signs the URL called keeps it for ``trial_delivery``."""
        return str(created["integration"]["webhookUrl"])

    def trial_history(self, chats: int, messages: int) -> int | None:
        """History to import: ``chats`` chats of ``messages`` messages each from other people
        (fewer where the platform serves fewer); returns how many messages an import can read.
        None: this simulator seeds none (the benchmarks say so instead of measuring it)."""
        return None

    def trial_base_urls(self, url: str) -> dict[str, str]:
        """``SYNCD_<KEY>_BASE_URL`` values that point syncd at this simulator served at ``url``."""
        return {key: url.rstrip("/") + path for key, path in self.trial_roots.items()}


class ServerThread:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a background thread.

    For clients that need a real socket (official SDKs with their own HTTP stacks)::

        with ServerThread(sim) as server:
            WebClient(base_url=server.url + "/api/")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1"):
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Binding port 0 here, and handing uvicorn the socket, avoids a free-port race.
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self, timeout_s: float = 10.0) -> ServerThread:
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > timeout_s:
                raise RuntimeError("simulator server did not start")
            threading.Event().wait(0.01)
            waited += 0.01
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

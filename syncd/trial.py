"""``syncd sim <platform>``: one built-in simulator served on its own, seeded, for a trial of
``syncd run`` against it. Everything printed comes from the simulator (``syncd.sim.base.Trial``):
its sample data, its credentials, its API roots and a chat the app can write to."""

from __future__ import annotations

import json
import shlex
import socket
from typing import Any

from syncd import providers

#: Where ``syncd sim`` listens unless told otherwise (``syncd run`` takes 8080).
DEFAULT_PORT = 8090


class TrialError(Exception):
    """What stops a simulator from starting, said in one line."""


def simulators() -> list[str]:
    """The platforms that ship a simulator (discovered, not listed)."""
    return [p for p in providers.folders() if getattr(providers.part(p, "sim"), "SIMULATOR", None) is not None]


def make(platform: str, *, seed: bool = True) -> tuple[Any, str]:
    """A new simulator of ``platform`` and what its seeding made."""
    try:
        sim = providers.simulator(platform)
    except KeyError:
        raise TrialError(f"no simulator for platform {platform!r}; simulators ship for: "
                         f"{', '.join(simulators())}") from None
    return sim, (sim.trial_seed() if seed else "not seeded")


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TrialError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port") from None
    return sock


def instructions(platform: str, sim: Any, url: str, seeded: str, *, customer: str = "cust-1") -> str:
    """What to do next, in order: the variables, the integration, a message from the app."""
    env = {f"SYNCD_{key.upper()}_BASE_URL": root for key, root in sim.trial_base_urls(url).items()}
    credentials = json.dumps(sim.trial_credentials(), separators=(",", ":"))
    lines = [
        f"{platform} simulator on {url} ({seeded})",
        "",
        "1. Start syncd with these variables. syncd reads them once, when it starts: set them",
        "   before `syncd run` (a daemon that is already running must be restarted, and with",
        "   SYNCD_MONGODB_URI=mongomock:// a restart forgets every integration).",
        *(f"     export {name}={shlex.quote(value)}" for name, value in env.items()),
        "     syncd run",
        "",
        "2. Create the integration (the import starts at once):",
        f"     syncd integrations create --platform {platform} --customer {customer} \\",
        f"       --credentials {shlex.quote(credentials)} --wait",
    ]
    chat = sim.trial_chat()
    if chat is not None:
        lines += ["", "3. Send a message from the app (needs SYNCD_APP_WEBHOOK_SECRET set for both):",
                  (f"     syncd events send --platform {platform} --customer {customer} "
                   f"--chat {shlex.quote(chat)} --text 'hello from the app'")]
    lines += ["", "Ctrl-C stops the simulator."]
    return "\n".join(lines)


def serve(sim: Any, sock: socket.socket) -> None:
    """Serve ``sim`` on ``sock`` until Ctrl-C."""
    import uvicorn

    config = uvicorn.Config(sim, log_level="warning", lifespan="off", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()

"""The trial path: every shipped simulator says, by itself, how to make an integration against
it, and what it says works; ``syncd sim`` prints it and serves the simulator for ``syncd run``."""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
import subprocess
import sys
import time

import httpx
import pytest
from e2esupport import DaemonProcess

from syncd import trial
from syncd.cli import main
from syncd.testbed import Testbed

ADMIN_TOKEN = "e2e-trial-admin-token-0123456789"
APP_SECRET = "e2e-trial-app-secret-0123456789"


@pytest.mark.parametrize("platform", trial.simulators())
async def test_a_seeded_simulator_s_trial_credentials_import_and_take_an_app_message(platform):
    sim, seeded = trial.make(platform)
    tb = await Testbed.start(sims={platform: sim})
    try:
        integration = await tb.create(platform, sim.trial_credentials())
        assert integration["status"] == "active", seeded
        statuses = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
        assert all(s["phase"] == "done" for s in statuses), statuses
        chat = sim.trial_chat()
        if chat is not None:
            event = {"id": "evt-trial", "type": "message.created", "customerId": "cust-1", "platform": platform,
                     "externalChatId": chat, "message": {"id": "app-trial", "text": "hello from the app"}}
            assert (await tb.post_event(event)).status_code == 202
            await tb.settle()
            item = await tb.daemon.store.find_outbox("cust-1", "evt-trial")
            assert item.status == "sent", item.error
    finally:
        await tb.stop()


async def _maintained(integration_id: str) -> None:
    """Until the integration's first maintenance run (a subscription, a manifest) is over."""
    while any(t.get_name() == f"maintain:{integration_id}" and not t.done() for t in asyncio.all_tasks()):
        await asyncio.sleep(0.01)


async def _stored(tb: Testbed, integration: dict) -> int:
    return sum([len(await tb.messages(chat["id"])) for chat in (await tb.chats(integration)).values()])


@pytest.mark.parametrize("platform", ["gmail", "teams", "socialhub"])
async def test_each_trial_delivery_is_accepted_and_stores_one_new_message_once(platform):
    """What the pipeline benchmark sends: signed as the platform signs, each delivery a new message."""
    sim, _ = trial.make(platform)
    tb = await Testbed.start(sims={platform: sim})
    try:
        created = (await tb.api.post("/integrations", json={
            "platform": platform, "customerId": "cust-1", "credentials": sim.trial_credentials()})).json()
        integration = created["integration"]
        await tb.wait_imported(integration["id"])
        await _maintained(integration["id"])
        url, before = sim.trial_webhook(created), await _stored(tb, integration)
        deliveries = [sim.trial_delivery(n) for n in range(3)]
        for delivery in [*deliveries, deliveries[0]]:  # the last one again: a redelivery
            query = getattr(delivery, "query", "")
            answer = await tb.api.post(url + (f"?{query}" if query else ""), content=delivery.body,
                                       headers=delivery.headers)
            assert answer.is_success, answer.text
            await tb.settle()
        assert await _stored(tb, integration) - before == 3
    finally:
        await tb.stop()


def test_an_unknown_platform_names_the_simulators_that_ship(capsys):
    assert main(["sim", "no-such-platform"]) == 2
    error = capsys.readouterr().err
    assert "no simulator for platform 'no-such-platform'" in error and "slack" in error


def test_a_port_in_use_is_one_clear_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["sim", "slack", "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "--port" in error


@pytest.fixture(scope="module")
def sim_process():
    """``syncd sim slack --port 0`` as a user runs it; yields what it printed first."""
    process = subprocess.Popen([sys.executable, "-m", "syncd.cli", "sim", "slack", "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C"):
            break
    yield "".join(lines)
    process.terminate()
    process.wait(timeout=10)


def test_the_printed_steps_take_syncd_from_nothing_to_an_import_and_an_export(sim_process, tmp_path, capsys):
    env = dict(re.findall(r"export (SYNCD_\w+_BASE_URL)=(\S+)", sim_process))
    assert "SYNCD_SLACK_BASE_URL" in env
    credentials = shlex.split(re.search(r"--credentials (.+) --wait", sim_process)[1])[0]
    chat = re.search(r"--chat (\S+)", sim_process)[1]
    daemon = DaemonProcess(tmp_path, SYNCD_ADMIN_TOKEN=ADMIN_TOKEN, SYNCD_APP_WEBHOOK_SECRET=APP_SECRET, **env)
    try:
        daemon.wait_healthy()
        api = ["--api", daemon.url]
        assert main(["integrations", "create", "--platform", "slack", "--customer", "cust-1",
                     "--credentials", credentials, "--wait", "--timeout", "60", *api, "--token", ADMIN_TOKEN]) == 0
        assert main(["events", "send", "--platform", "slack", "--customer", "cust-1", "--chat", chat,
                     "--text", "hello from the app", "--id", "evt-1", "--secret", APP_SECRET, *api]) == 0
        assert "event evt-1: queued" in capsys.readouterr().out

        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        [stored] = [c for c in httpx.get(daemon.url + "/chats", params={"customerId": "cust-1"},
                                         headers=admin).json()["chats"] if c["externalChatId"] == chat]

        def sent() -> bool:
            messages = httpx.get(f"{daemon.url}/chats/{stored['id']}/messages", headers=admin).json()["messages"]
            return any(m["text"] == "hello from the app" and m["externalMessageId"] for m in messages)

        deadline = time.monotonic() + 30
        while not sent():
            assert time.monotonic() < deadline, "the app's message never reached the simulator"
            time.sleep(0.2)
        assert main(["deadletters", "list", *api, "--token", ADMIN_TOKEN]) == 0
        assert capsys.readouterr().out.strip() == "no dead letters"
    finally:
        assert daemon.terminate() == 0, daemon.stderr()

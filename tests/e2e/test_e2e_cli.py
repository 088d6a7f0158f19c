"""The command line against a running ``syncd run`` whose Slack is the simulator, served over
real HTTP: create, list, status and a full resync, as an operator types them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from e2esupport import DaemonProcess

from syncd.cli import main, parser
from syncd.providers.slack.sim import SlackSimulator
from syncd.sim.base import ServerThread

ADMIN_TOKEN = "e2e-cli-admin-token-0123456789"


@pytest.fixture(scope="module")
def slack():
    sim = SlackSimulator()
    sim.seed_workspace()
    with ServerThread(sim) as server:
        yield sim, server.url


@pytest.fixture(scope="module")
def syncd(slack, tmp_path_factory):
    _, slack_url = slack
    daemon = DaemonProcess(tmp_path_factory.mktemp("cli"), SYNCD_ADMIN_TOKEN=ADMIN_TOKEN,
                           SYNCD_SLACK_BASE_URL=slack_url)
    try:
        daemon.wait_healthy()
        yield daemon
    finally:
        assert daemon.terminate() == 0, daemon.stderr()


def run(capsys, syncd, *argv: str) -> tuple[int, str]:
    """One CLI command against the running daemon; (exit code, stdout)."""
    code = main([*argv, "--api", syncd.url, "--token", ADMIN_TOKEN])
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def created(slack, syncd):
    """The integration ``syncd integrations create --wait`` made (run once, as a subprocess)."""
    sim, _ = slack
    credentials = json.dumps({"botToken": next(iter(sim.valid_tokens)), "signingSecret": sim.signing_secret})
    result = subprocess.run(
        [sys.executable, "-m", "syncd.cli", "integrations", "create", "--platform", "slack", "--customer",
         "cust-cli", "--name", "Sim workspace", "--credentials", credentials, "--wait", "--timeout", "60",
         "--api", syncd.url], env={**syncd.env, "SYNCD_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True, text=True, timeout=90)
    return result


def test_integrations_create_wait_imports_and_prints_the_webhook_url(created, syncd) -> None:
    assert created.returncode == 0, created.stderr
    first = created.stdout.splitlines()[0]
    assert first.startswith("created ") and "/webhooks/slack/" in first
    assert "phase" in created.stdout and "done" in created.stdout
    assert ADMIN_TOKEN not in created.stdout + created.stderr


def test_integrations_list_and_status_show_the_integration(created, syncd, capsys) -> None:
    integration_id = created.stdout.split()[1].rstrip(";")

    code, listed = run(capsys, syncd, "integrations", "list", "--customer", "cust-cli")
    assert code == 0
    header, line = listed.splitlines()
    assert header.split() == ["id", "platform", "customer", "status", "name"]
    assert line.split()[:4] == [integration_id, "slack", "cust-cli", "active"]

    code, status = run(capsys, syncd, "status", integration_id)
    assert code == 0
    assert status.splitlines()[0] == f"slack integration {integration_id} (active)"
    rows = [line.split() for line in status.splitlines()[2:] if not line.startswith(("inbox:", "full sync"))]
    assert [row[1] for row in rows] == ["done"] * 5  # the integration and its four chats
    assert "full sync every 86400s" in status


def test_resync_full_wait_rereads_every_chat(created, syncd, capsys) -> None:
    integration_id = created.stdout.split()[1].rstrip(";")

    code, out = run(capsys, syncd, "resync", integration_id, "--full", "--wait", "--timeout", "60")

    assert code == 0
    assert out.splitlines()[0] == "resync queued for 4 chats (full=True)"
    assert "error" not in out.split("\n", 2)[2]


def test_pause_resume_and_delete_with_purge(created, syncd, capsys) -> None:
    integration_id = created.stdout.split()[1].rstrip(";")

    code, out = run(capsys, syncd, "integrations", "pause", integration_id, "--reason", "billing hold")
    assert (code, out.strip()) == (0, f"{integration_id} is paused: billing hold")
    code, status = run(capsys, syncd, "status", integration_id)
    assert status.splitlines()[0].endswith("(paused)") and "billing hold" in status.splitlines()[1]
    code, out = run(capsys, syncd, "integrations", "resume", integration_id)
    assert (code, out.strip()) == (0, f"{integration_id} is active")

    code, out = run(capsys, syncd, "integrations", "delete", integration_id, "--purge")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"deleted {integration_id}; disconnect at the platform: done"
    assert lines[1].startswith("  remove by hand: ") and "Event Subscriptions" in lines[1]
    assert lines[2].startswith("purged: chats=4, messages=")


def test_a_wrong_admin_token_exits_non_zero_with_the_api_error(syncd) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syncd.cli", "integrations", "list", "--api", syncd.url, "--token", "wrong"],
        capture_output=True, text=True, timeout=30, env=syncd.env)

    assert result.returncode != 0
    assert "401" in result.stderr and "missing or wrong bearer token" in result.stderr


def test_an_unknown_integration_exits_non_zero_with_not_found(syncd, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        run(capsys, syncd, "status", "no-such-integration")

    assert "404" in str(exited.value.code) and "not_found" in str(exited.value.code)


@pytest.mark.parametrize("argv", [
    [], ["run"], ["demo"], ["resync"], ["status"], ["integrations"],
    ["integrations", "list"], ["integrations", "show"], ["integrations", "create"], ["integrations", "delete"],
    ["integrations", "pause"], ["integrations", "resume"],
    ["sim"], ["events", "send"], ["deadletters"], ["deadletters", "list"], ["deadletters", "retry"],
])
def test_every_command_has_help(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([*argv, "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: syncd")

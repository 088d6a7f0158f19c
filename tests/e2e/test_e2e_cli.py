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


def _integration_id(created) -> str:
    return created.stdout.split()[1].rstrip(";")


def test_chats_list_shows_the_imported_chats_by_integration_and_by_customer(created, syncd, capsys) -> None:
    integration_id = _integration_id(created)

    code, table = run(capsys, syncd, "chats", "list", "--integration", integration_id)
    assert code == 0
    header, *rows = table.splitlines()
    assert header.split()[:5] == ["id", "platform", "kind", "external", "id"]
    assert len(rows) == 4 and all(row.split()[1] == "slack" for row in rows)

    code, out = run(capsys, syncd, "chats", "list", "--customer", "cust-cli", "--json")
    chats = json.loads(out)["chats"]
    assert code == 0 and {c["id"] for c in chats} == {row.split()[0] for row in rows}
    assert {c["integrationId"] for c in chats} == {integration_id}


def test_messages_list_pages_a_chat_named_by_the_platform_s_id(created, syncd, capsys) -> None:
    integration_id = _integration_id(created)
    _, out = run(capsys, syncd, "chats", "list", "--integration", integration_id, "--json")
    listed = []
    for candidate in json.loads(out)["chats"]:
        code, out = run(capsys, syncd, "messages", "list", "--chat", candidate["id"], "--all", "--limit", "1", "--json")
        assert code == 0 and json.loads(out)["nextCursor"] is None
        listed.append((len(json.loads(out)["messages"]), candidate, json.loads(out)))
    _, chat, every = max(listed, key=lambda found: found[0])
    assert len(every["messages"]) >= 3

    code, table = run(capsys, syncd, "messages", "list", "--chat", chat["externalChatId"],
                      "--integration", integration_id, "--limit", "2")
    assert code == 0
    header, first, second, more = table.splitlines()
    assert header.split() == ["sent", "direction", "sender", "external", "id", "text"]
    assert first.startswith(every["messages"][0]["sentAt"]) and second.startswith(every["messages"][1]["sentAt"])
    cursor = more.removeprefix("more: --cursor ")

    code, out = run(capsys, syncd, "messages", "list", "--chat", chat["id"], "--cursor", cursor, "--limit", "500",
                    "--json")
    rest = json.loads(out)["messages"]
    assert code == 0 and [m["id"] for m in rest] == [m["id"] for m in every["messages"][2:]]


@pytest.mark.parametrize(("argv", "expected"), [
    (["chats", "list", "--integration", "no-such-integration"], "404 not_found"),
    (["messages", "list", "--chat", "no-such-chat"], "404 not_found"),
    (["messages", "list", "--chat", "no-such-chat", "--customer", "cust-cli"],
     "no chat 'no-such-chat' among customer cust-cli's chats"),
    (["messages", "list", "--chat", "x", "--cursor", "not-a-cursor"], "404 not_found"),
])
def test_chats_and_messages_of_nothing_exit_with_the_reason(argv, expected, created, syncd, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        run(capsys, syncd, *argv)

    assert expected in str(exited.value.code)


def test_a_cursor_syncd_did_not_hand_out_is_a_400(created, syncd, capsys) -> None:
    _, out = run(capsys, syncd, "chats", "list", "--integration", _integration_id(created), "--json")
    chat_id = json.loads(out)["chats"][0]["id"]

    with pytest.raises(SystemExit) as exited:
        run(capsys, syncd, "messages", "list", "--chat", chat_id, "--cursor", "not-a-cursor")

    assert str(exited.value.code) == "error: 400 bad_request: invalid cursor"


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
    ["chats"], ["chats", "list"], ["messages"], ["messages", "list"],
])
def test_every_command_has_help(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([*argv, "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: syncd")

"""``syncd run`` as an operator runs it: a real process that serves, logs JSON without secrets,
stops cleanly on SIGTERM, and refuses a configuration that cannot work."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from e2esupport import DaemonProcess

ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"


def test_syncd_run_serves_until_sigterm_then_exits_zero_with_json_logs_and_no_secrets(tmp_path) -> None:
    daemon = DaemonProcess(tmp_path, SYNCD_ADMIN_TOKEN=ADMIN_TOKEN, SYNCD_LOG_FORMAT="json")
    try:
        daemon.wait_healthy()
        ready = httpx.get(daemon.url + "/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["workers"] is True
        listed = httpx.get(daemon.url + "/integrations", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert listed.status_code == 200 and listed.json() == {"integrations": []}
    finally:
        code = daemon.terminate()

    stderr = daemon.stderr()
    assert code == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "syncd started" in events and events[-1] == "syncd stopped"
    assert all({"timestamp", "level", "event"} <= set(line) for line in lines)
    assert ADMIN_TOKEN not in stderr


def test_syncd_run_with_a_real_mongodb_uri_and_no_secret_key_refuses_to_start(tmp_path) -> None:
    daemon = DaemonProcess(tmp_path, SYNCD_MONGODB_URI="mongodb://mongo.invalid:27017/syncd",
                           SYNCD_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        code = daemon.process.wait(timeout=30)
    finally:
        daemon.terminate()

    assert code != 0
    assert "SYNCD_SECRET_KEY is required" in daemon.stderr()


def test_syncd_run_with_a_wrong_mapping_file_names_the_file_and_field_and_exits_non_zero(tmp_path) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    original = (Path(__file__).resolve().parents[2] / "mappings" / "slack.yaml").read_text()
    (mappings / "slack.yaml").write_text(original.replace("text: {path: text}", "text: {path: text, transform: shout}", 1))
    daemon = DaemonProcess(tmp_path, SYNCD_MAPPINGS_DIR=str(mappings), SYNCD_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        code = daemon.process.wait(timeout=30)
    finally:
        daemon.terminate()

    stderr = daemon.stderr()
    assert code != 0
    assert "slack.yaml" in stderr and "message.text" in stderr and "shout" in stderr
    assert "Traceback" not in stderr


def test_syncd_run_with_an_unreachable_mongodb_exits_non_zero_saying_so(tmp_path) -> None:
    uri = "mongodb://syncd:hunter2-db-password@127.0.0.1:1/syncd?serverSelectionTimeoutMS=300"
    daemon = DaemonProcess(tmp_path, SYNCD_MONGODB_URI=uri, SYNCD_SECRET_KEY="k" * 32, SYNCD_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        code = daemon.process.wait(timeout=30)
    finally:
        daemon.terminate()

    stderr = daemon.stderr()
    assert code != 0
    assert "cannot reach MongoDB" in stderr and "Traceback" not in stderr
    assert "hunter2-db-password" not in stderr


def test_syncd_help_lists_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "syncd.cli", "--help"], capture_output=True, text=True, timeout=30)

    assert result.returncode == 0
    for command in ("run", "demo", "resync", "status", "integrations"):
        assert command in result.stdout


def test_a_bad_setting_is_one_line_per_problem_and_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "syncd.cli", "run", "--mongodb-uri", "postgres://x/y"],
                            capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin", "SYNCD_POLL_INTERVAL_S": "soon"})

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines == [
        "error: SYNCD_MONGODB_URI: Value error, must start with mongodb://, mongodb+srv:// or mongomock:// "
        "(got postgres)",
        "error: SYNCD_POLL_INTERVAL_S: Input should be a valid number, unable to parse string as a number",
    ]


def test_an_unreachable_mongodb_fails_within_its_timeout_with_the_whole_reason(tmp_path) -> None:
    daemon = DaemonProcess(tmp_path, SYNCD_MONGODB_URI="mongodb://127.0.0.1:1/syncd", SYNCD_MONGODB_TIMEOUT_S="0.5",
                           SYNCD_SECRET_KEY="k" * 32, SYNCD_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        code = daemon.process.wait(timeout=30)
    finally:
        daemon.terminate()

    [error] = [line for line in daemon.stderr().splitlines() if line.startswith("error:")]
    assert code != 0
    assert error.startswith("error: cannot reach MongoDB within 0.5s (SYNCD_MONGODB_TIMEOUT_S)")
    assert "Connection refused" in error and error.rstrip().endswith(")")


def test_a_port_in_use_stops_the_start_before_anything_says_started(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = DaemonProcess(tmp_path, SYNCD_ADMIN_TOKEN=ADMIN_TOKEN, SYNCD_HTTP_PORT=str(port))
        try:
            code = daemon.process.wait(timeout=30)
        finally:
            daemon.terminate()

    stderr = daemon.stderr()
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in stderr and "SYNCD_HTTP_PORT" in stderr
    assert "syncd started" not in stderr and "Traceback" not in stderr


def test_missing_secrets_are_named_at_start_with_what_will_not_work(tmp_path) -> None:
    daemon = DaemonProcess(tmp_path)
    try:
        daemon.wait_healthy()
    finally:
        assert daemon.terminate() == 0
    events = [json.loads(line)["event"] for line in daemon.stderr().splitlines() if line.startswith("{")]
    assert any(e.startswith("SYNCD_ADMIN_TOKEN is not set: the admin API") for e in events)
    assert any(e.startswith("SYNCD_APP_WEBHOOK_SECRET is not set: POST /events") for e in events)
    assert any("in-memory store" in e for e in events)

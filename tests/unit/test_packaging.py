"""The container and CI files say what an operator relies on (no docker engine runs here)."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_the_image_runs_the_daemon_as_a_non_root_user_with_a_healthcheck():
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in steps if instruction == "USER"]
    assert users == ["10001"]  # numeric, so Kubernetes can check runAsNonRoot
    assert any("useradd --system --uid 10001" in args for instruction, args in steps if instruction == "RUN")
    assert ("EXPOSE", "8080") in steps
    (healthcheck,) = [args for instruction, args in steps if instruction == "HEALTHCHECK"]
    assert "http://127.0.0.1:8080/healthz" in healthcheck and "urllib.request" in healthcheck
    assert "curl" not in healthcheck, "python:3.11-slim ships no curl"
    assert steps[-1] == ("CMD", '["syncd", "run"]')
    # The user switch comes before the command, so nothing runs as root at runtime.
    order = [instruction for instruction, _ in steps]
    assert order.index("USER") < order.index("CMD")


def test_the_image_installs_the_project_and_ships_the_mappings():
    steps = _dockerfile()
    copies = [args for instruction, args in steps if instruction == "COPY"]
    for source in ("pyproject.toml", "README.md", "syncd/", "mappings/"):
        assert any(args.split()[0] == source for args in copies), source
    assert any("pip install" in args for instruction, args in steps if instruction == "RUN")
    envs = " ".join(args for instruction, args in steps if instruction == "ENV")
    # The install ships the mappings; pointing SYNCD_MAPPINGS_DIR at them again defines each
    # platform twice, which stops the start.
    assert "SYNCD_MAPPINGS_DIR" not in envs
    assert ("WORKDIR", "/app") in steps


def test_the_image_installs_the_locked_dependencies_checked_by_hash():
    steps = _dockerfile()
    copies = [args for instruction, args in steps if instruction == "COPY"]
    runs = [args for instruction, args in steps if instruction == "RUN"]
    # tests/unit/test_requirements_lock.py keeps the lock in step with pyproject.toml.
    assert "requirements.lock ./" in copies
    assert "pip install --require-hashes -r requirements.lock" in runs
    assert any("pip install --no-deps ." in args for args in runs)
    assert runs.index("pip install --require-hashes -r requirements.lock") < next(
        i for i, args in enumerate(runs) if "pip install --no-deps ." in args)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["syncd"] == "syncd.cli:main", "CMD runs the console script"


def test_compose_runs_syncd_against_a_healthy_mongodb_with_a_durable_volume():
    compose = _compose()
    syncd, mongo = compose["services"]["syncd"], compose["services"]["mongo"]

    assert syncd["build"] == "."
    assert "8080:8080" in syncd["ports"]
    assert syncd["environment"]["SYNCD_MONGODB_URI"].startswith("mongodb://syncd:${SYNCD_MONGO_PASSWORD:?")
    assert syncd["environment"]["SYNCD_MONGODB_URI"].endswith("@mongo:27017/syncd?authSource=admin&replicaSet=rs0")
    assert syncd["depends_on"] == {"mongo": {"condition": "service_healthy"}}

    assert mongo["image"] == "mongo:7"
    assert "mongo-data:/data/db" in mongo["volumes"]
    assert "mongo-data" in compose["volumes"]
    test = mongo["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and test[1].startswith("mongosh")
    assert "rs.status().ok" in test[1] and "rs.initiate" in test[1]


def test_compose_refuses_to_start_without_the_secrets():
    env = _compose()["services"]["syncd"]["environment"]
    for name in ("SYNCD_ADMIN_TOKEN", "SYNCD_APP_WEBHOOK_SECRET", "SYNCD_SECRET_KEY"):
        assert re.fullmatch(rf"\$\{{{name}:\?.+\}}", env[name]), env[name]
    # No secret has a default baked into the file.
    assert not any(":-" in str(value) for key, value in env.items() if "SECRET" in key)


def test_the_docker_build_context_leaves_out_local_state():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", "tests", ".env"):
        assert entry in ignored


def test_ci_installs_like_the_readme_and_fails_on_failing_or_missing_tests():
    script = ROOT / ".ci" / "run"
    text = script.read_text(encoding="utf-8")
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert "python3 -m venv" in text
    assert 'pip install -e ".[test]"' in text
    commands = [
        shlex.split(line)[:3] for line in text.splitlines() if line.strip().startswith("python -m")
    ]
    assert ["python", "-m", "pytest"] in commands


def test_git_ignores_virtualenvs_caches_and_build_output():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for entry in (".venv/", "__pycache__/", ".pytest_cache/", "*.egg-info/", "build/", "dist/"):
        assert entry in ignored

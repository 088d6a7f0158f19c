#!/usr/bin/env bash
# Regenerates requirements.lock, the container image's pinned dependencies (pyproject's runtime
# dependencies and the `fast` extras, every file hash included), from PyPI.
# Run it after changing dependencies in pyproject.toml; tests/unit/test_requirements_lock.py
# fails until the lock matches them again.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet pip-tools
# This machine's pip configuration (local mirrors, constraints) must not shape a lock that the
# image build checks against PyPI's files.
PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="deploy/lock-requirements.sh" \
    "$tools/venv/bin/pip-compile" --quiet --upgrade --extra fast --generate-hashes --strip-extras \
    --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
    --output-file requirements.lock pyproject.toml
echo "requirements.lock: $(grep -c '==' requirements.lock) packages pinned"

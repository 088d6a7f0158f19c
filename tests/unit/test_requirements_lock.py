"""requirements.lock (the image's pinned dependencies) stays in step with pyproject.toml: every
runtime dependency and `fast` extra is pinned there, to a version its specifier allows, with the
hashes the image build checks. deploy/lock-requirements.sh regenerates it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
#: The image's platform, where the markers of pyproject's requirements are evaluated.
IMAGE = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11",
         "python_full_version": "3.11.0", "implementation_name": "cpython", "os_name": "posix"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked() -> dict[str, tuple[str, list[str]]]:
    """Each pinned package: (version, its hashes), by canonical name."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = []
            pins[canonicalize_name(match[1])] = (match[2], current)
        current += re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
    return pins


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [Requirement(text) for text in project["dependencies"] + project["optional-dependencies"]["fast"]]
    return [r for r in wanted if r.marker is None or r.marker.evaluate(IMAGE)]


@pytest.mark.parametrize("requirement", runtime_requirements(), ids=str)
def test_every_runtime_dependency_is_pinned_to_a_version_pyproject_allows(requirement):
    pins = locked()
    name = canonicalize_name(requirement.name)

    assert name in pins, f"{requirement.name} is missing from requirements.lock: run deploy/lock-requirements.sh"
    version, _ = pins[name]
    assert requirement.specifier.contains(version, prereleases=True), (
        f"requirements.lock pins {requirement.name}=={version}, outside {requirement.specifier}: "
        "run deploy/lock-requirements.sh")


def test_every_pin_carries_its_hashes_and_nothing_is_unpinned():
    lines = [line for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
             if line and not line.startswith((" ", "#"))]

    assert lines and all(PIN.match(line) for line in lines), [line for line in lines if not PIN.match(line)]
    assert {name: hashes for name, (_, hashes) in locked().items() if not hashes} == {}


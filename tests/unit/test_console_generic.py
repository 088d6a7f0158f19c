"""The console is a generic layer: no platform is named in its code or templates,
and it reaches platforms only through the engine."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[2] / "syncd" / "console"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def platform_names() -> set[str]:
    return {p.stem for p in MAPPINGS.glob("*.yaml")}


def test_there_are_platforms_to_look_for():
    assert {"slack", "gmail"} <= platform_names()


def test_no_platform_is_named_in_the_console():
    named = []
    for path in [*CONSOLE.rglob("*.py"), *CONSOLE.rglob("*.html")]:
        text = path.read_text().lower()
        for name in platform_names():
            if re.search(rf"\b{re.escape(name)}\b", text):
                named.append(f"{path.relative_to(CONSOLE)}: {name}")
    assert named == []


def test_the_console_reaches_platforms_only_through_the_engine():
    imported = set()
    for path in CONSOLE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    forbidden = [m for m in imported if m.startswith(("syncd.providers", "syncd.cli", "syncd.daemon", "syncd.sim"))]
    assert forbidden == []

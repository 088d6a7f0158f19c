"""The generic layers contain no platform name (docs/architecture.md §1): they read declared capabilities.

Read from the code itself, docstrings and comments included, so that no engine, store, API,
daemon, logging, configuration, kit or console module grows a special case for one platform.
The platforms are the discovered ones: every manifest and every platform or family folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syncd import providers
from syncd.kit.loader import load_all

PACKAGE = Path(__file__).resolve().parents[2] / "syncd"
GENERIC = ["engine", "store", "kit", "console", "api", "daemon.py", "config.py", "logs.py",
           "mapping.py", "mapping_compiler.py", "universal.py", "models.py", "merge.py", "metrics.py"]
#: Platform names that are also ordinary words of code and prose ("a line of the log"): they
#: count only as the brand is written (LINE) or as a quoted name ('line').
WORDS = {"line"}
NAMES = sorted({*load_all(), *providers.folders(), "google", "microsoft", "facebook", "twitter"} - WORDS)
PATTERN = re.compile(r"\b(" + "|".join(NAMES) + r")\b"
                     + "".join(rf"|(?-i:\b{w.upper()}\b)|['\"]{w}['\"]" for w in sorted(WORDS)), re.IGNORECASE)


def _files() -> list[Path]:
    out: list[Path] = []
    for entry in GENERIC:
        path = PACKAGE / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return out


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_generic_module_names_no_platform(path):
    found = [f"{path.name}:{n}: {m.group(0)}" for n, line in enumerate(path.read_text().splitlines(), 1)
             for m in PATTERN.finditer(line)]
    assert found == []


def test_the_check_catches_a_platform_name():
    assert PATTERN.search("if integration.platform == 'Slack':")
    assert not PATTERN.search("if connector.has_history:")
    assert PATTERN.search("if platform == 'line':") and PATTERN.search("LINE's retry key")
    assert not PATTERN.search("one line of the log")

"""The repository cites no document it does not contain: every design reference points at
docs/architecture.md, which is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"DESIGN\.md|DESIGN §|STYLE\.md|\.\./shared/")


def test_no_file_cites_a_document_outside_the_repository():
    cited = []
    for folder in ("syncd", "tests", "bench", "docs", "mappings", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".yml", ".json", ".html") \
                    and path != Path(__file__).resolve():
                cited += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(path.read_text(errors="replace"))]
    cited += [f"README.md: {m.group(0)}" for m in OUTSIDE.finditer((ROOT / "README.md").read_text())]
    assert cited == []


def test_the_architecture_document_names_modules_that_exist():
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:kit|engine|store|providers|sim|demo)/[a-z_/.<>]*|[a-z_]+\.py)`", text))
    missing = [n for n in named if "<" not in n and not (ROOT / "syncd" / n).exists()
               and not any((ROOT / "syncd").rglob(n))]
    assert missing == []

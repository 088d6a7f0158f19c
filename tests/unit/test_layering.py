"""Dependencies point one way (docs/architecture.md §1), checked by reading every module's imports.

config/models/universal → mapping, store, kit, sim kit → providers → engine → api and cli → daemon.
Every module under ``syncd/`` is found on disk, so a new module is covered the day it lands; the
rules below are data: a prefix of importing modules and the prefixes they must not import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "syncd"

#: Family modules under ``syncd.providers`` that several platforms share (Meta's Graph API,
#: email MIME and threading). Anything else there is a platform's folder, which no other
#: platform may import.
SHARED_PROVIDER_MODULES = frozenset({"mime", "meta", "email_threads"})
_ABOVE_PLATFORMS = ("syncd.store", "syncd.engine", "syncd.api", "syncd.cli", "syncd.daemon",
                    "syncd.demo", "syncd.testbed", "syncd.console")

#: (modules this applies to, what they must never import, why).
RULES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "syncd.providers",
        _ABOVE_PLATFORMS,
        "connectors get what they need handed in; they never reach into storage or sync logic",
    ),
    (
        "syncd.kit",
        ("syncd.providers", "syncd.sim", *_ABOVE_PLATFORMS),
        "the platform kit knows no platform, and nothing above it",
    ),
    (
        "syncd.store",
        ("syncd.providers", "syncd.kit", "syncd.engine", "syncd.api", "syncd.cli", "syncd.daemon", "syncd.sim"),
        "the store knows the universal model only, nothing about platforms or sync",
    ),
    (
        "syncd.engine",
        ("syncd.api", "syncd.cli", "syncd.daemon"),
        "the engine is driven by the API, CLI and daemon, never the other way",
    ),
    (
        "syncd.sim",
        ("syncd.providers", *_ABOVE_PLATFORMS),
        "the simulator kit stands in for platforms and knows nothing of syncd's internals",
    ),
    (
        "syncd.api",
        ("syncd.cli", "syncd.daemon"),
        "the daemon composes the API, the API does not reach back",
    ),
]
for _foundation in ("syncd.config", "syncd.models", "syncd.universal", "syncd.mapping", "syncd.mapping_compiler",
                    "syncd.logs", "syncd.metrics"):
    RULES.append(
        (
            _foundation,
            ("syncd.store", "syncd.kit", "syncd.providers", "syncd.engine", "syncd.api", "syncd.cli",
             "syncd.daemon", "syncd.sim"),
            "foundation modules sit below everything that uses them",
        )
    )

#: Deliberate exceptions to RULES: (importer, imported) -> why it does not break the direction.
ALLOWED: dict[tuple[str, str], str] = {
    ("syncd.sim.scenario", "syncd.testbed"): "for type annotations only (TYPE_CHECKING): a scenario is handed its testbed",
}

#: Only the composition roots configure logging (and so own the process's output):
#: ``syncd run`` (daemon), the CLI, and ``syncd demo``'s runner, which is a CLI command body.
LOGGING_CONFIGURERS = ("syncd.daemon", "syncd.cli", "syncd.demo", "syncd.logs")


@dataclass(frozen=True)
class Import:
    module: str  # fully qualified name of what is imported
    line: int
    names: tuple[str, ...] = ()  # for `from X import a, b`: ("a", "b")


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(module: str, package_dir: Path) -> bool:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    return (package_dir / rel / "__init__.py").exists()


def _exists(module: str, package_dir: Path) -> bool:
    rel = Path(*module.split(".")[1:])
    return (package_dir / rel).with_suffix(".py").exists() or _is_package(module, package_dir)


def imports_of(source: str, module: str, package_dir: Path = PACKAGE_DIR) -> list[Import]:
    """Every syncd module that ``source`` (the text of ``module``) imports, TYPE_CHECKING too.

    Relative imports are resolved, ``from pkg import submodule`` counts as importing the
    submodule, and ``importlib.import_module("syncd.x")`` with a literal name is included.
    """
    tree = ast.parse(source)
    package = module if _is_package(module, package_dir) else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = tuple(alias.name for alias in node.names)
            found.append(Import(base, node.lineno, names))
            found += [
                Import(f"{base}.{name}", node.lineno)
                for name in names
                if _exists(f"{base}.{name}", package_dir)
            ]
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(node.args[0].value, node.lineno))
    return [imp for imp in found if _under(imp.module, "syncd")]


def _is_simulation(module: str) -> bool:
    """A platform's simulator or demo scenario (``<p>.sim``, ``<p>.demo``, family ``sim_*``)."""
    leaf = module.rpartition(".")[2]
    return leaf in ("sim", "demo") or leaf.startswith(("sim_", "demo_"))


def _platform_of(module: str) -> str | None:
    """The platform a ``syncd.providers.<x>`` module belongs to; None for shared ones."""
    parts = module.split(".")
    if len(parts) < 3 or parts[:2] != ["syncd", "providers"]:
        return None
    return None if parts[2] in SHARED_PROVIDER_MODULES else parts[2]


def violations(source: str, module: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Human-readable breaches of the layering rules by ``module``; empty when it complies."""
    problems: list[str] = []
    imports = imports_of(source, module, package_dir)
    for prefix, forbidden, why in RULES:
        if not _under(module, prefix):
            continue
        for imp in imports:
            if (module, imp.module) in ALLOWED:
                continue
            for banned in forbidden:
                if _under(imp.module, banned):
                    problems.append(f"{module}:{imp.line} imports {imp.module} ({why})")

    if _under(module, "syncd.providers") and not _is_simulation(module):
        for imp in imports:
            if _under(imp.module, "syncd.sim") or (_under(imp.module, "syncd.providers") and _is_simulation(imp.module)):
                problems.append(f"{module}:{imp.line} imports {imp.module}: a platform's code never uses "
                                f"its simulator or demo (they stand in for the platform)")

    own_platform = _platform_of(module)
    if own_platform is not None:
        for imp in imports:
            other = _platform_of(imp.module)
            if other is not None and other != own_platform:
                problems.append(
                    f"{module}:{imp.line} imports {imp.module}: connectors never import each "
                    f"other (shared helpers are {sorted(SHARED_PROVIDER_MODULES)})"
                )

    if not any(_under(module, allowed) for allowed in LOGGING_CONFIGURERS):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            used = (
                (isinstance(node, ast.Name) and node.id == "configure_logging")
                or (isinstance(node, ast.Attribute) and node.attr == "configure_logging")
                or (isinstance(node, ast.alias) and node.name == "configure_logging")
            )
            if used:
                line = getattr(node, "lineno", None) or "?"
                problems.append(
                    f"{module}:{line} uses configure_logging: only the daemon and the CLI "
                    f"configure logging; library modules just call structlog.get_logger"
                )
                break
    return problems


MODULE_FILES = sorted(PACKAGE_DIR.rglob("*.py"))


def test_the_walk_finds_the_package_modules():
    names = {module_name(path) for path in MODULE_FILES}
    assert {"syncd", "syncd.config", "syncd.models", "syncd.kit.connector"} <= names


@pytest.mark.parametrize("path", MODULE_FILES, ids=[module_name(p) for p in MODULE_FILES])
def test_module_respects_the_one_way_dependency_rule(path: Path):
    assert violations(path.read_text(encoding="utf-8"), module_name(path)) == []


def test_no_family_module_is_a_platform():
    manifests = {p.stem for p in (PACKAGE_DIR.parent / "mappings").glob("*.yaml")}
    assert SHARED_PROVIDER_MODULES.isdisjoint(manifests)


# The checker itself, on small sources, so a vacuous pass cannot hide a broken rule.


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("syncd.providers.slack.connector", "from syncd.store import Store", "imports syncd.store"),
        ("syncd.providers.slack.connector", "from ...engine import ingest", "imports syncd.engine.ingest"),
        ("syncd.providers.slack.connector", "from syncd.providers import gmail", "connectors never"),
        ("syncd.providers.slack.connector", "import syncd.providers.gmail.connector as g", "connectors never"),
        ("syncd.providers.slack.connector", "from syncd.providers.teams.ids import locate", "connectors never"),
        ("syncd.providers.teams.graph", "from ..slack import classify", "connectors never"),
        (
            "syncd.providers.slack.connector",
            "import importlib\nimportlib.import_module('syncd.providers.slack.sim')",
            "imports syncd.providers.slack.sim",
        ),
        ("syncd.store", "from syncd.kit.http import ProviderHttp", "imports syncd.kit.http"),
        ("syncd.kit.declarative", "from syncd.providers.slack import connector", "imports syncd.providers"),
        ("syncd.providers.slack.connector", "from syncd.providers.slack.sim import SlackSimulator", "never uses"),
        ("syncd.store", "from syncd.providers import slack", "imports syncd.providers.slack"),
        ("syncd.engine.importer", "from syncd.api import app", "imports syncd.api"),
        ("syncd.providers.slack.sim", "from syncd.engine import ingest", "imports syncd.engine"),
        ("syncd.api", "from syncd.daemon import Daemon", "imports syncd.daemon"),
        (
            "syncd.engine.inbox",
            "from syncd.logs import configure_logging\nconfigure_logging()",
            "uses configure_logging",
        ),
        ("syncd.api", "import syncd.logs\nsyncd.logs.configure_logging('INFO')", "uses configure_logging"),
    ],
)
def test_the_checker_catches_a_forbidden_import(module, source, expected):
    problems = violations(source, module)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("syncd.providers.slack.connector", "from syncd.kit.connector import Connector\nfrom syncd.kit import http"),
        ("syncd.providers.slack.demo", "from syncd.sim.scenario import Scenario\nfrom .sim import SlackSimulator"),
        ("syncd.providers.gmail.connector", "from syncd.providers.mime import decode_parts"),
        ("syncd.providers.teams.auth", "from syncd.providers.teams.graph import TeamsBase\nfrom .ids import _q"),
        ("syncd.providers.teams.connector", "from syncd.providers.teams.auth import TeamsAuth"),
        ("syncd.engine.ingest", "from syncd.store import Store\nfrom syncd.kit import connector"),
        ("syncd.store.chats", "from syncd.universal import ChatData\nfrom syncd.models import Chat"),
        ("syncd.cli", "from syncd.logs import configure_logging\nconfigure_logging('INFO')"),
        ("syncd.daemon", "from syncd import logs\nlogs.configure_logging('INFO', 'json')"),
        ("syncd.engine.inbox", "import structlog\nlog = structlog.get_logger(__name__)"),
    ],
)
def test_the_checker_allows_the_permitted_direction(module, source):
    assert violations(source, module) == []

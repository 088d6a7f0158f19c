"""The platforms, each found by its name.

Everything about platform ``p`` is in one place: its manifest ``mappings/p.yaml``, and, where
it has them, the folder ``syncd/providers/p/`` with ``connector.py`` (the small module for
what its manifest cannot say), ``sim.py`` (its simulator) and ``demo.py`` (its demo scenario).
A folder with no manifest is a family module shared by several platforms (``meta``: Meta's
Graph API; ``mime.py``: email). Nothing outside this package lists the platforms: they are
discovered, so adding one edits no shared file.

Platform modules never import the store or the engine, nor each other except a family module.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

from syncd.kit.connector import Connector
from syncd.kit.declarative import ManifestConnector
from syncd.kit.loader import Loaded, check_capabilities, load_manifest
from syncd.mapping import mappings_dir

_HERE = Path(__file__).parent


def folders() -> list[str]:
    """The platform and family folders that ship with the package."""
    return sorted(m.name for m in pkgutil.iter_modules([str(_HERE)]) if m.ispkg)


def part(platform: str, name: str) -> ModuleType | None:
    """``syncd.providers.<platform>.<name>`` (``connector``, ``sim``, ``demo``), or None."""
    if platform not in folders():
        return None
    qualified = f"{__name__}.{platform}.{name}"
    if importlib.util.find_spec(qualified) is None:
        return None
    return importlib.import_module(qualified)


def connector_class(platform: str) -> type[Connector]:
    """The connector class of ``platform``'s module, bound to its built-in manifest when it
    runs one; ``KeyError`` for a platform with no module."""
    module = part(platform, "connector")
    if module is None:
        raise KeyError(platform)
    cls = module.CONNECTOR
    if issubclass(cls, ManifestConnector):
        return cls.bind(load_manifest(mappings_dir() / f"{platform}.yaml").manifest)
    return cls


def connector_for(loaded: Loaded) -> type[Connector]:
    """The connector of a loaded manifest: its module's class bound to the manifest, or, for a
    platform with no module (an operator's manifest), the manifest connector alone. A custom
    manifest never picks up a module: its requests go only to the root it declares."""
    module = None if loaded.custom else part(loaded.manifest.platform, "connector")
    if module is None:
        check_capabilities(loaded.manifest, loaded.file)
        return ManifestConnector.bind(loaded.manifest)
    cls = module.CONNECTOR
    if issubclass(cls, ManifestConnector):
        return cls.bind(loaded.manifest)
    api = loaded.manifest.api
    return cls.with_manifest_webhook(loaded.manifest.webhook, api.rate_limit if api else None)


@functools.cache
def bound(platform: str) -> type[Connector]:
    """A built-in platform's connector bound to its manifest, as the engine builds it (for
    tests and tools that make a connector by hand)."""
    return connector_for(load_manifest(mappings_dir() / f"{platform}.yaml"))


def simulator(platform: str, **kwargs: Any) -> Any:
    """A new simulator of ``platform`` (its ``sim.SIMULATOR`` class); ``KeyError`` if none."""
    module = part(platform, "sim")
    if module is None or not hasattr(module, "SIMULATOR"):
        raise KeyError(platform)
    return module.SIMULATOR(**kwargs)


def scenario_class(platform: str) -> Any:
    """The demo scenario class of ``platform`` (``demo.SCENARIO``), or None."""
    module = part(platform, "demo")
    return getattr(module, "SCENARIO", None) if module is not None else None

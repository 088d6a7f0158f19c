"""Loading manifests: the built-in ``mappings/`` plus ``$SYNCD_MAPPINGS_DIR``, each validated
whole, with references checked, so a wrong file stops the daemon at start naming the file, the
path and the problem.

``python -m syncd.kit.loader --schema`` prints the manifest JSON Schema
(``mappings/manifest.schema.json``); ``python -m syncd.kit.loader FILE...`` checks files.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from syncd.kit.manifest import Manifest, Request
from syncd.mapping import (
    UNIVERSAL,
    Mapping,
    MappingError,
    mappings_dir,
    read_yaml,
    validate_sections,
)

#: The error a bad manifest raises: ``file: path: problem``.
ManifestError = MappingError


@dataclass(frozen=True)
class Loaded:
    manifest: Manifest
    mapping: Mapping
    file: str
    #: From ``$SYNCD_MAPPINGS_DIR``: an operator's platform, with no code of its own.
    custom: bool = False


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-")) or "-"


def _sections(manifest: Manifest) -> set[str]:
    spec = manifest.mapping
    return {*UNIVERSAL, "send", "edit", "delete", *spec.sections}


def _references(manifest: Manifest) -> list[tuple[str, str]]:
    """(where, section name) of every mapping section the manifest refers to."""
    found: list[tuple[str, str]] = []
    ops: dict[str, Request | None] = {op: getattr(manifest.requests, op)
                                      for op in type(manifest.requests).model_fields if op != "named"}
    ops.update({f"named.{name}": spec for name, spec in manifest.requests.named.items()})
    for op, spec in ops.items():
        if spec is None:
            continue
        for attr in ("map", "result", "body_mapping", "headers_mapping"):
            if getattr(spec, attr):
                found.append((f"requests.{op}.{attr}", getattr(spec, attr)))
    for i, rule in enumerate(manifest.webhook.events):
        if rule.map:
            found.append((f"webhook.events.{i}.map", rule.map))
    return found


def check_references(manifest: Manifest, file: str) -> None:
    """Dangling references stop the load: an unknown section, a poll without history."""
    known = _sections(manifest)
    for where, name in _references(manifest):
        if name not in known:
            raise ManifestError(file, where, f"no mapping section {name!r}; the mapping has: {', '.join(sorted(known))}")
    if manifest.poll is not None and manifest.requests.history is None:
        raise ManifestError(file, "poll", "a poll re-reads the history request, and requests.history is missing")
    for i, rule in enumerate(manifest.webhook.events):
        if rule.fetch and rule.fetch not in manifest.requests.named:
            raise ManifestError(file, f"webhook.events.{i}.fetch", f"no named request {rule.fetch!r}")
    for name in manifest.api.roots if manifest.api else {}:
        if name == (manifest.api.base_url_key if manifest.api else None):
            raise ManifestError(file, f"api.roots.{name}", "names the main root again")
    roots = {manifest.api.base_url_key or manifest.platform, *manifest.api.roots} if manifest.api else set()
    for i, verifier in enumerate(manifest.webhook.verify):
        if verifier.jwks is not None and verifier.jwks.root not in roots:
            raise ManifestError(file, f"webhook.verify.{i}.jwks.root",
                                f"no API root {verifier.jwks.root!r}; declare it in api.roots")


def check_capabilities(manifest: Manifest, file: str) -> None:
    """A platform with no module must declare a request for every capability it claims."""
    caps, requests = manifest.capabilities, manifest.requests
    needed = {"history": "history", "list_chats": "list_chats", "list_users": "list_users",
              "send": "send", "edit": "edit", "delete": "delete"}
    for capability, request in needed.items():
        if getattr(caps, capability) and getattr(requests, request) is None:
            raise ManifestError(file, f"capabilities.{capability}",
                                f"is true, but requests.{request} is not declared")
    if caps.poll and manifest.poll is None:
        raise ManifestError(file, "capabilities.poll", "is true, but no poll is declared")
    if manifest.api is None:
        raise ManifestError(file, "api", "a platform with no module of its own needs api.root")
    if caps.webhooks and not manifest.webhook.verify:
        raise ManifestError(file, "webhook.verify", "webhooks must be verified: declare a verifier")


def load_manifest(path: str | Path, *, custom: bool = False) -> Loaded:
    """One manifest, validated; ``ManifestError`` names the file, the path and the problem."""
    file = str(path)
    raw = read_yaml(path)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ManifestError(file, _location(first["loc"]), problem) from None
    if manifest.platform != Path(path).stem:
        raise ManifestError(file, "platform", f"says {manifest.platform!r}, the file is named {Path(path).stem!r}")
    validate_sections(manifest.mapping, file)
    check_references(manifest, file)
    return Loaded(manifest, Mapping(manifest.platform, manifest.mapping, file), file, custom)


def extra_dir() -> Path | None:
    """``$SYNCD_MAPPINGS_DIR``: an operator's folder of further manifests."""
    value = os.environ.get("SYNCD_MAPPINGS_DIR")
    return Path(value) if value else None


def load_all(builtin: Path | None = None, extra: Path | None = None) -> dict[str, Loaded]:
    """Every built-in manifest, then every one in ``extra``; a name defined twice is refused."""
    out: dict[str, Loaded] = {}
    for folder, custom in ((builtin or mappings_dir(), False), (extra, True)):
        if folder is None:
            continue
        if not folder.is_dir():
            raise ManifestError(str(folder), "-", "SYNCD_MAPPINGS_DIR is not a folder")
        for path in sorted(folder.glob("*.yaml")):
            loaded = load_manifest(path, custom=custom)
            if loaded.manifest.platform in out:
                raise ManifestError(str(path), "platform", f"{loaded.manifest.platform!r} is already defined by "
                                    f"{out[loaded.manifest.platform].file}")
            out[loaded.manifest.platform] = loaded
    return out


def api_roots(platforms: dict[str, Loaded]) -> dict[str, str]:
    """Every documented API root by key (``SYNCD_<KEY>_BASE_URL`` replaces it); two manifests
    may share a key (one vendor's Graph API) only with the same root."""
    roots: dict[str, tuple[str, str]] = {}
    for name, loaded in platforms.items():
        api = loaded.manifest.api
        if api is None:
            continue
        for key, root in {api.base_url_key or name: api.root, **api.roots}.items():
            if key in roots and roots[key][0] != root:
                raise ManifestError(loaded.file, "api", f"root {key!r} is {roots[key][0]} in {roots[key][1]}")
            roots[key] = (root, loaded.file)
    return {key: root for key, (root, _) in roots.items()}


def json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "syncd platform manifest"
    return schema


def main(argv: list[str]) -> int:
    if argv[:1] == ["--schema"]:
        print(json.dumps(json_schema(), indent=2, sort_keys=True))
        return 0
    status = 0
    for name in argv:
        try:
            load_manifest(name)
            print(f"{name}: ok")
        except ManifestError as exc:
            print(exc, file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

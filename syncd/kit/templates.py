"""The small expression language of manifests: dotted paths, ``{placeholder}`` templates,
conditions and record selectors.

- A path is dotted (``response_metadata.next_cursor``); a list index is a number (``items.0``).
- A template is a string with ``{path}`` placeholders read from a scope dict. A template that
  is exactly one placeholder keeps the value's type (and is ``None`` when missing); otherwise
  every placeholder must resolve, or the whole template is ``None``.
- A selector picks records: ``messages`` (a list), ``entry[].changes[].value.messages[]``
  (flattened), ``.`` (the document itself). Each record comes with its parent object, which
  event rules and mappings read as ``ctx.parent``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import quote

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.\-]*)\}")
_MISSING = object()


def lookup(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` of ``doc``; ``None`` when any step is missing."""
    if path in ("", "."):
        return doc
    node = doc
    for step in path.split("."):
        if isinstance(node, dict):
            node = node.get(step, _MISSING)
        elif isinstance(node, list) and step.lstrip("-").isdigit() and -len(node) <= int(step) < len(node):
            node = node[int(step)]  # ``-1``: the last item (the oldest of a newest-first page)
        else:
            return None
        if node is _MISSING:
            return None
    return node


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


@lru_cache(maxsize=4096)
def _compiled(template: str) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """``template`` parsed once (manifests render the same few templates on every request):
    the one placeholder it is exactly, or ``None``; its literal pieces; and its placeholder
    names, which sit between the pieces."""
    whole = _PLACEHOLDER.fullmatch(template)
    parts = _PLACEHOLDER.split(template)
    return (whole.group(1) if whole else None), tuple(parts[0::2]), tuple(parts[1::2])


def render(template: Any, scope: dict[str, Any], escape: Callable[[str], str] | None = None) -> Any:
    """``template`` with its placeholders filled from ``scope`` (dicts and lists recursively);
    ``escape`` is applied to every value put into a string (a path segment's quoting)."""
    if isinstance(template, dict):
        return {k: render(v, scope, escape) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, scope, escape) for v in template]
    if not isinstance(template, str) or "{" not in template:
        return template
    whole, literals, names = _compiled(template)
    if whole is not None and escape is None:
        return lookup(scope, whole)
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        value = lookup(scope, name)
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        out.append(escape(text) if escape else text)
        out.append(literal)
    return "".join(out)


def path_segment(value: str) -> str:
    """A value made safe inside a URL path: no ``/``, ``?`` or ``#`` can change where it goes."""
    return quote(value, safe=":@!$&'()*+,;=-._~")


def without_none(values: dict[str, Any]) -> dict[str, Any]:
    """Parameters whose template resolved to nothing are left out, not sent empty."""
    return {k: v for k, v in values.items() if v is not None}


def first(doc: Any, paths: str | list[str]) -> Any:
    """The value of the first of ``paths`` that has one (a single path: its value)."""
    for path in [paths] if isinstance(paths, str) else paths:
        value = lookup(doc, path)
        if value is not None:
            return value
    return None


def matches(doc: Any, condition: Any, scope: dict[str, Any] | None = None) -> bool:
    """Whether ``doc`` passes one ``Condition`` (expected values may be templates on ``scope``).
    A condition ``of`` ``parent`` or ``root`` reads that entry of ``scope`` instead of ``doc``."""
    scope = scope or {}
    of = getattr(condition, "of", "record")
    value = first(doc if of == "record" else scope.get(of), condition.path)
    if condition.present is not None and (value is not None) != condition.present:
        return False
    if condition.contains is not None and not (isinstance(value, str) and condition.contains in value):
        return False
    if condition.equals is not None and not same(value, render(condition.equals, scope)):
        return False
    if condition.in_ is not None and not any(same(value, render(v, scope)) for v in condition.in_):
        return False
    return condition.not_equals is None or not same(value, render(condition.not_equals, scope))


def same(value: Any, expected: Any) -> bool:
    """Equal, or the same id written as a JSON number on one side and as text on the other
    (platforms send big ids as numbers; credentials keep them as text)."""
    if value == expected:
        return True
    numbers = [v for v in (value, expected) if isinstance(v, int) and not isinstance(v, bool)]
    return len(numbers) == 1 and isinstance(value if numbers[0] is expected else expected, str) \
        and str(value) == str(expected)


def select(doc: Any, selector: str) -> Iterator[tuple[Any, Any]]:
    """``(record, parent)`` for every record ``selector`` picks out of ``doc``."""
    if selector in ("", "."):
        yield doc, None
        return
    yield from _walk(doc, selector.split("."), None)


def _walk(node: Any, steps: list[str], parent: Any) -> Iterator[tuple[Any, Any]]:
    if not steps:
        yield node, parent
        return
    step, rest = steps[0], steps[1:]
    flatten = step.endswith("[]")
    key = step[:-2] if flatten else step
    child = node.get(key) if isinstance(node, dict) else None
    if child is None:
        return
    if not flatten:
        if isinstance(child, list) and not rest:
            for item in child:
                yield item, node
            return
        yield from _walk(child, rest, node)
        return
    for item in child if isinstance(child, list) else []:
        yield from _walk(item, rest, node) if rest else iter([(item, node)])

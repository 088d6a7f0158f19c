"""Compiles one section of a mapping file into one Python function.

A section is a dict of rules (``syncd.mapping.Rule``); interpreting them rule by rule costs
a dozen function calls per field. The compiled function does the same work in straight-line
code: every distinct source path is looked up once, every distinct (path, transforms) chain
is computed once, and nested targets (``sender.name``) are built in place. Its source is
kept on the function (``fn.source``) so a surprising result can be read, not guessed at.

Semantics are those of the rule language (see ``syncd.mapping``): a ``path`` is a dotted
path or a list tried in order (first non-null wins), ``ctx.`` reads the context, a digit
indexes a list; a ``template`` has no value if any placeholder is missing; ``cases`` take the
first ``when`` that is truthy (or equals ``equals``); transforms run in order and stop at
``None``; then ``default``; then ``required``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

PLACEHOLDER = re.compile(r"\{([^{}]+)\}")

#: A compiled section: (source payload, context) -> the mapped dict.
SectionFn = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


class _Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: list[Any] = []
        self.names: dict[Any, str] = {}

    def const(self, value: Any) -> str:
        self.consts.append(value)
        return f"K[{len(self.consts) - 1}]"

    def line(self, text: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + text)

    def fresh(self, key: Any, prefix: str) -> tuple[str, bool]:
        """The variable for ``key``, and whether it still has to be computed."""
        if key in self.names:
            return self.names[key], False
        name = self.names[key] = f"{prefix}{len(self.names)}"
        return name, True

    def lookup(self, path: str) -> str:
        """A variable holding the value at ``path`` (``None`` when absent); a path's
        prefixes are looked up once and shared (``headers`` for ``headers.from``)."""
        var, new = self.fresh(("path", path), "p")
        if not new:
            return var
        parent, _, part = path.rpartition(".")
        if not parent or parent == "ctx":
            root = "ctx" if parent else "src"
            self.line(f"{var} = {root}.get({part!r})")
        else:
            node = self.lookup(parent)
            step = f"{node}.get({part!r}) if {node}.__class__ is dict or isinstance({node}, dict) else "
            if part.isdigit():
                index = int(part)
                step += f"({node}[{index}] if isinstance({node}, list) and len({node}) > {index} else None)"
            else:
                step += "None"
            self.line(f"{var} = {step}")
        return var

    def first_of(self, paths: list[str]) -> str:
        if len(paths) == 1:
            return self.lookup(paths[0])
        var, new = self.fresh(("first", tuple(paths)), "f")
        if not new:
            return var
        # Later alternatives are looked up only when the earlier ones are missing.
        self.line(f"{var} = {self.lookup(paths[0])}")
        for path in paths[1:]:
            self.line(f"if {var} is None:")
            mark = len(self.lines)
            inner = self.lookup_inline(path)
            self.lines[mark:] = ["    " + line for line in self.lines[mark:]]
            self.line(f"{var} = {inner}", 2)
        return var

    def lookup_inline(self, path: str) -> str:
        """Like :meth:`lookup`, but not shared: the code may sit inside a branch."""
        saved = dict(self.names)
        var = self.lookup(path)
        self.names = saved
        return var


def _source(em: _Emitter, rule: Any) -> str:
    if rule.path is not None:
        return em.first_of([rule.path] if isinstance(rule.path, str) else list(rule.path))
    if rule.template is not None:
        var, new = em.fresh(("template", rule.template), "m")
        if new:
            pieces = PLACEHOLDER.split(rule.template)
            # split() alternates literal text and placeholder names.
            values = {name: em.lookup(name) for name in pieces[1::2]}
            missing = " or ".join(f"{v} is None" for v in values.values()) or "False"
            parts = [repr(piece) if i % 2 == 0 else f"str({values[piece]})"
                     for i, piece in enumerate(pieces) if i % 2 or piece]
            em.line(f"{var} = None if {missing} else {' + '.join(parts) or repr('')}")
        return var
    if rule.cases is not None:
        var, _ = em.fresh(("cases", id(rule)), "c")
        looked = [em.lookup(case.when) for case in rule.cases]  # before the if/elif chain
        em.line(f"{var} = None")
        keyword = "if"
        for case, got in zip(rule.cases, looked):
            test = got if case.equals is None else f"{got} == {em.const(case.equals)}"
            em.line(f"{keyword} {test}:")
            em.line(f"{var} = {em.const(case.value)}", 2)
            keyword = "elif"
        return var
    return em.const(rule.const)


def _transformed(em: _Emitter, rule: Any, source: str, transforms: dict[str, Callable[[Any], Any]]) -> str:
    names = rule.transforms
    if not names:
        return source
    var, new = em.fresh(("transformed", source, tuple(names)), "t")
    if new:
        em.line(f"{var} = {source}")
        for name in names:
            em.line(f"if {var} is not None:")
            em.line(f"{var} = T_{name}({var})", 2)
    return var


def compile_section(section: dict[str, Any], transforms: dict[str, Callable[[Any], Any]],
                    fail: Callable[[str, str], Exception], name: str = "section") -> SectionFn:
    """One function for ``section``. ``fail(target, problem)`` builds the exception raised
    for a required value that is missing or a value a transform cannot convert."""
    em = _Emitter()
    parents: dict[str, str] = {}
    owners: dict[int, str] = {}  # line of the body -> the target whose rule wrote it
    for target, rule in section.items():
        first = len(em.lines)
        value = _transformed(em, rule, _source(em, rule), transforms)
        if rule.default is not None:
            value = f"({em.const(rule.default)} if {value} is None else {value})"
        elif rule.required:
            em.line(f"if {value} is None:")
            em.line(f"raise F({target!r}, 'required value is missing in the payload')", 2)
        # A value that cannot be missing any more is assigned without a test.
        depth = 1 if rule.default is not None or rule.required else 2
        if depth == 2:
            em.line(f"if {value} is not None:")
        *path, leaf = target.split(".")
        holder = "out"
        for i, part in enumerate(path):
            key = ".".join(path[: i + 1])
            if key not in parents:
                parents[key] = f"n{len(parents)}"
                em.lines.insert(first, f"    {parents[key]} = None")
            em.line(f"if {parents[key]} is None:", depth)
            em.line(f"{parents[key]} = {holder}.setdefault({part!r}, {{}})", depth + 1)
            holder = parents[key]
        em.line(f"{holder}[{leaf!r}] = {value}", depth)
        owners.update((line, target) for line in range(first, len(em.lines)))
    fn_name = re.sub(r"\W", "_", name)
    header = [f"def {fn_name}(src, ctx):", "    out = {}", "    try:"]
    source = "\n".join([
        *header,
        *("    " + line for line in em.lines or ["    pass"]),
        "    except (TypeError, ValueError, OverflowError) as exc:",
        # The line that raised names the field (no bookkeeping on the happy path).
        "        raise F(W.get(exc.__traceback__.tb_lineno, '?'), f'cannot convert value: {exc}') from None",
        "    return out",
        "",
    ])
    where = {len(header) + 1 + line: target for line, target in owners.items()}
    namespace: dict[str, Any] = {"K": em.consts, "F": fail, "W": where,
                                 **{f"T_{name}": fn for name, fn in transforms.items()}}
    exec(compile(source, f"<mapping {name}>", "exec"), namespace)
    fn = namespace[fn_name]
    fn.source = source
    return fn

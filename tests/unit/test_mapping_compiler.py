"""Compiled mapping sections behave exactly like the rule language says.

The reference below evaluates rules one by one, the plain reading of the language; every
compiled section must give the same dict (or the same error) for the same payload. Hypothesis
generates sections and payloads; the shipped mappings are checked against the platforms'
documented samples.
"""

from __future__ import annotations

import email.utils
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.mapping import (
    TRANSFORMS,
    MappingError,
    Rule,
    _email_list,
    load_mappings,
    parse_address,
)
from syncd.mapping_compiler import compile_section

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PLACEHOLDER = re.compile(r"\{([^{}]+)\}")

# --------------------------------------------------------------------------------------
# the reference: one rule at a time


def ref_lookup(source: dict, ctx: dict, path: str) -> Any:
    node: Any = ctx if path.startswith("ctx.") else source
    for part in (path.removeprefix("ctx.")).split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit():
            node = node[int(part)] if int(part) < len(node) else None
        else:
            return None
        if node is None:
            return None
    return node


def ref_evaluate(rule: Rule, source: dict, ctx: dict) -> Any:
    value: Any = None
    if rule.path is not None:
        for path in [rule.path] if isinstance(rule.path, str) else rule.path:
            value = ref_lookup(source, ctx, path)
            if value is not None:
                break
    elif rule.template is not None:
        names = PLACEHOLDER.findall(rule.template)
        found = {n: ref_lookup(source, ctx, n) for n in names}
        value = None if any(v is None for v in found.values()) else \
            PLACEHOLDER.sub(lambda m: str(found[m.group(1)]), rule.template)
    elif rule.const is not None:
        value = rule.const
    elif rule.cases is not None:
        for case in rule.cases:
            got = ref_lookup(source, ctx, case.when)
            if (case.equals is None and got) or (case.equals is not None and got == case.equals):
                value = case.value
                break
    if value is not None:
        for name in rule.transforms:
            value = TRANSFORMS[name](value)
            if value is None:
                break
    return rule.default if value is None else value


def reference(section: dict[str, Rule], source: dict, ctx: dict) -> dict:
    out: dict = {}
    for target, rule in section.items():
        try:
            value = ref_evaluate(rule, source, ctx)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MappingError("f", target, f"cannot convert value: {exc}") from None
        if value is None:
            if rule.required:
                raise MappingError("f", target, "required value is missing in the payload")
            continue
        *parents, leaf = target.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def compiled(section: dict[str, Rule]):
    return compile_section(section, TRANSFORMS, lambda target, problem: MappingError("f", target, problem))


def outcome(fn, *args) -> Any:
    try:
        return fn(*args)
    except MappingError as exc:
        return ("error", exc.field, exc.problem)


# --------------------------------------------------------------------------------------
# generated sections and payloads

KEYS = ["a", "b", "c", "0", "1"]
leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "x", "Y z", "7", " 8 "]))
tree = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                    max_leaves=12)
payload = st.dictionaries(st.sampled_from(KEYS), tree, max_size=4)
path = st.builds(lambda ctx, parts: ("ctx." if ctx else "") + ".".join(parts),
                 st.booleans(), st.lists(st.sampled_from(KEYS), min_size=1, max_size=3))
# Transforms whose failures are the ones the language turns into mapping errors.
transforms = st.lists(st.sampled_from(["str", "int", "lower", "strip", "first", "nonempty", "present", "bool"]),
                      max_size=2)
constant = st.one_of(st.integers(0, 3), st.sampled_from(["k", "dm", "v"]))


@st.composite
def rules(draw) -> Rule:
    kind = draw(st.sampled_from(["path", "paths", "template", "const", "cases"]))
    fields: dict[str, Any] = {}
    if kind == "path":
        fields["path"] = draw(path)
    elif kind == "paths":
        fields["path"] = draw(st.lists(path, min_size=2, max_size=3))
    elif kind == "template":
        names = draw(st.lists(path, max_size=3))
        fields["template"] = "-".join(f"{{{n}}}" for n in names) + draw(st.sampled_from(["", ":x"]))
    elif kind == "const":
        fields["const"] = draw(constant)
    else:
        fields["cases"] = [{"when": draw(path), "equals": draw(st.none() | leaf), "value": draw(constant)}
                           for _ in range(draw(st.integers(1, 3)))]
    names = draw(transforms)
    if names:
        fields["transform"] = names if len(names) > 1 else names[0]
    fields["default"] = draw(st.none() | constant)
    fields["required"] = draw(st.booleans())
    return Rule.model_validate(fields)


targets = st.sampled_from(["x", "y", "n.p", "n.q", "n.m.r", "z"])
sections = st.dictionaries(targets, rules(), min_size=1, max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=sections, source=payload, ctx=payload)
def test_a_compiled_section_gives_what_the_rules_say(section, source, ctx):
    assert outcome(compiled(section), source, ctx) == outcome(reference, section, source, ctx)


def samples() -> list[tuple[str, dict]]:
    """Every dict inside every documented sample: each one is some section's input."""
    found: list[tuple[str, dict]] = []

    def walk(platform: str, node: Any) -> None:
        if isinstance(node, dict):
            found.append((platform, node))
            for value in node.values():
                walk(platform, value)
        elif isinstance(node, list):
            for value in node:
                walk(platform, value)

    for file in sorted(FIXTURES.glob("*.json")):
        for sample in json.loads(file.read_text()).get("samples") or []:
            walk(file.stem, sample.get("payload"))
    return found


def test_the_shipped_mappings_compile_to_what_their_rules_say_on_the_documented_samples():
    mappings = load_mappings()
    checked = 0
    for platform, raw in samples():
        mapping = mappings.get(platform)
        if mapping is None:
            continue
        spec = mapping.spec
        sections = {n: getattr(spec, n) for n in ("message", "chat", "user", "send", "edit", "delete")}
        for name, section in {**sections, **spec.sections}.items():
            for ctx in ({}, {"channel": "C1", "chat": "19:x", "fromSelf": True}):
                got = outcome(mapping.compiled[name], raw, ctx)
                want = outcome(reference, section, raw, ctx)
                if isinstance(want, tuple):  # the compiled error names the section too
                    want = ("error", f"mapping.{name}.{want[1]}", want[2])
                assert got == want, (platform, name, raw)
                checked += 1
    assert checked > 500


# --------------------------------------------------------------------------------------
# what compiling buys, and what it keeps


def test_a_value_several_fields_share_is_looked_up_and_transformed_once():
    calls = []

    def counted(value):
        calls.append(value)
        return value.upper()

    section = {"a": Rule(path="h.from", transform="lower"), "b.c": Rule(path="h.from", transform="lower"),
               "d": Rule(path="h.from")}
    fn = compile_section(section, {"lower": counted}, lambda t, p: MappingError("f", t, p))
    assert fn({"h": {"from": "x"}}, {}) == {"a": "X", "b": {"c": "X"}, "d": "x"}
    assert calls == ["x"]
    assert fn.source.count("get('from')") == 1


def test_a_value_that_cannot_be_converted_names_its_field_even_when_shared():
    section = {"first": Rule(path="n"), "count": Rule(path="n", transform="int"),
               "again": Rule(path="n", transform="int")}
    with pytest.raises(MappingError) as failed:
        compiled(section)({"n": "seven"}, {})
    assert failed.value.field == "count"
    assert "cannot convert value" in failed.value.problem


def test_the_compiled_source_is_kept_for_reading():
    mapping = load_mappings(platforms=["slack"])["slack"]
    source = mapping.compiled["message"].source
    assert source.startswith("def slack_message(src, ctx):")
    assert "'externalMessageId'" in source


# --------------------------------------------------------------------------------------
# email addresses: the fast path answers what email.utils answers

atom = st.text(alphabet="abcXYZ09_%+'-.", min_size=1, max_size=6)
spaces = st.sampled_from(["", " ", "  ", "\t", " \r\n ", "\u00a0"])
domain = st.lists(st.text(alphabet="ab9-", min_size=1, max_size=4), min_size=1, max_size=3).map(".".join)
address = st.builds(lambda local, dom: f"{local}@{dom}", atom, domain)
name = st.one_of(
    st.lists(st.tuples(atom, st.sampled_from([" ", "  ", "\t", " \t "])), min_size=1, max_size=3).map(
        lambda words: "".join(w + gap for w, gap in words).rstrip()),
    st.text(alphabet='ab ,."\\()<>:;@', max_size=8).map(lambda t: f'"{t}"'),
    st.text(alphabet="aé ,.", max_size=6),
)
header = st.one_of(
    st.builds(lambda s1, a, s2: f"{s1}{a}{s2}", spaces, address, spaces),
    st.builds(lambda s1, n, s2, a, s3: f"{s1}{n}{s2}<{a}>{s3}", spaces, name, spaces, address, spaces),
    st.text(alphabet='ab@<>," .()', max_size=12),
)


@settings(max_examples=600, deadline=None)
@given(value=header)
def test_an_address_is_split_as_email_utils_splits_it(value):
    assert parse_address(value) == email.utils.parseaddr(value)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.lists(header, min_size=1, max_size=3).map(", ".join), min_size=1, max_size=2))
def test_an_address_list_is_split_as_email_utils_splits_it(values):
    want = [a.lower() for _, a in email.utils.getaddresses(values) if a]
    assert _email_list(values) == want

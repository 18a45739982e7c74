"""One way to check a config: every setting a user can give (a recipe's TOML table, a command's options, the
Python API's keywords) lands in a dataclass, and `build` / `check` refuse it with one RecipeError naming the
key, the value and what was expected, before any work starts.

A field's type comes from its annotation (`int`, `float | None`, `int | list[int] | None`, `str`, ...); its
range from `option(default, within=...)`. A number with no declared range must be >= 0. Rules that tie fields
together live in the dataclass's own `relations(where)` method, which `check` calls after the fields.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from roots_edge.core.errors import RecipeError


@dataclass(frozen=True)
class Within:
    """A numeric range: `Within(0, 1, low_open=True)` is (0, 1]; `Within(0, None, low_open=True)` is > 0."""

    low: float | None = 0
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    says: str | None = None        # what errors call a value of this range, instead of the generated words

    def holds(self, v: float) -> bool:
        above = self.low is None or (v > self.low if self.low_open else v >= self.low)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def describe(self, noun: str) -> str:
        if self.says:
            return self.says
        if self.high is None and self.low == 0:
            return f"a {'positive' if self.low_open else 'non-negative'} {noun}"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return (f"{'an' if noun[0] in 'aeiou' else 'a'} {noun} in {'(' if self.low_open else '['}{low}, "
                f"{high}{')' if self.high_open else ']'}")


POSITIVE = Within(0, None, low_open=True)
FRACTION = Within(0, 1, low_open=True, says="the fraction to keep, in (0, 1]")
UNIT = Within(0, 1, high_open=True)             # a share of the run (warmup): [0, 1)
PROBABILITY = Within(0, 1)                      # a mixing weight: [0, 1]
NON_NEGATIVE = Within(0, None)


def option(default=dataclasses.MISSING, *, within: Within | None = None, choices: tuple | None = None,
           default_factory=dataclasses.MISSING, what: str | None = None):
    """A dataclass field with its accepted values; `what` replaces the generated description in errors."""
    meta = {"within": within, "choices": choices, "what": what}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _kinds(annotation) -> list[str]:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return [k.strip() for k in text.split("|")]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


ACCEPT = {
    "int": _is_int,
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dict": lambda v: isinstance(v, dict),
    "list[int]": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "None": lambda v: v is None,
}
NOUN = {"int": "integer", "float": "number", "bool": "true or false", "str": "text", "dict": "table",
        "list[int]": "list of integers", "list[str]": "list of names", "None": "nothing (the default)"}


def _expected(f: dataclasses.Field, kinds: list[str]) -> str:
    meta = f.metadata
    if meta.get("what"):
        return meta["what"]
    if meta.get("choices"):
        return f"one of {list(meta['choices'])}"
    within = meta.get("within") or NON_NEGATIVE
    parts = []
    for k in kinds:
        if k in ("int", "float"):
            parts.append(within.describe(NOUN[k]))
        elif k != "None":
            parts.append(f"{'an' if NOUN[k][0] in 'aeiou' else 'a'} {NOUN[k]}" if k.startswith("list") or k == "dict"
                         else NOUN[k])
    return " or ".join(parts)


def _name(where: str, section: str | None, key: str) -> str:
    return f"{where}: [{section}] {key}" if section else f"{where}: {key}"


def check_field(config, f: dataclasses.Field, where: str, section: str | None = None) -> None:
    value, kinds = getattr(config, f.name), _kinds(f.type)
    if value is None and "None" in kinds:
        return                                   # "the default for this model"
    matched = [k for k in kinds if k in ACCEPT and ACCEPT[k](value)]
    ok = bool(matched)
    if ok and matched[0] in ("int", "float"):
        ok = (f.metadata.get("within") or NON_NEGATIVE).holds(value)
    if ok and f.metadata.get("choices"):
        ok = value in f.metadata["choices"]
    if not ok:
        raise RecipeError(f"{_name(where, section, f.name)} = {value!r}: expected {_expected(f, kinds)}")


def check(config, where: str, section: str | None = None) -> None:
    """Every field of the right type and range, then the fields' relations (`config.relations(where)`)."""
    for f in dataclasses.fields(config):
        if f.init:                               # fields a user cannot give are the step's own business
            check_field(config, f, where, section)
    relations = getattr(config, "relations", None)
    if relations is not None:
        relations(f"{where}: [{section}]" if section else where)


def build(kind, options, where: str, section: str | None = None):
    """`kind(**options)`, checked: a table that is not one, unknown names (listing the known ones) and bad
    values are each one RecipeError that names `where` (a file and its section, or a command)."""
    if not isinstance(options, dict):
        raise RecipeError(f"{_name(where, section, '')}must be a table of settings, not {options!r}")
    known = [f.name for f in dataclasses.fields(kind) if f.init]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise RecipeError(f"{where}: unknown keys{f' in [{section}]' if section else ''}: {unknown}; "
                          f"known: {sorted(known)}")
    config = kind(**options)
    check(config, where, section)
    return config


def split(kind, options: dict) -> tuple[dict, dict]:
    """`options` divided into the keys `kind` declares and the rest (a step that passes the rest on)."""
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in options.items() if k in names}, {k: v for k, v in options.items() if k not in names}

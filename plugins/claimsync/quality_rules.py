"""The data-quality rules: the Great Expectations suites in expectations/, read as plain data.

The suites are the single source of truth for what a valid row is. This module reads them
without importing GX (so it is cheap and safe anywhere); :mod:`claimsync.quality_engine`
turns them into GX suites to run, or evaluates them vectorised with GX's semantics.

Each expectation carries ``meta``:
- ``check``: a short stable name, stored as ``<suite>.<check>`` in claimsync.quarantine;
- ``level``: ``row`` (failing rows are quarantined) or ``table`` (a failure stops the run);
- ``reason``: one sentence for the person who has to fix the row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, Literal

from claimsync.errors import ConfigError
from claimsync.resources import expectations_dir

Level = Literal["row", "table"]

# The canonical source frames, by suite name: (source system, entity) as stored in quarantine.
SOURCE_SUITES: Final[dict[str, tuple[str, str]]] = {
    "oa_claims": ("oa", "claims"),
    "oa_lines": ("oa", "lines"),
    "oa_employees": ("oa", "employees"),
    "oa_departments": ("oa", "departments"),
    "expense_claims": ("expense", "claims"),
    "expense_lines": ("expense", "lines"),
    "expense_payments": ("expense", "payments"),
    "expense_employees": ("expense", "employees"),
    "expense_departments": ("expense", "departments"),
}
DELTA_SUITE: Final = "write_delta"
ALL_SUITES: Final = (*SOURCE_SUITES, DELTA_SUITE)

PARAMETER: Final = "$PARAMETER"


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, with claimsync's meta read out."""

    suite: str
    type: str
    kwargs: Mapping[str, Any]
    check: str
    level: Level
    reason: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``<suite>.<check>``: how quarantine and validation results name this rule."""
        return f"{self.suite}.{self.check}"

    @property
    def columns(self) -> tuple[str, ...]:
        """The frame columns this expectation reads (its domain, and a nullity row condition's column)."""
        kw = self.kwargs
        cols: list[str] = []
        for key in ("column", "column_A", "column_B"):
            if isinstance(kw.get(key), str):
                cols.append(kw[key])
        cols.extend(kw.get("column_list") or ())
        condition = kw.get("row_condition")
        if isinstance(condition, Mapping) and isinstance(condition.get("column"), Mapping):
            cols.append(str(condition["column"]["name"]))
        return tuple(dict.fromkeys(cols))

    @property
    def parameters(self) -> tuple[str, ...]:
        """The ``$PARAMETER`` names this expectation needs at run time."""
        return tuple(v[PARAMETER] for v in self.kwargs.values() if isinstance(v, Mapping) and PARAMETER in v)

    def resolved_kwargs(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """The kwargs with ``{"$PARAMETER": name}`` replaced by the run's value."""
        out: dict[str, Any] = {}
        for key, value in self.kwargs.items():
            if isinstance(value, Mapping) and PARAMETER in value:
                name = value[PARAMETER]
                if name not in parameters:
                    raise KeyError(f"suite {self.suite}: check {self.check} needs the parameter {name!r}")
                out[key] = parameters[name]
            else:
                out[key] = value
        return out


@dataclass(frozen=True)
class SuiteSpec:
    """A suite as loaded from its JSON file: the document itself and its rules."""

    name: str
    document: Mapping[str, Any]
    rules: tuple[Rule, ...]

    @property
    def source(self) -> str:
        return str(self.document.get("meta", {}).get("claimsync_frame", {}).get("source", ""))

    @property
    def entity(self) -> str:
        return str(self.document.get("meta", {}).get("claimsync_frame", {}).get("entity", ""))

    def rule(self, check: str) -> Rule:
        for rule in self.rules:
            if rule.check == check:
                return rule
        raise KeyError(f"suite {self.name} has no check {check!r}")


def _rule(suite: str, position: int, expectation: Mapping[str, Any]) -> Rule:
    meta = dict(expectation.get("meta") or {})
    check = meta.get("check")
    level = meta.get("level", "row")
    if not isinstance(check, str) or not check:
        raise ConfigError(f"expectation suite {suite}: expectation #{position} has no meta.check name")
    if level not in ("row", "table"):
        raise ConfigError(f"expectation suite {suite}: check {check} has meta.level {level!r} (row or table)")
    return Rule(
        suite=suite,
        type=str(expectation["type"]),
        kwargs=dict(expectation.get("kwargs") or {}),
        check=check,
        level=level,
        reason=str(meta.get("reason") or check.replace("_", " ")),
        meta=meta,
    )


@cache
def load_suite(name: str) -> SuiteSpec:
    """Read ``expectations/<name>.json``; a missing or malformed file is a ConfigError."""
    path = expectations_dir() / f"{name}.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"expectation suite {name} is missing: expected {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"expectation suite {path} is not valid JSON: {exc}") from None
    if document.get("name") != name:
        raise ConfigError(
            f"expectation suite {path} must be named {name!r} (its file stem), not {document.get('name')!r}"
        )
    rules = tuple(_rule(name, i, e) for i, e in enumerate(document.get("expectations") or ()))
    checks = [r.check for r in rules]
    if len(set(checks)) != len(checks):
        raise ConfigError(f"expectation suite {name}: two expectations share a meta.check name")
    return SuiteSpec(name=name, document=document, rules=rules)

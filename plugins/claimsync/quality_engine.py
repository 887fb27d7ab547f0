"""Run an expectation suite over a frame: Great Expectations decides, a vectorised screen keeps it fast.

GX 1.x is the judge of every rule (the suites in expectations/ are GX suites, and every row that
ends in quarantine is one GX reported in ``unexpected_index_list``). Its cost on large frames is
the problem: ≈ 10 ms per expectation per run whatever the size, ≈ 0.1 s per expectation per
million rows, plus ≈ 0.8 s to fingerprint a million-row batch (measured in bench/quality.py). So:

- a frame of at most ``gx_full_rows`` rows is validated by GX alone, every expectation on every row;
- a larger frame is first *screened*: each expectation is evaluated vectorised with GX's own
  semantics (nulls skipped by map expectations, ``mostly``, nullity row conditions, inclusive
  bounds). Only the rows the screen flags go to GX, which confirms or clears each one; a
  table-level failure is confirmed by GX on the (narrow) full frame before it can stop a run.
  A suite using an expectation the screen does not implement goes to GX whole.

The screen is only ever an accelerator: it can send a row to GX for nothing (counted as a
``screen_false_positive``), and tests (tests/unit/test_quality_engine.py) hold it to GX's
verdicts on generated malformed data so that it never lets a row pass that GX would fail.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from claimsync.quality_rules import Rule, SuiteSpec

log = logging.getLogger(__name__)

# Up to this many rows GX validates a frame alone (≈ 0.3-0.5 s a suite); larger frames are screened.
GX_FULL_ROWS: Final = 100_000

_RESULT_FORMAT: Final = {"result_format": "COMPLETE", "partial_unexpected_count": 0}
_EMPTY: Final = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class CheckOutcome:
    """One rule's verdict on one frame. ``failing`` holds row positions (row-level rules only)."""

    rule: Rule
    success: bool
    failing: np.ndarray = field(default_factory=lambda: _EMPTY)
    unexpected_count: int = 0
    considered: int = 0
    observed: Any = None
    error: str | None = None
    skipped: bool = False

    @property
    def quarantines(self) -> bool:
        """Whether this outcome sends rows to quarantine (a failed row-level rule that named its rows)."""
        return self.rule.level == "row" and not self.success and self.error is None and len(self.failing) > 0

    @property
    def stops(self) -> bool:
        """Whether this outcome alone stops the run: a failed table-level rule, or a rule that could not run."""
        if self.skipped:
            return False
        return (self.rule.level == "table" and not self.success) or self.error is not None


@dataclass(frozen=True)
class SuiteEvaluation:
    suite: str
    rows: int
    outcomes: tuple[CheckOutcome, ...]
    engine: str  # "gx" (GX on every row) or "screen+gx" (screened, GX confirmed)
    screen_false_positives: int = 0
    seconds: float = 0.0

    def outcome(self, check: str) -> CheckOutcome:
        for outcome in self.outcomes:
            if outcome.rule.check == check:
                return outcome
        raise KeyError(check)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes if not o.skipped)


# ---------------------------------------------------------------------------------------------
# The validation view: what both GX and the screen look at.


def _repair_text(value: Any) -> Any:
    """A value an Arrow string can hold; undecodable bytes and lone surrogates become U+FFFD."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    return text


def text_view(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a RangeIndex and every object column as Arrow text (invalid text repaired to U+FFFD).

    Arrow cannot hold lone surrogates or undecodable bytes, and GX's regex checks convert to text
    first, so such values are repaired here — to U+FFFD, which the clean-text checks then reject.
    """
    view = frame.reset_index(drop=True)
    for name in view.columns:
        column = view[name]
        if column.dtype != object:
            continue
        try:
            view[name] = column.astype("str")
        except (UnicodeError, TypeError, ValueError):
            view[name] = column.map(_repair_text).astype("str")
    return view


# ---------------------------------------------------------------------------------------------
# The screen: GX's semantics, vectorised.


def _positions(mask: pd.Series | np.ndarray) -> np.ndarray:
    values = mask.to_numpy(dtype=bool, na_value=False) if isinstance(mask, pd.Series) else np.asarray(mask, bool)
    return np.flatnonzero(values).astype(np.int64)


def _map_result(rule: Rule, unexpected: np.ndarray, considered: int, mostly: float) -> CheckOutcome:
    count = len(unexpected)
    success = considered == 0 or (considered - count) / considered >= mostly
    return CheckOutcome(rule, success, unexpected, count, considered)


def _domain(frame: pd.DataFrame, kwargs: Mapping[str, Any]) -> pd.Series | None:
    """Rows a nullity ``row_condition`` selects (None: all rows)."""
    condition = kwargs.get("row_condition")
    if condition is None:
        return None
    if not (isinstance(condition, Mapping) and condition.get("type") == "nullity"):
        raise _Unscreenable(f"row_condition {condition!r}")
    column = frame[condition["column"]["name"]]
    selected: pd.Series = column.isna() if condition["is_null"] else column.notna()
    return selected


class _Unscreenable(Exception):
    """The screen does not implement this expectation: GX validates the whole suite."""


def _between_mask(values: pd.Series, kwargs: Mapping[str, Any]) -> pd.Series:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise ValueError("min_value and max_value cannot both be None")
    ok = pd.Series(True, index=values.index)
    if low is not None:
        ok &= (values > low) if kwargs.get("strict_min") else (values >= low)
    if high is not None:
        ok &= (values < high) if kwargs.get("strict_max") else (values <= high)
    return ~ok.astype(bool)


def _column_map(rule: Rule, frame: pd.DataFrame, kwargs: Mapping[str, Any]) -> CheckOutcome:
    column = frame[kwargs["column"]]
    domain = _domain(frame, kwargs)
    if domain is not None:
        column = column[domain.to_numpy(dtype=bool, na_value=False)]
    mostly = float(kwargs.get("mostly", 1.0))
    if rule.type == "expect_column_values_to_not_be_null":
        return _map_result(rule, column.index[column.isna()].to_numpy(np.int64), len(column), mostly)
    values = column[column.notna()]
    kind = rule.type
    if kind == "expect_column_values_to_be_unique":
        bad = values.duplicated(keep=False)
    elif kind == "expect_column_values_to_be_between":
        bad = _between_mask(values, kwargs)
    elif kind == "expect_column_values_to_be_in_set":
        bad = ~values.isin(list(kwargs["value_set"]))
    elif kind == "expect_column_values_to_match_regex":
        bad = ~values.astype(str).str.contains(kwargs["regex"]).astype(bool)
    elif kind == "expect_column_values_to_not_match_regex":
        bad = values.astype(str).str.contains(kwargs["regex"]).astype(bool)
    elif kind == "expect_column_value_lengths_to_be_between":
        bad = _between_mask(values.str.len(), kwargs)
    else:
        raise _Unscreenable(kind)
    return _map_result(rule, values.index[bad.to_numpy(dtype=bool)].to_numpy(np.int64), len(values), mostly)


def _screen_rule(rule: Rule, frame: pd.DataFrame, kwargs: Mapping[str, Any]) -> CheckOutcome:
    kind = rule.type
    if kind.startswith("expect_column_value"):
        return _column_map(rule, frame, kwargs)
    if kind == "expect_compound_columns_to_be_unique":
        if kwargs.get("row_condition") is not None or kwargs.get("ignore_row_if", "all_values_are_missing") != (
            "all_values_are_missing"
        ):
            raise _Unscreenable(kind)
        sub = frame[list(kwargs["column_list"])]
        sub = sub[sub.notna().any(axis=1)]
        bad = sub.duplicated(keep=False)
        return _map_result(rule, sub.index[bad.to_numpy()].to_numpy(np.int64), len(sub), float(kwargs.get("mostly", 1)))
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        if kwargs.get("row_condition") is not None or kwargs.get("ignore_row_if") != "either_value_is_missing":
            raise _Unscreenable(kind)
        a, b = frame[kwargs["column_A"]], frame[kwargs["column_B"]]
        both = a.notna() & b.notna()
        a, b = a[both], b[both]
        ok = (a >= b) if kwargs.get("or_equal") else (a > b)
        bad = ~ok.to_numpy(dtype=bool)
        return _map_result(rule, a.index[bad].to_numpy(np.int64), len(a), float(kwargs.get("mostly", 1)))
    if kind == "expect_table_columns_to_match_set":
        wanted = set(kwargs["column_set"])
        present = set(frame.columns)
        success = wanted <= present if not kwargs.get("exact_match", True) else wanted == present
        return CheckOutcome(rule, success, observed=sorted(wanted - present))
    if kind == "expect_table_row_count_to_be_between":
        if kwargs.get("row_condition") is not None:
            raise _Unscreenable(kind)
        rows = len(frame)
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        success = (low is None or rows >= low) and (high is None or rows <= high)
        return CheckOutcome(rule, success, observed=rows)
    raise _Unscreenable(kind)


def screen(rules: Iterable[Rule], frame: pd.DataFrame, parameters: Mapping[str, Any]) -> list[CheckOutcome]:
    """Evaluate ``rules`` vectorised with GX's semantics (raises _Unscreenable for anything else)."""
    return [_screen_rule(rule, frame, rule.resolved_kwargs(parameters)) for rule in rules]


# ---------------------------------------------------------------------------------------------
# GX itself.


class GxValidator:
    """An ephemeral GX context with one pandas data source; one ValidationDefinition per call.

    Creating it imports great_expectations (≈ 2.5-3.5 s the first time in a process), so build
    one per run, inside the task, never at import or DAG-parse time.
    """

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self._gx = gx
        self._context = gx.get_context(mode="ephemeral", project_config=config)
        self._source = self._context.data_sources.add_pandas("claimsync")
        self._serial = itertools.count()

    def suite(self, spec: SuiteSpec, rules: Sequence[Rule]) -> Any:
        """The GX ExpectationSuite of ``spec`` restricted to ``rules`` (same JSON, fewer expectations)."""
        checks = {r.check for r in rules}
        document = dict(spec.document)
        document["expectations"] = [
            e for e in spec.document.get("expectations", ()) if (e.get("meta") or {}).get("check") in checks
        ]
        return self._gx.ExpectationSuite(**document)

    def run(
        self, spec: SuiteSpec, rules: Sequence[Rule], frame: pd.DataFrame, parameters: Mapping[str, Any]
    ) -> list[CheckOutcome]:
        """Validate ``frame`` against ``rules`` with GX; row positions come from its index labels."""
        if not rules:
            return []
        serial = next(self._serial)
        name = f"{spec.name}_{serial}"
        asset = self._source.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("whole")
        suite = self._context.suites.add(self.suite(spec, rules))
        definition = self._context.validation_definitions.add(
            self._gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        needed = {p for r in rules for p in r.parameters}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = definition.run(
                batch_parameters={"dataframe": frame},
                expectation_parameters={k: v for k, v in parameters.items() if k in needed},
                result_format=_RESULT_FORMAT,
            )
        # An ephemeral context keeps everything in memory: drop what this call added.
        self._context.validation_definitions.delete(name)
        self._context.suites.delete(suite.name)
        self._source.delete_asset(name)
        by_check = {r.check: r for r in rules}
        outcomes = []
        for item in result.results:
            config = item.expectation_config
            rule = by_check[(config.meta or {})["check"] if config is not None else ""]
            info = item.exception_info or {}
            error = info.get("exception_message") if info.get("raised_exception") else None
            res = item.result or {}
            if rule.level == "row" and error is None:
                index = np.asarray(res.get("unexpected_index_list") or (), dtype=np.int64)
                failing = np.unique(index)
            else:
                failing = _EMPTY
            considered = int(res.get("element_count") or 0) - int(res.get("missing_count") or 0)
            outcomes.append(
                CheckOutcome(
                    rule=rule,
                    success=bool(item.success) and error is None,
                    failing=failing,
                    unexpected_count=int(res.get("unexpected_count") or 0),
                    considered=considered,
                    observed=res.get("observed_value"),
                    error=error,
                )
            )
        return outcomes


# ---------------------------------------------------------------------------------------------
# A suite over a frame.


def _skipped(rule: Rule) -> CheckOutcome:
    return CheckOutcome(rule, True, skipped=True)


def evaluate(
    spec: SuiteSpec,
    view: pd.DataFrame,
    parameters: Mapping[str, Any],
    gx_factory: Callable[[], GxValidator],
    *,
    gx_full_rows: int = GX_FULL_ROWS,
) -> SuiteEvaluation:
    """Validate ``view`` (a :func:`text_view`) against ``spec``.

    A rule reading a column the frame lacks is skipped (optional ``*_src`` and derived columns);
    a canonical column that is missing fails the suite's ``columns_present`` check instead.
    ``gx_factory`` returns the run's shared GxValidator (created on first use).
    """
    started = time.perf_counter()
    present = set(view.columns)
    runnable = [r for r in spec.rules if set(r.columns) <= present]
    skipped = [_skipped(r) for r in spec.rules if not set(r.columns) <= present]
    outcomes: list[CheckOutcome]
    engine = "gx"
    false_positives = 0
    screened: list[CheckOutcome] | None = None
    if len(view) > gx_full_rows:
        try:
            screened = screen(runnable, view, parameters)
        except _Unscreenable as exc:
            log.info("suite %s: the screen does not implement %s; GX validates all %d rows", spec.name, exc, len(view))
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("suite %s: the screen failed (%s); GX validates all %d rows", spec.name, exc, len(view))
    if screened is None:
        outcomes = gx_factory().run(spec, runnable, view, parameters)
    else:
        engine = "screen+gx"
        outcomes, false_positives = _confirm(spec, view, screened, parameters, gx_factory)
    order = {r.check: i for i, r in enumerate(spec.rules)}
    everything = sorted([*outcomes, *skipped], key=lambda o: order[o.rule.check])
    return SuiteEvaluation(
        suite=spec.name,
        rows=len(view),
        outcomes=tuple(everything),
        engine=engine,
        screen_false_positives=false_positives,
        seconds=time.perf_counter() - started,
    )


def _confirm(
    spec: SuiteSpec,
    view: pd.DataFrame,
    screened: list[CheckOutcome],
    parameters: Mapping[str, Any],
    gx_factory: Callable[[], GxValidator],
) -> tuple[list[CheckOutcome], int]:
    """GX's verdict on what the screen flagged: the candidate rows, and any failed table-level rule."""
    final: dict[str, CheckOutcome] = {o.rule.check: o for o in screened}
    row_rules = [o.rule for o in screened if o.rule.level == "row"]
    candidates = np.unique(np.concatenate([o.failing for o in screened if o.rule.level == "row"] or [_EMPTY]))
    false_positives = 0
    if len(candidates):
        subset = view.iloc[candidates]  # a RangeIndex view: labels stay the full frame's positions
        for outcome in gx_factory().run(spec, row_rules, subset, parameters):
            flagged = final[outcome.rule.check].failing
            false_positives += len(np.setdiff1d(flagged, outcome.failing))
            # The subset cannot judge `mostly`: keep the screen's ratio, with GX's rows.
            success = (
                outcome.success
                if float(outcome.rule.kwargs.get("mostly", 1)) >= 1
                else final[outcome.rule.check].success
            )
            final[outcome.rule.check] = CheckOutcome(
                outcome.rule,
                success and outcome.error is None,
                outcome.failing,
                len(outcome.failing),
                final[outcome.rule.check].considered,
                error=outcome.error,
            )
    failed_tables = [o.rule for o in screened if o.rule.level == "table" and not o.success]
    if failed_tables:
        columns = sorted({c for r in failed_tables for c in r.columns})
        narrow = view[columns] if columns else view.iloc[:, :0].assign(_row=0)
        if any(r.type == "expect_table_columns_to_match_set" for r in failed_tables):
            narrow = view
        for outcome in gx_factory().run(spec, failed_tables, narrow, parameters):
            final[outcome.rule.check] = outcome
    return [final[o.rule.check] for o in screened], false_positives

"""Run an expectation suite over a frame: Great Expectations decides, a vectorised screen keeps it fast.

GX 1.x is the judge of every rule (the suites in expectations/ are GX suites, and every row that
ends in quarantine is one GX reported in ``unexpected_index_list``). Its cost on large frames is
the problem: ≈ 10 ms per expectation per run whatever the size, ≈ 0.1 s per expectation per
million rows, plus ≈ 0.8 s to fingerprint a million-row batch (measured in bench/quality.py). So:

- a run of at most ``gx_full_rows`` rows in all (an incremental sync) is validated by GX alone,
  every expectation on every row;
- a larger one is first *screened*, frame by frame: each expectation is evaluated vectorised with GX's own
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
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from claimsync.quality_rules import Rule, SuiteSpec

log = logging.getLogger(__name__)

# Up to this many rows (a run's frames in all) GX validates alone (≈ 0.2-0.5 s a suite); more are screened.
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


def arrow_text(values: pd.Series) -> Any:
    """The Arrow string array under an Arrow-backed text column (zero-copy), else None."""
    if not isinstance(values.dtype, pd.StringDtype) or values.dtype.storage != "pyarrow":
        return None
    array = pa.array(values.array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if pa.types.is_large_string(array.type) or pa.types.is_string(array.type) else None


# A regex that is one character class ([...] or [^...]): a value matches iff it contains one of
# those characters, so it matches *some* value iff it matches the values' bytes laid end to end.
_CHAR_CLASS = re.compile(r"^\[[^\[\]]+\]$")


def _no_value_matches(values: pd.Series, regex: str) -> bool:
    """True when certainly no value contains a match of the one-class ``regex`` (one RE2 pass over the data buffer).

    False means "maybe": the caller checks row by row. Exact because UTF-8 never joins two
    values' characters into a new one; unused bytes under null slots can only cause a "maybe".
    """
    array = arrow_text(values)
    if array is None or not _CHAR_CLASS.match(regex):
        return False
    for chunk in [array]:
        if len(chunk) == 0:
            continue
        _, offsets, data = chunk.buffers()
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        bounds = np.frombuffer(offsets, dtype=width)[chunk.offset : chunk.offset + len(chunk) + 1]
        start, end = int(bounds[0]), int(bounds[-1])
        if data is None or end <= start:
            continue
        whole = pa.LargeStringArray.from_buffers(
            1, pa.py_buffer(np.array([0, end - start], dtype=np.int64)), data.slice(start, end - start)
        )
        if pc.any(pc.match_substring_regex(whole, regex)).as_py():
            return False
    return True


class _Columns:
    """Per-frame cache: each text column dictionary-encoded once, shared by the rules reading it."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._encoded: dict[str, tuple[np.ndarray, pd.Series] | None] = {}

    def repetitive(self, name: str, sample: int = 20_000) -> bool:
        """Whether a column's values repeat enough for per-distinct-value judging to pay (estimated)."""
        column = self.frame[name]
        if len(column) < 4 * sample:
            return len(column) > 0
        picked = column.iloc[np.linspace(0, len(column) - 1, sample).astype(np.int64)]
        return int(picked.nunique()) * 4 < sample

    def encoded(self, name: str) -> tuple[np.ndarray, pd.Series] | None:
        """(row → dictionary position, the distinct values) of a text column; nulls get -1."""
        if name not in self._encoded:
            array = arrow_text(self.frame[name])
            if array is None:
                self._encoded[name] = None
            else:
                dictionary = pc.dictionary_encode(array)
                codes = dictionary.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
                distinct = pd.Series(dictionary.dictionary.to_pandas(), dtype="str")
                self._encoded[name] = (codes, distinct)
        return self._encoded[name]


def _value_rule(kind: str, values: pd.Series, kwargs: Mapping[str, Any]) -> pd.Series:
    """The failing mask of a value-local rule over non-null ``values``."""
    if kind == "expect_column_values_to_be_between":
        return _between_mask(values, kwargs)
    if kind == "expect_column_values_to_be_in_set":
        return ~values.isin(list(kwargs["value_set"]))
    if kind == "expect_column_values_to_match_regex":
        return ~values.astype(str).str.contains(kwargs["regex"]).astype(bool)
    if kind == "expect_column_values_to_not_match_regex":
        return values.astype(str).str.contains(kwargs["regex"]).astype(bool)
    if kind == "expect_column_value_lengths_to_be_between":
        return _between_mask(values.str.len(), kwargs)
    raise _Unscreenable(kind)


def _duplicated(codes: np.ndarray) -> np.ndarray:
    """Rows whose (non-negative) code occurs more than once."""
    if len(codes) == 0:
        return np.zeros(0, dtype=bool)
    counts = np.bincount(codes)
    return np.asarray(counts[codes] > 1, dtype=bool)


def _codes(column: pd.Series, cache: _Columns | None, name: str | None) -> np.ndarray:
    """Non-negative codes with equal values (and all nulls) sharing one code."""
    if pd.api.types.is_integer_dtype(column.dtype) and len(column) and not column.hasnans:
        numbers = column.to_numpy(dtype=np.int64)
        low, high = int(numbers.min()), int(numbers.max())
        if high - low < 4 * len(numbers) + 1024:  # small integers (line numbers): the value is the code
            return numbers - low
    encoded = cache.encoded(name) if cache is not None and name is not None else None
    if encoded is not None:
        codes = encoded[0][column.index.to_numpy()] if len(column) != len(cache.frame) else encoded[0]  # type: ignore[union-attr]
    else:
        codes, _ = pd.factorize(column, use_na_sentinel=True)
        codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes < 0, codes.max(initial=-1) + 1, codes)


def _sort_key(column: pd.Series) -> Any:
    """An Arrow array ordered like the column's values (text as is, or as numbers when all digits), else None."""
    if pd.api.types.is_integer_dtype(column.dtype):
        return pa.array(column.to_numpy(dtype=np.int64))
    array = arrow_text(column)
    if array is None:
        return None
    if pc.all(pc.less_equal(array[:-1], array[1:])).as_py() is not False:
        return array
    if pc.all(pc.match_substring_regex(array, "^[0-9]{1,18}$")).as_py():
        return pc.cast(array, pa.int64())
    return None


def _strictly_increasing(frame: pd.DataFrame, names: Sequence[str]) -> bool:
    """Whether the rows are sorted strictly by the tuple of ``names`` (non-null): then no tuple repeats.

    Canonical lines come ordered by claim and line number, so this O(n) comparison usually
    settles uniqueness without hashing millions of keys; False just means "check by hashing".
    """
    if len(frame) < 2:
        return True
    keys = [_sort_key(frame[n]) for n in names]
    if any(k is None for k in keys):
        return False
    # Row i > row i-1 lexicographically over the tuple.
    greater = np.zeros(len(frame) - 1, dtype=bool)
    equal_so_far = np.ones(len(frame) - 1, dtype=bool)
    for key in keys:
        previous, current = key[:-1], key[1:]
        greater |= equal_so_far & pc.greater(current, previous).to_numpy(zero_copy_only=False)
        equal_so_far &= pc.equal(current, previous).to_numpy(zero_copy_only=False)
    return bool(greater.all())


def _column_map(rule: Rule, frame: pd.DataFrame, kwargs: Mapping[str, Any], cache: _Columns) -> CheckOutcome:
    name = kwargs["column"]
    column = frame[name]
    domain = _domain(frame, kwargs)
    whole = domain is None
    if domain is not None:
        column = column[domain.to_numpy(dtype=bool, na_value=False)]
    mostly = float(kwargs.get("mostly", 1.0))
    kind = rule.type
    if kind == "expect_column_values_to_not_be_null":
        return _map_result(rule, column.index[column.isna()].to_numpy(np.int64), len(column), mostly)
    present = column.notna().to_numpy(dtype=bool)
    values = column[present]
    if kind == "expect_column_values_to_be_unique":
        if len(values) == len(column) and _strictly_increasing(column.to_frame(), [name]):
            return _map_result(rule, _EMPTY, len(values), mostly)
        codes = _codes(values, cache if whole else None, name)
        bad_rows = values.index.to_numpy(np.int64)[_duplicated(codes)]
        return _map_result(rule, bad_rows, len(values), mostly)
    if kind == "expect_column_values_to_not_match_regex" and _no_value_matches(values, kwargs["regex"]):
        return _map_result(rule, _EMPTY, len(values), mostly)
    # Set membership and patterns are judged once per distinct value when values repeat a lot.
    by_value = kind == "expect_column_values_to_match_regex"
    encoded = cache.encoded(name) if whole and by_value and cache.repetitive(name) else None
    if encoded is not None and len(encoded[1]) * 4 < len(column):
        # Few distinct values: judge each once, then spread the verdict to the rows.
        codes, distinct = encoded
        bad_distinct = _value_rule(kind, distinct, kwargs).to_numpy(dtype=bool)
        bad = np.zeros(len(column), dtype=bool)
        valid = codes >= 0
        bad[valid] = bad_distinct[codes[valid]]
        return _map_result(rule, np.flatnonzero(bad).astype(np.int64), len(values), mostly)
    bad_values = _value_rule(kind, values, kwargs)
    return _map_result(rule, values.index[bad_values.to_numpy(dtype=bool)].to_numpy(np.int64), len(values), mostly)


def _screen_rule(rule: Rule, frame: pd.DataFrame, kwargs: Mapping[str, Any], cache: _Columns) -> CheckOutcome:
    kind = rule.type
    if kind.startswith("expect_column_value"):
        return _column_map(rule, frame, kwargs, cache)
    if kind == "expect_compound_columns_to_be_unique":
        if kwargs.get("row_condition") is not None or kwargs.get("ignore_row_if", "all_values_are_missing") != (
            "all_values_are_missing"
        ):
            raise _Unscreenable(kind)
        names = list(kwargs["column_list"])
        considered = np.logical_or.reduce([frame[n].notna().to_numpy(dtype=bool) for n in names])
        if considered.all() and _strictly_increasing(frame, names):
            return _map_result(rule, _EMPTY, len(frame), float(kwargs.get("mostly", 1)))
        key = np.zeros(len(frame), dtype=np.int64)
        for name in names:
            codes = _codes(frame[name], cache, name)
            width = int(codes.max(initial=0)) + 1
            if width and key.max(initial=0) > np.iinfo(np.int64).max // width:
                key, _ = pd.factorize(pd.Series(key))  # keep the combined key in range
                key = np.asarray(key, dtype=np.int64)
            key = key * width + codes
        combined = key[considered]
        if combined.max(initial=0) >= 8 * len(combined) + 1024:  # sparse keys: make them dense first
            combined = np.asarray(pd.factorize(combined)[0], dtype=np.int64)
        bad = _duplicated(combined)
        rows = np.flatnonzero(considered)[bad].astype(np.int64)
        return _map_result(rule, rows, int(considered.sum()), float(kwargs.get("mostly", 1)))
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
    cache = _Columns(frame)
    return [_screen_rule(rule, frame, rule.resolved_kwargs(parameters), cache) for rule in rules]


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


@dataclass(frozen=True)
class Screening:
    """The screen's verdicts on one frame (None: the screen could not judge it, GX judges it whole)."""

    outcomes: list[CheckOutcome] | None
    seconds: float


def _runnable(spec: SuiteSpec, view: pd.DataFrame) -> tuple[list[Rule], list[CheckOutcome]]:
    present = set(view.columns)
    runnable = [r for r in spec.rules if set(r.columns) <= present]
    skipped = [_skipped(r) for r in spec.rules if not set(r.columns) <= present]
    return runnable, skipped


def prescreen(spec: SuiteSpec, view: pd.DataFrame, parameters: Mapping[str, Any]) -> Screening:
    """Run the screen alone (thread-safe: no GX), so a big run can screen its frames side by side."""
    started = time.perf_counter()
    runnable, _ = _runnable(spec, view)
    try:
        outcomes: list[CheckOutcome] | None = screen(runnable, view, parameters)
    except _Unscreenable as exc:
        log.info("suite %s: the screen does not implement %s; GX validates all %d rows", spec.name, exc, len(view))
        outcomes = None
    except (TypeError, ValueError, KeyError) as exc:
        log.warning("suite %s: the screen failed (%s); GX validates all %d rows", spec.name, exc, len(view))
        outcomes = None
    return Screening(outcomes, time.perf_counter() - started)


def evaluate(
    spec: SuiteSpec,
    view: pd.DataFrame,
    parameters: Mapping[str, Any],
    gx_factory: Callable[[], GxValidator],
    *,
    gx_full_rows: int = GX_FULL_ROWS,
    screening: Screening | None = None,
) -> SuiteEvaluation:
    """Validate ``view`` (a :func:`text_view`) against ``spec``.

    A rule reading a column the frame lacks is skipped (optional ``*_src`` and derived columns);
    a canonical column that is missing fails the suite's ``columns_present`` check instead.
    ``gx_factory`` returns the run's shared GxValidator (created on first use). ``screening``
    passes in a :func:`prescreen` already done.
    """
    started = time.perf_counter()
    runnable, skipped = _runnable(spec, view)
    outcomes: list[CheckOutcome]
    engine = "gx"
    false_positives = 0
    if screening is None and (gx_full_rows <= 0 or len(view) > gx_full_rows):
        screening = prescreen(spec, view, parameters)
    screened = screening.outcomes if screening is not None else None
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
        seconds=time.perf_counter() - started + (screening.seconds if screening is not None else 0.0),
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
    # GX judges the rules that flagged rows, on every flagged row (its cost grows with the rules).
    row_rules = [o.rule for o in screened if o.rule.level == "row" and len(o.failing)]
    candidates = np.unique(np.concatenate([o.failing for o in screened if o.rule.level == "row"] or [_EMPTY]))
    false_positives = 0
    if len(candidates):
        subset = view.iloc[candidates]  # a RangeIndex view: labels stay the full frame's positions
        for outcome in gx_factory().run(spec, row_rules, subset, parameters):
            flagged = final[outcome.rule.check].failing
            false_positives += len(np.setdiff1d(flagged, outcome.failing))
            # The subset cannot judge `mostly`: keep the screen's ratio, with GX's rows.
            mostly = outcome.rule.resolved_kwargs(parameters).get("mostly", 1)
            success = outcome.success if float(mostly) >= 1 else final[outcome.rule.check].success
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

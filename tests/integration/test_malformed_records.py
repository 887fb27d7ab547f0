"""Thousands of malformed records mixed into demo data: every bad one is quarantined, no good one is.

Hypothesis draws batches of defects from tests/integration/malformed.py (bad encodings,
NULs and control characters, NULL and duplicated keys, negative and 3-decimal amounts,
unknown states and currencies, impossible and future dates, overlong text) plus valid rows
with Chinese, emoji and SQL-looking text, and mixes them into the demo's raw frames at the
seam between claimsync.extract.extract_raw and claimsync.canonical.canonicalize. Over the
run at least 10,000 malformed records go through the gate; batches alternate between GX on
every row and the vectorised screen with GX confirming, so both paths are held to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimsync.canonical import canonicalize
from claimsync.extract import extract_raw
from claimsync.pgserver import PgServer
from claimsync.quality import QualityOutcome, frames_of, validate_sources
from claimsync.quality_engine import GxValidator
from claimsync.quality_gates import record_keys
from claimsync.quality_rules import SOURCE_SUITES
from tests.integration.malformed import DEFECTS, Bases, Injection, expected, mix
from tests.integration.sync_support import AS_OF, Template, clone, drop_template, make_template

pytestmark = pytest.mark.slow

BATCHES = 12
COPIES = 6  # each drawn (defect, payload, choice) is injected this many times with shifted choices


@pytest.fixture(scope="module")
def template(pg_server: PgServer) -> Iterator[Template]:
    made = make_template(pg_server, scale=150, seed=7)
    yield made
    drop_template(made)


@pytest.fixture(scope="module")
def raw(template: Template) -> Any:
    systems = clone(template)
    try:
        oa, expense = systems.engine("oa"), systems.engine("expense")
        try:
            return extract_raw(oa, expense, systems.settings)
        finally:
            oa.dispose()
            expense.dispose()
    finally:
        systems.drop()


@pytest.fixture(scope="module")
def gx() -> GxValidator:
    return GxValidator()


PAYLOAD = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\ufffd"), max_size=40
) | st.sampled_from(["差旅费报销-张伟", "😀🚀", "'); DROP TABLE ekb.flow;--", "ＡＢＣ全角", "  spaced  "])
DRAW = st.tuples(PAYLOAD, st.integers(min_value=0, max_value=10**6))
# Every batch holds every defect (two or three draws each), so no batch is all one kind.
BATCH = st.fixed_dictionaries({d.name: st.lists(DRAW, min_size=2, max_size=3) for d in DEFECTS})


def keys_by_frame(sides: Any) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for suite, frame in frames_of(sides).items():
        found.setdefault(SOURCE_SUITES[suite], set()).update(record_keys(suite, frame).dropna().tolist())
    return found


def check_outcome(outcome: QualityOutcome, baseline: dict[tuple[str, str], set[str]], want: dict[str, Any]) -> None:
    q = outcome.quarantine
    assert (q["reason"].str.len() > 0).all()
    assert q["expectation"].str.contains(".", regex=False).all()
    quarantined: dict[tuple[str, str], set[str]] = {}
    for row in q.itertuples():
        quarantined.setdefault((row.source, row.entity), set()).add(row.record_key)
    clean = keys_by_frame(outcome.sides)
    keyless_expected: dict[tuple[str, str], int] = {}
    for source, entity, key in want["quarantined"]:
        if key is None:
            keyless_expected[(source, entity)] = keyless_expected.get((source, entity), 0) + 1
            continue
        assert key in quarantined.get((source, entity), set()), f"{source}/{entity} {key!r} was not quarantined"
        assert key not in clean.get((source, entity), set()), f"{source}/{entity} {key!r} reached the clean frames"
    for (source, entity), count in keyless_expected.items():
        fingerprints = {k for k in quarantined.get((source, entity), set()) if k.startswith("row:")}
        assert len(fingerprints) >= count
    frames = frames_of(outcome.sides)
    for suite, column, value in want["markers"]:
        assert value not in set(frames[suite][column].dropna().astype(str)), f"{suite} {value} reached the clean frames"
    # Nothing of the demo's own rows and no valid injected row was touched.
    for pair, keys in baseline.items():
        assert keys <= clean.get(pair, set()), f"valid {pair} rows were left out: {sorted(keys - clean[pair])[:5]}"
        assert not keys & quarantined.get(pair, set())
    for source, entity, key in want["survivors"]:
        assert key in clean[(source, entity)], f"valid {source}/{entity} {key!r} was quarantined"


def test_demo_data_alone_passes_untouched(raw: Any, gx: GxValidator) -> None:
    sides = canonicalize(raw, _settings())
    outcome = validate_sources(sides, settings=_settings(), as_of=AS_OF, run_id="clean", gx=gx, full_run=True)
    assert outcome.gate == "passed"
    assert outcome.quarantine.empty
    for name, frame in frames_of(sides).items():
        assert len(frames_of(outcome.sides)[name]) == len(frame)


def _settings() -> Any:
    from claimsync.config import Settings

    return Settings()


def test_malformed_records_all_end_in_quarantine(raw: Any, gx: GxValidator) -> None:
    baseline = keys_by_frame(canonicalize(raw, _settings()))
    seen = {"records": 0, "bad_rows": 0, "batches": 0, "defects": set()}

    @settings(
        max_examples=BATCHES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow, HealthCheck.large_base_example],
    )
    @given(drawn=BATCH)
    def check(drawn: dict[str, list[tuple[str, int]]]) -> None:
        base = Bases(raw)
        batch = [
            (defect, payload, choice + 7919 * copy)
            for defect in DEFECTS
            for payload, choice in drawn[defect.name]
            for copy in range(COPIES)
        ]
        offset = seen["records"]
        injections: list[Injection] = [
            defect.build(base, offset + i, payload, choice) for i, (defect, payload, choice) in enumerate(batch)
        ]
        want = expected(injections)
        sides = canonicalize(mix(raw, injections), _settings())
        screened = seen["batches"] % 2 == 1
        outcome = validate_sources(
            sides,
            settings=_settings(),
            as_of=AS_OF,
            run_id=f"malformed-{seen['batches']}",
            gx=gx,
            force=True,
            full_run=False,
            gx_full_rows=0 if screened else 10**9,
        )
        check_outcome(outcome, baseline, want)
        if screened:
            assert all(s.screen_false_positives == 0 for s in outcome.suites)
        seen["records"] += len(batch)
        seen["bad_rows"] += want["bad_rows"]
        seen["batches"] += 1
        seen["defects"] |= {d.name for d, _, _ in batch}

    check()
    assert seen["bad_rows"] >= 10_000
    assert seen["defects"] >= {d.name for d in DEFECTS if d.bad}


def test_surrogates_in_amount_text_do_not_break_canonicalize(raw: Any, gx: GxValidator) -> None:
    """A lone surrogate where an amount should be: the row is quarantined, nothing raises."""
    base = Bases(raw)
    injection = Injection()
    from tests.integration.malformed import oa_claim

    rid = oa_claim(base, 1, injection, bxje="12\ud80034")
    sides = canonicalize(mix(raw, [injection]), _settings())
    outcome = validate_sources(sides, settings=_settings(), as_of=AS_OF, run_id="s", gx=gx, force=True)
    assert f"oa:{rid}" in set(outcome.quarantine["record_key"])
    assert pd.isna(sides.oa_claims.set_index("request_id").at[rid, "amount_cents"])


# --- through a real sync: nothing bad is written, everything valid still is -----------------------

BAD_BATCH = st.fixed_dictionaries({d.name: st.lists(DRAW, min_size=1, max_size=2) for d in DEFECTS if d.bad})


def _with_extra(sides: Any, extra: Any) -> Any:
    """``sides`` plus the canonicalized injected rows, frame by frame."""
    from dataclasses import replace

    frames = frames_of(sides)
    added = frames_of(extra)
    return replace(
        sides,
        **{name: pd.concat([frames[name], added[name]], ignore_index=True) for name in frames if len(added[name])},
    )


def _like(sides: Any, original: Any) -> Any:
    """The gate's clean frames with the dtypes the planner expects (concat made some columns objects)."""
    from dataclasses import replace

    out = {}
    for name, frame in frames_of(sides).items():
        dtypes = frames_of(original)[name].dtypes
        out[name] = frame.astype({c: dtypes[c] for c in frame.columns if c in dtypes and frame[c].dtype != dtypes[c]})
    return replace(sides, **out)


@pytest.fixture(scope="module")
def clean_sync(template: Template) -> Any:
    from claimsync import quality_gates
    from claimsync.sync import run_sync
    from tests.integration.sync_support import snapshot

    systems = clone(template)
    try:
        outcome = run_sync(
            systems.settings, "all", full=True, as_of=AS_OF, triggered_by="test", force=True,
            source_gate=quality_gates.source_gate(systems.settings),
            delta_gate=quality_gates.delta_gate(systems.settings),
        )  # fmt: skip
        assert outcome.written > 0
        return snapshot(systems, runs=False)
    finally:
        systems.drop()


def test_malformed_records_are_never_written_and_valid_rows_still_sync(
    template: Template, raw: Any, clean_sync: Any
) -> None:
    from dataclasses import replace

    import sqlalchemy as sa

    from claimsync import quality_gates
    from claimsync.sync import run_sync
    from tests.integration.sync_support import snapshot

    empty = replace(raw, **{name: frame.iloc[:0] for name, frame in frames_of_raw(raw).items()})
    runs = {"n": 0}

    @settings(
        max_examples=3,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow, HealthCheck.large_base_example],
    )
    @given(drawn=BAD_BATCH)
    def check(drawn: dict[str, list[tuple[str, int]]]) -> None:
        base = Bases(raw)
        batch = [(d, p, c) for d in DEFECTS if d.bad for p, c in drawn[d.name]]
        injections = [d.build(base, 500_000 + runs["n"] * 10_000 + i, p, c) for i, (d, p, c) in enumerate(batch)]
        want = expected(injections)
        extra = canonicalize(mix(empty, injections), _settings())
        systems = clone(template)
        try:
            gate = quality_gates.source_gate(systems.settings)

            def mixed(sides: Any, run: Any) -> Any:
                return _like(gate(_with_extra(sides, extra), run), sides)

            outcome = run_sync(
                systems.settings, "all", full=True, as_of=AS_OF, triggered_by="test", force=True,
                source_gate=mixed, delta_gate=quality_gates.delta_gate(systems.settings),
            )  # fmt: skip
            assert outcome.status == "succeeded"
            # Both systems hold exactly what a sync without the bad records writes: none of them,
            # and every valid change.
            assert snapshot(systems, runs=False) == clean_sync
            state = systems.engine("state")
            try:
                with state.connect() as conn:
                    stored = {
                        (r.source, r.entity, r.record_key)
                        for r in conn.execute(
                            sa.text(
                                "SELECT source, entity, record_key FROM claimsync.quarantine WHERE last_run_id = :r"
                            ),
                            {"r": outcome.run_id},
                        )
                    }
            finally:
                state.dispose()
            missing = [e for e in want["quarantined"] if e[2] is not None and e not in stored]
            assert missing == []
        finally:
            systems.drop()
        runs["n"] += 1

    check()
    assert runs["n"] == 3


def frames_of_raw(raw: Any) -> dict[str, pd.DataFrame]:
    return {name: getattr(raw, name) for name in SOURCE_SUITES}

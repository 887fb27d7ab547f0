"""A full reconciliation of generated demo data finds exactly the planted exceptions.

claimsync.demo plants breaks of every code and writes the answer key from its own reading
of claimsync.rules; extract_sides + reconcile read the same rules independently. Per code,
the business keys found must equal the key's, in full and when bucketed.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from claimsync.config import Settings
from claimsync.demo import AnswerKey, generate
from claimsync.extract import extract_sides
from claimsync.reconcile import ReconResult, merge_results, reconcile
from claimsync.refschema import create_reference_schema
from claimsync.rules import RECONCILE_CODES
from tests.conftest import Databases

AS_OF = datetime(2026, 3, 31, 18, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _found(result: ReconResult) -> dict[str, list[str]]:
    return {
        code.value: sorted(result.exceptions.loc[result.exceptions["code"] == code.value, "business_key"])
        for code in RECONCILE_CODES
    }


def _expected(key: AnswerKey) -> dict[str, list[str]]:
    return {code.value: sorted(key.exceptions.get(code.value, ())) for code in RECONCILE_CODES}


def _generate(databases: Databases, scale: int, seed: int) -> tuple[Settings, AnswerKey]:
    settings = Settings()
    oa, expense = databases.engine("oa"), databases.engine("expense")
    create_reference_schema(oa, "oa", recreate=True)
    create_reference_schema(expense, "expense", recreate=True)
    key = generate(oa, expense, scale=scale, seed=seed, as_of=AS_OF, settings=settings)
    return settings, key


@pytest.mark.parametrize(("scale", "seed"), [(300, 1), (2000, 7), (5000, 42)])
def test_full_reconcile_finds_exactly_the_planted_exceptions(databases: Databases, scale: int, seed: int) -> None:
    settings, key = _generate(databases, scale, seed)
    sides = extract_sides(databases.engine("oa"), databases.engine("expense"), settings)
    result = reconcile(sides, as_of=key.as_of, settings=settings)
    found, expected = _found(result), _expected(key)
    for code in expected:
        missing = sorted(set(expected[code]) - set(found[code]))
        extra = sorted(set(found[code]) - set(expected[code]))
        assert (missing, extra) == ([], []), f"{code}: missing {missing[:10]} extra {extra[:10]}"
    assert result.oa_claims > 0
    assert result.expense_claims > 0


def test_bucketed_reconcile_of_demo_data_equals_the_answer_key(databases: Databases) -> None:
    settings, key = _generate(databases, 2000, 11)
    oa, expense = databases.engine("oa"), databases.engine("expense")
    single = reconcile(extract_sides(oa, expense, settings), as_of=key.as_of, settings=settings)
    buckets = [
        reconcile(extract_sides(oa, expense, settings, bucket=(i, 4)), as_of=key.as_of, settings=settings)
        for i in range(4)
    ]
    merged = merge_results(buckets)
    assert _found(merged) == _expected(key)
    assert merged.exceptions.equals(single.exceptions)
    assert (merged.oa_claims, merged.expense_claims, merged.matched, merged.clean_matched) == (
        single.oa_claims,
        single.expense_claims,
        single.matched,
        single.clean_matched,
    )

"""The exception list's filters and page cursor, parsed strictly from a request's query.

Every value a request can send is checked against a closed vocabulary or a tight pattern
here; the SQL that uses them (claimsync.workspace.queries) binds them as parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final
from urllib.parse import urlencode

from claimsync.rules import ExceptionCode, Severity
from claimsync.workspace.errors import InvalidInput

STATUSES: Final = ("open", "acknowledged", "resolved", "written_off")
UNRESOLVED: Final = "unresolved"
AGE_BUCKETS: Final = ("0-7", "8-30", "31-60", "60+")
# Age in whole days since first seen: bucket → [lower, upper) days; None = unbounded.
AGE_BOUNDS: Final[dict[str, tuple[int | None, int | None]]] = {
    "0-7": (None, 8),
    "8-30": (8, 31),
    "31-60": (31, 61),
    "60+": (61, None),
}
SORTS: Final = ("amount", "age")
MAX_RUN_ID: Final = 250
_DEPARTMENT: Final = re.compile(r"^[\w.\-/ ]{1,60}$")
_SEARCH: Final = re.compile(r"^[\w.\-:]{1,60}$")
_OWNER: Final = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the last row's sort value and id (keyset paging)."""

    sort: str
    amount: Decimal | None = None
    first_seen: datetime | None = None
    id: int = 0

    def encode(self) -> str:
        value = str(self.amount) if self.sort == "amount" else (self.first_seen.isoformat() if self.first_seen else "")
        return f"{self.sort}~{value}~{self.id}"

    @classmethod
    def decode(cls, text: str, sort: str) -> Cursor:
        parts = text.split("~")
        if len(parts) != 3 or parts[0] != sort or not parts[2].isdigit() or len(text) > 80:
            raise InvalidInput(f"page cursor {text!r} is not valid for sort {sort!r}")
        try:
            if sort == "amount":
                amount = Decimal(parts[1])
                if not amount.is_finite():
                    raise InvalidOperation
                return cls(sort, amount=amount, id=int(parts[2]))
            first_seen = datetime.fromisoformat(parts[1])
            if first_seen.tzinfo is None:
                raise ValueError
            return cls(sort, first_seen=first_seen, id=int(parts[2]))
        except (InvalidOperation, ValueError):
            raise InvalidInput(f"page cursor {text!r} is not valid") from None


@dataclass(frozen=True)
class ExceptionFilter:
    """One list's filters. Empty means "any"; ``run_id`` scopes the list to what that run saw."""

    run_id: str | None = None
    code: str | None = None
    severity: str | None = None
    department: str | None = None
    age: str | None = None
    status: str | None = None
    owner: str | None = None
    q: str | None = None
    sort: str = "amount"

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ExceptionFilter:
        """From query parameters; an unknown value is a 400 naming the parameter, never ignored."""

        def get(name: str) -> str | None:
            value = params.get(name)
            if value is None:
                return None
            value = value.strip()
            return value or None

        def one_of(name: str, allowed: tuple[str, ...] | frozenset[str]) -> str | None:
            value = get(name)
            if value is not None and value not in allowed:
                raise InvalidInput(f"{name} must be one of {', '.join(sorted(allowed))}; got {value!r}")
            return value

        def matching(name: str, pattern: re.Pattern[str]) -> str | None:
            value = get(name)
            if value is not None and not pattern.match(value):
                raise InvalidInput(f"{name} {value!r} is not valid")
            return value

        run_id = get("run_id")
        if run_id is not None and (len(run_id) > MAX_RUN_ID or any(ord(ch) < 32 for ch in run_id)):
            raise InvalidInput("run_id is not valid")
        return cls(
            run_id=run_id,
            code=one_of("code", frozenset(c.value for c in ExceptionCode)),
            severity=one_of("severity", frozenset(s.value for s in Severity)),
            department=matching("department", _DEPARTMENT),
            age=one_of("age", AGE_BUCKETS),
            status=one_of("status", (*STATUSES, UNRESOLVED)),
            owner=matching("owner", _OWNER),
            q=matching("q", _SEARCH),
            sort=one_of("sort", SORTS) or "amount",
        )

    def params(self, **overrides: str | None) -> dict[str, str]:
        """The non-empty filters as query parameters (``sort`` only when not the default)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(overrides)
        return {k: str(v) for k, v in values.items() if v not in (None, "") and not (k == "sort" and v == "amount")}

    def query(self, **overrides: str | None) -> str:
        return urlencode(self.params(**overrides))

    def with_run(self, run_id: str | None) -> ExceptionFilter:
        return replace(self, run_id=run_id)

    @property
    def is_filtered(self) -> bool:
        return any(getattr(self, name) for name in ("code", "severity", "department", "age", "status", "owner", "q"))


def age_bounds(bucket: str, reference: datetime) -> tuple[datetime | None, datetime | None]:
    """(first_seen must be > this, first_seen must be <= this) for an age bucket at ``reference``."""
    lower_days, upper_days = AGE_BOUNDS[bucket]
    after = reference - timedelta(days=upper_days) if upper_days is not None else None
    not_after = reference - timedelta(days=lower_days) if lower_days is not None else None
    return after, not_after


def clean_owner(value: str | None) -> str | None:
    """An owner name as given in a form: trimmed, 1–100 printable characters, or None to unassign."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _OWNER.match(value):
        raise InvalidInput("owner must be 1–100 characters without control characters")
    return value

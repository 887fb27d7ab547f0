"""Configuration: connection URLs, the mapping onto the two systems, and the rules' knobs.

Everything comes from the environment (``CLAIMSYNC_*``) or from explicit arguments;
secrets only ever live inside the connection URLs and are never printed
(see :func:`claimsync.db.safe_url`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from claimsync.errors import ConfigError

# A configurable table, schema or column name: a plain SQL identifier, nothing else.
# Names are also quoted when used; this check makes a hostile name fail loudly instead.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

STATE_SCHEMA = "claimsync"


def identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a plain SQL identifier, else stop with a ConfigError."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(f"{what} must be a plain SQL identifier (letters, digits, underscore; max 63), got {value!r}")
    return value


@dataclass(frozen=True)
class SourceMapping:
    """Where the canonical model lives in the two systems (defaults: the reference schemas)."""

    oa_schema: str = "ecology"
    oa_form_table: str = "formtable_main_38"
    oa_form_lines_table: str = "formtable_main_38_dt1"
    oa_workflow_id: int = 38
    expense_schema: str = "ekb"
    expense_form_type: str = "expense"

    def __post_init__(self) -> None:
        identifier(self.oa_schema, "CLAIMSYNC_OA_SCHEMA")
        identifier(self.oa_form_table, "CLAIMSYNC_OA_FORM_TABLE")
        identifier(self.oa_form_lines_table, "CLAIMSYNC_OA_FORM_LINES_TABLE")
        identifier(self.expense_schema, "CLAIMSYNC_EXPENSE_SCHEMA")
        if not isinstance(self.oa_workflow_id, int) or self.oa_workflow_id <= 0:
            raise ConfigError(f"CLAIMSYNC_OA_WORKFLOW_ID must be a positive integer, got {self.oa_workflow_id!r}")


@dataclass(frozen=True)
class Settings:
    """All of claimsync's configuration. Build it with :meth:`from_env`."""

    oa_url: str | None = None
    expense_url: str | None = None
    state_url: str | None = None
    timezone: str = "Asia/Shanghai"
    grace: timedelta = timedelta(minutes=30)
    # Amount tolerance per currency; a currency not listed uses ``default_tolerance``.
    tolerances: Mapping[str, Decimal] = field(default_factory=lambda: {"CNY": Decimal("0.00")})
    default_tolerance: Decimal = Decimal("0.00")
    quarantine_threshold: float = 0.05
    delta_limit: float = 0.20
    buckets: int = 1
    overlap: timedelta = timedelta(minutes=5)
    claim_code_prefix: str = "B"
    mapping: SourceMapping = field(default_factory=SourceMapping)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def tolerance(self, currency: str) -> Decimal:
        return self.tolerances.get(currency.strip().upper(), self.default_tolerance)

    def with_urls(
        self, oa_url: str | None = None, expense_url: str | None = None, state_url: str | None = None
    ) -> Settings:
        return replace(
            self,
            oa_url=oa_url or self.oa_url,
            expense_url=expense_url or self.expense_url,
            state_url=state_url or self.state_url,
        )

    def require_urls(self, *names: str) -> None:
        """Stop with one line naming the env var to set when a needed URL is missing."""
        for name in names:
            if not getattr(self, f"{name}_url"):
                raise ConfigError(
                    f"no {name} database configured: set CLAIMSYNC_{name.upper()}_URL "
                    f"(a SQLAlchemy URL) or pass --{name}-url"
                )

    def config_version(self) -> str:
        """A short fingerprint of the non-secret settings, stored with every run."""
        public = asdict(self)
        for key in ("oa_url", "expense_url", "state_url"):
            public.pop(key)
        digest = hashlib.sha256(json.dumps(public, default=str, sort_keys=True).encode()).hexdigest()
        return digest[:12]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"CLAIMSYNC_{name}")
            return value.strip() if value and value.strip() else None

        kwargs: dict[str, Any] = {
            "oa_url": get("OA_URL"),
            "expense_url": get("EXPENSE_URL"),
            "state_url": get("STATE_URL"),
        }
        if (tz := get("TIMEZONE")) is not None:
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"CLAIMSYNC_TIMEZONE is not a known time zone: {tz!r}") from None
            kwargs["timezone"] = tz
        if (grace := get("GRACE_MINUTES")) is not None:
            kwargs["grace"] = timedelta(minutes=_non_negative_int(grace, "CLAIMSYNC_GRACE_MINUTES"))
        if (overlap := get("OVERLAP_MINUTES")) is not None:
            kwargs["overlap"] = timedelta(minutes=_non_negative_int(overlap, "CLAIMSYNC_OVERLAP_MINUTES"))
        if (tolerance := get("TOLERANCE")) is not None:
            kwargs["tolerances"] = _parse_tolerances(tolerance)
        if (threshold := get("QUARANTINE_THRESHOLD")) is not None:
            kwargs["quarantine_threshold"] = _fraction(threshold, "CLAIMSYNC_QUARANTINE_THRESHOLD")
        if (limit := get("DELTA_LIMIT")) is not None:
            kwargs["delta_limit"] = _fraction(limit, "CLAIMSYNC_DELTA_LIMIT")
        if (buckets := get("BUCKETS")) is not None:
            kwargs["buckets"] = max(1, _non_negative_int(buckets, "CLAIMSYNC_BUCKETS"))
        if (prefix := get("CLAIM_CODE_PREFIX")) is not None:
            if not re.fullmatch(r"[A-Z]{1,4}", prefix):
                raise ConfigError(f"CLAIMSYNC_CLAIM_CODE_PREFIX must be 1-4 capital letters, got {prefix!r}")
            kwargs["claim_code_prefix"] = prefix

        mapping_kwargs: dict[str, Any] = {}
        for env_name, attr in (
            ("OA_SCHEMA", "oa_schema"),
            ("OA_FORM_TABLE", "oa_form_table"),
            ("OA_FORM_LINES_TABLE", "oa_form_lines_table"),
            ("EXPENSE_SCHEMA", "expense_schema"),
        ):
            if (value := get(env_name)) is not None:
                mapping_kwargs[attr] = value
        if (workflow := get("OA_WORKFLOW_ID")) is not None:
            mapping_kwargs["oa_workflow_id"] = _non_negative_int(workflow, "CLAIMSYNC_OA_WORKFLOW_ID")
        if mapping_kwargs:
            kwargs["mapping"] = SourceMapping(**mapping_kwargs)
        return cls(**kwargs)


def _non_negative_int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{what} must be a whole number, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"{what} must not be negative, got {text!r}")
    return value


def _fraction(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a fraction such as 0.05, got {text!r}") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"{what} must be between 0 and 1, got {text!r}")
    return value


def _parse_tolerances(text: str) -> dict[str, Decimal]:
    """``CNY=0.00,USD=0.01`` → {currency: tolerance}."""
    result: dict[str, Decimal] = {}
    for item in text.split(","):
        currency, sep, amount = item.partition("=")
        currency = currency.strip().upper()
        if not sep or not re.fullmatch(r"[A-Z]{3}", currency):
            raise ConfigError(f"CLAIMSYNC_TOLERANCE must look like 'CNY=0.00,USD=0.01', got {text!r}")
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            raise ConfigError(f"CLAIMSYNC_TOLERANCE: {amount.strip()!r} is not an amount") from None
        if value < 0:
            raise ConfigError(f"CLAIMSYNC_TOLERANCE: tolerance for {currency} must not be negative")
        result[currency] = value
    return result


def parse_time(text: str, tz: ZoneInfo, what: str = "time") -> datetime:
    """Parse an ISO 8601 time or date; without an offset it means ``tz`` (default Asia/Shanghai).

    A bare date means the start of that day.
    """
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=tz)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{what} must be ISO 8601 like 2026-03-31T12:00:00+08:00 or 2026-03-31, got {text!r}"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)

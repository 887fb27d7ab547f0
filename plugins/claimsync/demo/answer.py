"""The answer key: what a full reconciliation at ``as_of`` must find on freshly generated demo data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from claimsync.errors import ConfigError
from claimsync.rules import RECONCILE_CODES


@dataclass(frozen=True)
class AnswerKey:
    """Planted exceptions by code, as business keys (claimsync.rules formats), sorted.

    ``exceptions`` has every code of ``rules.RECONCILE_CODES`` (an empty tuple when none is
    planted). ``fixed_by_sync`` is the subset one ``claimsync sync`` resolves on its own
    (a request it will create in expense, …); the rest need a person. ``details`` says, per
    code and key, which break was planted, in words. ``seconds`` is how long generation took:
    timing, not content, so it is left out of equality.
    """

    seed: int
    scale: int
    as_of: datetime
    claims: int
    seconds: float = field(compare=False)
    exceptions: Mapping[str, tuple[str, ...]]
    fixed_by_sync: Mapping[str, tuple[str, ...]]
    grace_seconds: int = 1800
    details: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of planted exceptions per code, for every code a reconciliation can raise."""
        return {code.value: len(self.exceptions.get(code.value, ())) for code in RECONCILE_CODES}

    def fixed_counts(self) -> dict[str, int]:
        return {code.value: len(self.fixed_by_sync.get(code.value, ())) for code in RECONCILE_CODES}

    def all_keys(self) -> set[tuple[str, str]]:
        """Every (code, business key) pair."""
        return {(code, key) for code, keys in self.exceptions.items() for key in keys}

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "scale": self.scale,
            "as_of": self.as_of.isoformat(),
            "grace_seconds": self.grace_seconds,
            "claims": self.claims,
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "exceptions": {code: list(keys) for code, keys in self.exceptions.items()},
            "fixed_by_sync": {code: list(keys) for code, keys in self.fixed_by_sync.items()},
            "details": {code: dict(keys) for code, keys in self.details.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnswerKey:
        try:
            return cls(
                seed=int(data["seed"]),
                scale=int(data["scale"]),
                as_of=datetime.fromisoformat(str(data["as_of"])),
                claims=int(data["claims"]),
                seconds=float(data.get("seconds", 0.0)),
                exceptions={str(c): tuple(str(k) for k in keys) for c, keys in data["exceptions"].items()},
                fixed_by_sync={str(c): tuple(str(k) for k in keys) for c, keys in data["fixed_by_sync"].items()},
                grace_seconds=int(data.get("grace_seconds", 1800)),
                details={
                    str(c): {str(k): str(v) for k, v in keys.items()} for c, keys in data.get("details", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"not a claimsync answer key: {exc!r}") from None


def write_answer_key(key: AnswerKey, path: Path) -> Path:
    """Write the key as indented UTF-8 JSON (Chinese kept readable); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def load_answer_key(path: Path) -> AnswerKey:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no answer key at {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a claimsync answer key")
    return AnswerKey.from_dict(data)
